"""Text encoding of a canvas's regions with SDXL's two CLIP encoders, as Omost's renderer does.

Per region, the prefixes and suffixes are tokenized without special tokens and packed greedily
into bags (``omost_schema.greedy_bags``); each bag becomes ``[BOS] + (prefix + bag)[:75] + [EOS]``
padded to 77 with the tokenizer's own pad id (SDXL's first tokenizer pads with EOS 49407, its
second with id 0, "!"). Both encoders' penultimate hidden states are concatenated (768 + 1280 =
2048 features in SDXL) and a region's bags are concatenated along the sequence.

Pooled embedding: encoder 2's pooled output of the global region's first bag. Omost loads the
second encoder as a plain ``CLIPTextModel``, so its pooled vector is the final-norm EOS state
*before* the text projection; ``pooled_projection=False`` (the default) reproduces that, ``True``
applies the projection as diffusers' SDXL pipeline does. The negative prompt is encoded the
ordinary SDXL way (77 tokens, truncated, padded with each tokenizer's pad id) with the same rule.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from omost_schema import RegionCondition, greedy_bags

from omost_renderer.pipelines.text_cache import TextEncodingCache

#: CLIP's context length and the tokens available between BOS and EOS.
CONTEXT = 77
WINDOW = CONTEXT - 2


@dataclass(frozen=True)
class TextEncoders:
    """SDXL's tokenizers and text encoders (``CLIPTextModel`` or ``...WithProjection``)."""

    tokenizer: Any
    tokenizer_2: Any
    text_encoder: Any
    text_encoder_2: Any
    pooled_projection: bool = False


@dataclass(frozen=True)
class EncodedPrompt:
    """One conditioning: text features with the region of every token.

    Attributes:
        embeds: (1, L, D) concatenated bags of every region.
        token_region: int64 (L,) index into ``masks`` of each token.
        masks: float32 (R, 90, 90) region masks.
        pooled: (1, P) pooled embedding for SDXL's added conditioning.
    """

    embeds: torch.Tensor
    token_region: torch.Tensor
    masks: torch.Tensor
    pooled: torch.Tensor


def _ids(tokenizer: Any, text: str) -> list[int]:
    ids: list[int] = tokenizer(text, truncation=False, add_special_tokens=False).input_ids
    return ids


def _frame(tokenizer: Any, tokens: list[int]) -> list[int]:
    """``[BOS] + tokens[:75] + [EOS]`` padded to 77 with the tokenizer's pad id."""
    framed = [tokenizer.bos_token_id, *tokens[:WINDOW], tokenizer.eos_token_id]
    return framed + [tokenizer.pad_token_id] * (CONTEXT - len(framed))


def region_token_ids(tokenizer: Any, prefixes: list[str], suffixes: list[str]) -> list[list[int]]:
    """Greedy bags of one region for one tokenizer, each framed to 77 ids.

    Args:
        tokenizer: A CLIP tokenizer.
        prefixes: Sub-prompts that start every bag.
        suffixes: Sub-prompts to pack.

    Returns:
        One 77-id list per bag (at least one: a region without suffixes is its prefix alone).
    """
    prefix = [token for text in prefixes for token in _ids(tokenizer, text)]
    bags = greedy_bags(prefix, [_ids(tokenizer, text) for text in suffixes], window=WINDOW)
    if not bags:
        bags = [prefix[:WINDOW]]
    return [_frame(tokenizer, bag) for bag in bags]


def _device(module: Any) -> torch.device:
    return next(module.parameters()).device  # type: ignore[no-any-return]


