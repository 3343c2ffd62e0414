"""Text encoding of a canvas for FLUX.1: per-region T5 sequences, CLIP pooled from the global one.

FLUX conditions on a T5 sequence (joint attention) and on CLIP's pooled vector (the modulation).
Each region's text is its prefixes and suffixes joined with spaces (Omost's order: the global
description first, then the region's own description, details and tags). T5 encodes each region
on its own, so T5's 512-token limit applies per region: a region's text is cut at
``max_region_tokens`` tokens (its EOS included), and the sequence the transformer sees is every
region's tokens concatenated, global first, without padding. The pooled vector is CLIP's pooled
output of the global region's text, cut at CLIP's 77 tokens as diffusers' FLUX pipeline does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
from omost_schema import RegionCondition

from omost_renderer.pipelines.text_cache import TextEncodingCache

#: T5's context length in FLUX.1-dev (schnell was trained with 256); the bound of one region.
T5_MAX_TOKENS = 512
#: CLIP's context length.
CLIP_TOKENS = 77


@dataclass(frozen=True)
class FluxTextEncoders:
    """FLUX's tokenizers and text encoders, named as in diffusers' ``FluxPipeline``.

    Attributes:
        tokenizer: CLIP tokenizer.
        text_encoder: ``CLIPTextModel`` (pooled vector).
        tokenizer_2: T5 tokenizer.
        text_encoder_2: ``T5EncoderModel`` (the sequence).
    """

    tokenizer: Any
    text_encoder: Any
    tokenizer_2: Any
    text_encoder_2: Any


@dataclass(frozen=True)
class FluxPrompt:
    """One canvas's conditioning for FLUX.

    Attributes:
        embeds: (1, T, D) every region's T5 states, concatenated (global first).
        token_region: int64 (T,) region of each text token.
        masks: float32 (R, 90, 90) region masks.
        pooled: (1, P) CLIP pooled vector of the global region.
    """

    embeds: torch.Tensor
    token_region: torch.Tensor
    masks: torch.Tensor
    pooled: torch.Tensor


def region_text(condition: RegionCondition) -> str:
    """A region's prompt: its prefixes and suffixes joined with spaces."""
    return " ".join(text for text in (*condition.prefixes, *condition.suffixes) if text)


def _device(module: Any) -> torch.device:
    return next(module.parameters()).device  # type: ignore[no-any-return]


def t5_ids(tokenizer: Any, text: str, max_tokens: int = T5_MAX_TOKENS) -> list[int]:
    """T5 ids of one region's text, EOS included, cut at ``max_tokens``.

    Args:
        tokenizer: A T5 tokenizer (appends EOS).
        text: The region's text.
        max_tokens: The region's bound.

    Returns:
        Between 1 and ``max_tokens`` ids.
    """
    ids: list[int] = tokenizer(text, truncation=True, max_length=max_tokens).input_ids
    return ids


@torch.inference_mode()
def encode_pooled(encoders: FluxTextEncoders, text: str) -> torch.Tensor:
    """CLIP's pooled vector of ``text`` (77 tokens, truncated and padded), (1, P)."""
    ids = encoders.tokenizer(
        text, padding="max_length", max_length=CLIP_TOKENS, truncation=True
    ).input_ids
    tokens = torch.tensor([ids], dtype=torch.int64, device=_device(encoders.text_encoder))
    return encoders.text_encoder(tokens).pooler_output  # type: ignore[no-any-return]


@torch.inference_mode()
def encode_canvas(
    encoders: FluxTextEncoders,
    conditions: list[RegionCondition],
    max_region_tokens: int = T5_MAX_TOKENS,
    cache: TextEncodingCache | None = None,
    model: str = "",
) -> FluxPrompt:
    """Encode every region of a processed canvas for FLUX.

    Args:
        encoders: The tokenizers and text encoders.
        conditions: ``canvas.process().conditions`` (global first).
        max_region_tokens: T5 tokens of one region at most.
        cache: Encoded regions kept between renders (keyed by ``model`` and the exact T5 ids,
            and the global region's text for CLIP's pooled vector).
        model: The model's name, part of the cache key.

    Returns:
        The concatenated T5 states with each token's region, and the global pooled vector.
    """
    if not conditions:
        raise ValueError("a canvas has at least its global region")
    device = _device(encoders.text_encoder_2)
    states, regions = [], []
    for index, condition in enumerate(conditions):
        ids = t5_ids(encoders.tokenizer_2, region_text(condition), max_region_tokens)
        encode = partial(_encode_t5, encoders, ids, device)
        states.append(_cached(cache, ("flux-t5", model, tuple(ids)), encode))
        regions.append(torch.full((len(ids),), index, dtype=torch.int64))
    masks = torch.stack([torch.from_numpy(c.mask).float() for c in conditions])
    text = region_text(conditions[0])
    pooled = _cached(cache, ("flux-clip", model, text), lambda: encode_pooled(encoders, text))
    return FluxPrompt(torch.cat(states, dim=1), torch.cat(regions), masks, pooled)


def _encode_t5(encoders: FluxTextEncoders, ids: list[int], device: torch.device) -> torch.Tensor:
    tokens = torch.tensor([ids], dtype=torch.int64, device=device)
    states: torch.Tensor = encoders.text_encoder_2(tokens)[0]
    return states


def _cached(
    cache: TextEncodingCache | None, key: tuple[object, ...], encode: Callable[[], torch.Tensor]
) -> torch.Tensor:
    return encode() if cache is None else cache.get_or_encode(key, encode)
