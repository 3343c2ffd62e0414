"""Text encoding of a canvas for FLUX.2 klein: per-region Qwen3 states, stacked hidden layers.

FLUX.2 klein conditions on one text sequence (joint attention) and has no pooled vector. As
diffusers' ``Flux2KleinPipeline`` does for a prompt, each region's text (its prefixes and
suffixes joined, Omost's order) is wrapped in Qwen3's chat template as a user turn (thinking
off), tokenized, cut at ``max_region_tokens`` tokens (the stock pipeline's 512 per prompt), and
run through Qwen3; the hidden states of three layers (9, 18 and 27 for the 4B encoder) are
stacked per token into one feature vector of ``3 * hidden`` features. The sequence the
transformer sees is every region's tokens concatenated, global first, without the stock
pipeline's padding to 512 (a causal encoder's states of the real tokens do not depend on the
padding after them). A text token's position ``(0, 0, 0, l)`` counts ``l`` from 0 within its own
region, so every region looks to the transformer like a prompt of its own, as the stock pipeline
positions one prompt.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from omost_schema import RegionCondition

from omost_renderer.pipelines.flux.encoding import region_text
from omost_renderer.pipelines.text_cache import TextEncodingCache

#: The stock pipeline's token bound of one prompt: the bound of one region.
QWEN_MAX_TOKENS = 512
#: Hidden layers of Qwen3-4B that FLUX.2 klein stacks (diffusers' ``text_encoder_out_layers``).
KLEIN_LAYERS = (9, 18, 27)


def stacked_layers(num_hidden_layers: int) -> tuple[int, ...]:
    """The hidden layers to stack for an encoder of ``num_hidden_layers`` layers.

    klein's (9, 18, 27) when the encoder has them (Qwen3-4B and -8B have 36 layers); a smaller
    encoder (the tiny test models) stacks its last three.
    """
    if num_hidden_layers >= max(KLEIN_LAYERS):
        return KLEIN_LAYERS
    return tuple(range(max(1, num_hidden_layers - 2), num_hidden_layers + 1))


@dataclass(frozen=True)
class Flux2TextEncoder:
    """FLUX.2 klein's tokenizer and text encoder, named as in diffusers' ``Flux2KleinPipeline``.

    Attributes:
        tokenizer: A Qwen tokenizer with its chat template.
        text_encoder: ``Qwen3ForCausalLM`` (or any causal LM that returns hidden states).
        layers: Indices into its ``hidden_states`` that are stacked (0 is the embedding).
    """

    tokenizer: Any
    text_encoder: Any
    layers: tuple[int, ...] = KLEIN_LAYERS


@dataclass(frozen=True)
class Flux2Prompt:
    """One canvas's conditioning for FLUX.2.

    Attributes:
        embeds: (1, T, len(layers) * hidden) every region's states, concatenated (global first).
        token_region: int64 (T,) region of each text token.
        masks: float32 (R, 90, 90) region masks.
        text_ids: float32 (T, 4) each text token's position ``(0, 0, 0, l)``.
    """

    embeds: torch.Tensor
    token_region: torch.Tensor
    masks: torch.Tensor
    text_ids: torch.Tensor

    @property
    def region_lengths(self) -> tuple[int, ...]:
        """Text tokens of each region (what the positions, and so batching, depend on)."""
        return tuple(int(n) for n in torch.bincount(self.token_region).tolist())


def _device(module: Any) -> torch.device:
    return next(module.parameters()).device  # type: ignore[no-any-return]


def qwen_ids(tokenizer: Any, text: str, max_tokens: int = QWEN_MAX_TOKENS) -> list[int]:
    """Token ids of one prompt in Qwen3's chat template (a user turn, thinking off), cut.

    Args:
        tokenizer: A Qwen tokenizer with a chat template.
        text: The prompt.
        max_tokens: The prompt's bound.

    Returns:
        Between 1 and ``max_tokens`` ids.
    """
    chat = tokenizer.apply_chat_template(
        [{"role": "user", "content": text}],
        tokenize=False,
        add_generation_prompt=True,
        enable_thinking=False,
    )
    ids: list[int] = tokenizer(chat, truncation=True, max_length=max_tokens).input_ids
    return ids


def text_positions(lengths: list[int]) -> torch.Tensor:
    """FLUX.2's text positions ``(0, 0, 0, l)``, ``l`` counted from 0 in each prompt.

    Args:
        lengths: Tokens of each prompt, in sequence order.

    Returns:
        float32 (sum(lengths), 4).
    """
    ids = torch.zeros(sum(lengths), 4)
    ids[:, 3] = torch.cat([torch.arange(n, dtype=torch.float32) for n in lengths])
    return ids


@torch.inference_mode()
def encode_ids(encoder: Flux2TextEncoder, ids: list[int]) -> torch.Tensor:
    """One prompt's stacked hidden states, (1, L, len(layers) * hidden), the encoder's dtype."""
    tokens = torch.tensor([ids], dtype=torch.int64, device=_device(encoder.text_encoder))
    out = encoder.text_encoder(
        input_ids=tokens,
        attention_mask=torch.ones_like(tokens),
        output_hidden_states=True,
        use_cache=False,
    )
    # (1, layers, L, hidden) -> (1, L, layers * hidden), diffusers' order.
    stacked = torch.stack([out.hidden_states[k] for k in encoder.layers], dim=1)
    return stacked.permute(0, 2, 1, 3).reshape(1, len(ids), -1)


def encode_text(
    encoder: Flux2TextEncoder,
    text: str,
    max_tokens: int,
    cache: TextEncodingCache | None = None,
    model: str = "",
) -> torch.Tensor:
    """One prompt's stacked hidden states, from ``cache`` when it holds its exact ids.

    Args:
        encoder: The tokenizer and Qwen3 encoder.
        text: The prompt.
        max_tokens: The prompt's bound (chat template included).
        cache: Encoded texts by ``(kind, model, ids)``; ``None`` always encodes.
        model: The model's name (part of the cache key).

    Returns:
        (1, L, len(layers) * hidden) in the encoder's dtype (shared when cached: read-only).
    """
    ids = qwen_ids(encoder.tokenizer, text, max_tokens)
    encode = partial(encode_ids, encoder, ids)
    if cache is None:
        return encode()
    return cache.get_or_encode(("flux2-qwen3", model, tuple(ids)), encode)


def encode_canvas(
    encoder: Flux2TextEncoder,
    conditions: list[RegionCondition],
    max_region_tokens: int = QWEN_MAX_TOKENS,
    cache: TextEncodingCache | None = None,
    model: str = "",
) -> Flux2Prompt:
    """Encode every region of a processed canvas for FLUX.2.

    Args:
        encoder: The tokenizer and Qwen3 encoder.
        conditions: ``canvas.process().conditions`` (global first).
        max_region_tokens: Qwen tokens of one region at most (template included).
        cache: Encoded region texts (an edit re-encodes only the regions it changed).
        model: The model's name (part of the cache key).

    Returns:
        The concatenated states with each token's region and position.
    """
    if not conditions:
        raise ValueError("a canvas has at least its global region")
    states, regions = [], []
    for index, condition in enumerate(conditions):
        state = encode_text(encoder, region_text(condition), max_region_tokens, cache, model)
        states.append(state)
        regions.append(torch.full((state.shape[1],), index, dtype=torch.int64))
    masks = torch.stack([torch.from_numpy(c.mask).float() for c in conditions])
    lengths = [len(r) for r in regions]
    return Flux2Prompt(torch.cat(states, dim=1), torch.cat(regions), masks, text_positions(lengths))
