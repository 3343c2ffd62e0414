"""Write SDXL components as one original-layout ``.safetensors`` checkpoint (A1111/ComfyUI style).

Community SDXL checkpoints keep Stability's ``sgm`` key names: the UNet under
``model.diffusion_model.`` (``input_blocks``/``middle_block``/``output_blocks``), the VAE under
``first_stage_model.``, CLIP-L as a transformers model under
``conditioner.embedders.0.transformer.`` and OpenCLIP bigG under
``conditioner.embedders.1.model.`` (fused attention projections, a transposed text projection).
This module renames diffusers' keys into that layout so the tests can load a real single-file
checkpoint made from tiny random components.
"""

from __future__ import annotations

import re
from pathlib import Path

import torch
from safetensors.torch import save_file

StateDict = dict[str, torch.Tensor]

UNET_PREFIX = "model.diffusion_model."
VAE_PREFIX = "first_stage_model."
CLIP_PREFIX = "conditioner.embedders.0.transformer."
OPEN_CLIP_PREFIX = "conditioner.embedders.1.model."

_UNET_FIXED = {
    "time_embedding.linear_1": "time_embed.0",
    "time_embedding.linear_2": "time_embed.2",
    "add_embedding.linear_1": "label_emb.0.0",
    "add_embedding.linear_2": "label_emb.0.2",
    "conv_in": "input_blocks.0.0",
    "conv_norm_out": "out.0",
    "conv_out": "out.2",
}
_UNET_RESNET = {
    "norm1": "in_layers.0",
    "conv1": "in_layers.2",
    "norm2": "out_layers.0",
    "conv2": "out_layers.3",
    "time_emb_proj": "emb_layers.1",
    "conv_shortcut": "skip_connection",
}
_SLOT = {"resnets": 0, "attentions": 1}
_VAE_FIXED = {"conv_norm_out": "norm_out"}
_VAE_ATTENTION = {
    "group_norm": "norm",
    "to_q": "q",
    "to_k": "k",
    "to_v": "v",
    "to_out.0": "proj_out",
}
_OPEN_CLIP_LAYER = {
    "self_attn.out_proj": "attn.out_proj",
    "layer_norm1": "ln_1",
    "layer_norm2": "ln_2",
    "mlp.fc1": "mlp.c_fc",
    "mlp.fc2": "mlp.c_proj",
}


def _split(key: str) -> tuple[str, str]:
    """``a.b.c.weight`` -> (``a.b.c``, ``weight``)."""
    module, _, param = key.rpartition(".")
    return module, param