def encode_ids(
    encoders: TextEncoders, ids_1: list[list[int]], ids_2: list[list[int]]
) -> tuple[torch.Tensor, torch.Tensor]:
    """Encode bags with both encoders.

    Args:
        encoders: The text encoders.
        ids_1: Bags for encoder 1, each 77 ids.
        ids_2: The same bags for encoder 2.

    Returns:
        ``(features, pooled)``: (1, bags * 77, D1 + D2) penultimate hidden states, and encoder 2's
        pooled output of the first bag, (1, P).
    """
    features = []
    pooled = torch.empty(0)
    for encoder, ids in ((encoders.text_encoder, ids_1), (encoders.text_encoder_2, ids_2)):
        tokens = torch.tensor(ids, dtype=torch.int64, device=_device(encoder))
        # The bare text transformer: its output has the pooled (pre-projection) EOS state.
        transformer = getattr(encoder, "text_model", encoder)
        out = transformer(tokens, output_hidden_states=True)
        # "-2": SDXL conditions on the penultimate layer.
        features.append(out.hidden_states[-2].reshape(1, -1, out.hidden_states[-2].shape[-1]))
        pooled = out.pooler_output[:1]
        if encoders.pooled_projection and hasattr(encoder, "text_projection"):
            pooled = encoder.text_projection(pooled)
    return torch.cat(features, dim=-1), pooled


def encode_ids_cached(
    encoders: TextEncoders,
    ids_1: list[list[int]],
    ids_2: list[list[int]],
    cache: TextEncodingCache | None = None,
    model: str = "",
) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`encode_ids` through ``cache``, keyed by ``model`` and the exact ids of both encoders.

    Args:
        encoders: The text encoders.
        ids_1: Bags for encoder 1.
        ids_2: The same bags for encoder 2.
        cache: Encoded texts kept between renders, or ``None``.
        model: The model's name (part of the key: two models never share an entry).

    Returns:
        As :func:`encode_ids` (shared tensors when cached: read-only).
    """
    if cache is None:
        return encode_ids(encoders, ids_1, ids_2)
    key = ("sdxl-clip", model, encoders.pooled_projection,
           tuple(map(tuple, ids_1)), tuple(map(tuple, ids_2)))  # fmt: skip
    return cache.get_or_encode(key, lambda: encode_ids(encoders, ids_1, ids_2))


@torch.inference_mode()
def encode_regions(
    encoders: TextEncoders,
    conditions: list[RegionCondition],
    cache: TextEncodingCache | None = None,
    model: str = "",
) -> EncodedPrompt:
    """Encode every region of a processed canvas (global first).

    Args:
        encoders: The text encoders.
        conditions: ``canvas.process().conditions``.
        cache: Encoded regions kept between renders (an edit re-encodes only what changed).
        model: The model's name, part of the cache key.

    Returns:
        The concatenated features of every region's bags, each token tagged with its region.
    """
    embeds, regions = [], []
    pooled: torch.Tensor | None = None
    for index, condition in enumerate(conditions):
        ids_1 = region_token_ids(encoders.tokenizer, condition.prefixes, condition.suffixes)
        ids_2 = region_token_ids(encoders.tokenizer_2, condition.prefixes, condition.suffixes)
        if len(ids_1) != len(ids_2):
            raise ValueError("the two tokenizers disagree on the number of bags")
        features, region_pooled = encode_ids_cached(encoders, ids_1, ids_2, cache, model)
        embeds.append(features)
        regions.append(torch.full((features.shape[1],), index, dtype=torch.int64))
        if pooled is None:
            pooled = region_pooled
    if pooled is None:
        raise ValueError("a canvas has at least its global region")
    masks = torch.stack([torch.from_numpy(c.mask).float() for c in conditions])
    return EncodedPrompt(torch.cat(embeds, dim=1), torch.cat(regions), masks, pooled)


@torch.inference_mode()
def encode_plain(
    encoders: TextEncoders, text: str, cache: TextEncodingCache | None = None, model: str = ""
) -> EncodedPrompt:
    """Encode a prompt the ordinary SDXL way (77 tokens) as one all-ones region.

    Args:
        encoders: The text encoders.
        text: The prompt (the negative prompt).
        cache: Encoded texts kept between renders.
        model: The model's name, part of the cache key.

    Returns:
        A one-region conditioning covering the whole image.
    """
    ids = [
        tok(text, padding="max_length", max_length=CONTEXT, truncation=True).input_ids
        for tok in (encoders.tokenizer, encoders.tokenizer_2)
    ]
    features, pooled = encode_ids_cached(encoders, [ids[0]], [ids[1]], cache, model)
    masks = torch.ones(1, 90, 90)
    token_region = torch.zeros(features.shape[1], dtype=torch.int64)
    return EncodedPrompt(features, token_region, masks, pooled)