def unet_to_original(state: StateDict, layers_per_block: int) -> StateDict:
    """Rename a diffusers SDXL UNet's keys to the ``sgm`` UNet layout."""
    per_level = layers_per_block + 1
    out: StateDict = {}
    attention_levels = {
        int(m.group(1)) for k in state if (m := re.match(r"up_blocks\.(\d+)\.attentions", k))
    }
    for key, tensor in state.items():
        module, param = _split(key)
        if module in _UNET_FIXED:
            out[f"{_UNET_FIXED[module]}.{param}"] = tensor
            continue
        # Input and output blocks hold a resnet (slot 0) and maybe a transformer (slot 1); the
        # middle block is one sequence: resnet, transformer, resnet.
        if m := re.match(r"down_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            level, kind, index, rest = int(m[1]), m[2], int(m[3]), m[4]
            block = f"input_blocks.{1 + level * per_level + index}.{_SLOT[kind]}"
        elif m := re.match(r"down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            out[f"input_blocks.{(int(m[1]) + 1) * per_level}.0.op.{m[2]}"] = tensor
            continue
        elif m := re.match(r"mid_block\.(resnets|attentions)\.(\d+)\.(.+)", key):
            kind, index, rest = m[1], int(m[2]), m[3]
            block = f"middle_block.{2 * index if kind == 'resnets' else 1}"
        elif m := re.match(r"up_blocks\.(\d+)\.(resnets|attentions)\.(\d+)\.(.+)", key):
            level, kind, index, rest = int(m[1]), m[2], int(m[3]), m[4]
            block = f"output_blocks.{level * per_level + index}.{_SLOT[kind]}"
        elif m := re.match(r"up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            level = int(m[1])
            slot = 2 if level in attention_levels else 1
            out[f"output_blocks.{level * per_level + per_level - 1}.{slot}.conv.{m[2]}"] = tensor
            continue
        else:
            raise KeyError(f"no original name for UNet key {key}")
        if kind == "resnets":
            sub, param = _split(rest)
            out[f"{block}.{_UNET_RESNET[sub]}.{param}"] = tensor
        else:
            # Transformer blocks keep their inner names in both layouts.
            out[f"{block}.{rest}"] = tensor
    return out


def _vae_resnet(rest: str) -> str:
    return rest.replace("conv_shortcut", "nin_shortcut")


def vae_to_original(state: StateDict, num_blocks: int) -> StateDict:
    """Rename a diffusers ``AutoencoderKL``'s keys to the ``sgm`` VAE layout."""
    out: StateDict = {}
    for key, tensor in state.items():
        module, param = _split(key)
        if m := re.match(r"(encoder|decoder)\.(conv_in|conv_out|conv_norm_out)$", module):
            out[f"{m[1]}.{_VAE_FIXED.get(m[2], m[2])}.{param}"] = tensor
        elif module in ("quant_conv", "post_quant_conv"):
            out[key] = tensor
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            out[f"encoder.down.{m[1]}.block.{m[2]}.{_vae_resnet(m[3])}"] = tensor
        elif m := re.match(r"encoder\.down_blocks\.(\d+)\.downsamplers\.0\.conv\.(.+)", key):
            out[f"encoder.down.{m[1]}.downsample.conv.{m[2]}"] = tensor
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.resnets\.(\d+)\.(.+)", key):
            # The original decoder numbers its levels from the bottom.
            out[f"decoder.up.{num_blocks - 1 - int(m[1])}.block.{m[2]}.{_vae_resnet(m[3])}"] = (
                tensor
            )
        elif m := re.match(r"decoder\.up_blocks\.(\d+)\.upsamplers\.0\.conv\.(.+)", key):
            out[f"decoder.up.{num_blocks - 1 - int(m[1])}.upsample.conv.{m[2]}"] = tensor
        elif m := re.match(r"(encoder|decoder)\.mid_block\.resnets\.(\d+)\.(.+)", key):
            out[f"{m[1]}.mid.block_{int(m[2]) + 1}.{_vae_resnet(m[3])}"] = tensor
        elif m := re.match(r"(encoder|decoder)\.mid_block\.attentions\.0\.(.+)", module):
            # The original attention projections are 1x1 convolutions.
            weight = tensor[:, :, None, None] if tensor.ndim == 2 else tensor
            out[f"{m[1]}.mid.attn_1.{_VAE_ATTENTION[m[2]]}.{param}"] = weight
        else:
            raise KeyError(f"no original name for VAE key {key}")
    return out


def clip_to_original(state: StateDict) -> StateDict:
    """CLIP-L stays a transformers model; only its ``text_model.`` wrapper is restored."""
    return {k if k.startswith("text_model.") else f"text_model.{k}": v for k, v in state.items()}


def open_clip_to_original(state: StateDict) -> StateDict:
    """Rename a ``CLIPTextModelWithProjection``'s keys to OpenCLIP's, fusing q, k and v."""
    out: StateDict = {
        "token_embedding.weight": state["text_model.embeddings.token_embedding.weight"],
        "positional_embedding": state["text_model.embeddings.position_embedding.weight"],
        "ln_final.weight": state["text_model.final_layer_norm.weight"],
        "ln_final.bias": state["text_model.final_layer_norm.bias"],
        # OpenCLIP multiplies features by the projection; a Linear stores its transpose.
        "text_projection": state["text_projection.weight"].T.contiguous(),
    }
    layers = {
        int(m[1]) for k in state if (m := re.match(r"text_model\.encoder\.layers\.(\d+)\.", k))
    }
    for layer in sorted(layers):
        src = f"text_model.encoder.layers.{layer}."
        dst = f"transformer.resblocks.{layer}."
        for param in ("weight", "bias"):
            fused = [state[f"{src}self_attn.{p}_proj.{param}"] for p in "qkv"]
            out[f"{dst}attn.in_proj_{param}"] = torch.cat(fused)
            for ours, theirs in _OPEN_CLIP_LAYER.items():
                out[f"{dst}{theirs}.{param}"] = state[f"{src}{ours}.{param}"]
    return out


def save_original_sdxl_checkpoint(
    path: Path,
    *,
    unet: torch.nn.Module,
    vae: torch.nn.Module,
    text_encoder: torch.nn.Module,
    text_encoder_2: torch.nn.Module,
    layers_per_block: int,
    vae_blocks: int,
) -> None:
    """Save the four SDXL models as one checkpoint in the original key layout."""
    parts = {
        UNET_PREFIX: unet_to_original(unet.state_dict(), layers_per_block),
        VAE_PREFIX: vae_to_original(vae.state_dict(), vae_blocks),
        CLIP_PREFIX: clip_to_original(text_encoder.state_dict()),
        OPEN_CLIP_PREFIX: open_clip_to_original(text_encoder_2.state_dict()),
    }
    checkpoint = {
        prefix + key: tensor.contiguous()
        for prefix, state in parts.items()
        for key, tensor in state.items()
    }
    save_file(checkpoint, str(path))
