"""The cache of encoded region texts: bounded LRU, and renders identical with and without it."""

from __future__ import annotations

from functools import partial

import numpy as np
import pytest
import torch
from omost_renderer.pipelines.flux.tiny import build_tiny_flux
from omost_renderer.pipelines.rendering import RenderedImage, RenderParams
from omost_renderer.pipelines.sdxl.tiny import build_tiny_renderer
from omost_renderer.pipelines.text_cache import TextEncodingCache
from omost_schema import Canvas


def _tensor(floats: int) -> torch.Tensor:
    return torch.zeros(floats, dtype=torch.float32)


def test_hits_misses_and_least_recently_used_eviction_by_bytes() -> None:
    cache = TextEncodingCache(max_bytes=3 * 400)
    encoded: list[str] = []

    def encode(name: str) -> torch.Tensor:
        encoded.append(name)
        return _tensor(100)  # 400 bytes

    for name in ("a", "b", "c"):
        cache.get_or_encode(name, partial(encode, name))
    assert (cache.entries, cache.bytes, cache.misses, cache.hits) == (3, 1200, 3, 0)
    first = cache.get_or_encode("a", lambda: encode("a again"))
    assert cache.hits == 1
    assert first is cache.get_or_encode("a", lambda: encode("never"))
    # "b" is now the least recently used: the fourth entry pushes it out.
    cache.get_or_encode("d", lambda: encode("d"))
    assert cache.entries == 3
    assert cache.bytes == 1200
    cache.get_or_encode("b", lambda: encode("b again"))
    assert encoded == ["a", "b", "c", "d", "b again"]


def test_tuples_count_every_tensor_and_too_large_entries_are_not_kept() -> None:
    cache = TextEncodingCache(max_bytes=1000)
    pair = cache.get_or_encode("pair", lambda: (_tensor(100), _tensor(50)))
    assert len(pair) == 2
    assert cache.bytes == 600
    cache.get_or_encode("huge", lambda: _tensor(1000))
    assert cache.entries == 1
    assert cache.bytes == 600
    cache.clear()
    assert (cache.entries, cache.bytes) == (0, 0)


def test_zero_bytes_turns_the_cache_off() -> None:
    cache = TextEncodingCache(max_bytes=0)
    calls: list[int] = []

    def encode() -> torch.Tensor:
        calls.append(1)
        return _tensor(1)

    for _ in range(2):
        cache.get_or_encode("a", encode)
    assert calls == [1, 1]
    assert (cache.entries, cache.hits, cache.misses) == (0, 0, 2)
    with pytest.raises(ValueError, match=">= 0"):
        TextEncodingCache(max_bytes=-1)


def _pixels(images: list[RenderedImage]) -> list[np.ndarray]:
    return [np.asarray(image.image) for image in images]


def test_sdxl_renders_are_identical_with_and_without_the_cache(dragon_canvas: Canvas) -> None:
    cached, uncached = build_tiny_renderer(), build_tiny_renderer(text_cache_bytes=0)
    params = RenderParams(width=64, height=64, steps=2, seed=4)
    first = cached.render(dragon_canvas, params)
    regions = len(dragon_canvas.process().conditions)
    # Every region and the negative prompt were encoded once.
    assert (cached.text_cache.misses, cached.text_cache.hits) == (regions + 1, 0)
    again = cached.render(dragon_canvas, params)
    assert cached.text_cache.hits == regions + 1
    plain = uncached.render(dragon_canvas, params)
    assert uncached.text_cache.entries == 0
    for a, b, c in zip(_pixels(first), _pixels(again), _pixels(plain), strict=True):
        assert np.array_equal(a, b)
        assert np.array_equal(a, c)
    for again_image, plain_image in zip(again, plain, strict=True):
        assert np.array_equal(again_image.latents["base"], plain_image.latents["base"])


def test_an_edit_re_encodes_only_the_changed_region(dragon_canvas: Canvas) -> None:
    pipe = build_tiny_renderer()
    params = RenderParams(width=64, height=64, steps=1, seed=4)
    pipe.render(dragon_canvas, params)
    misses = pipe.text_cache.misses
    edited = dragon_canvas.model_copy(deep=True)
    edited.local_descriptions[1].description = "A blue dragon with folded wings."
    pipe.render(edited, params)
    # The changed region's bags are new; the global region, the other local one and the
    # negative prompt come from the cache.
    assert pipe.text_cache.misses == misses + 1
    assert pipe.text_cache.hits == len(dragon_canvas.process().conditions)


def test_flux_renders_are_identical_with_and_without_the_cache(dragon_canvas: Canvas) -> None:
    cached, uncached = build_tiny_flux(), build_tiny_flux(text_cache_bytes=0)
    params = RenderParams(width=64, height=64, steps=2, seed=4)
    first = cached.render(dragon_canvas, params)
    again = cached.render(dragon_canvas, params)
    plain = uncached.render(dragon_canvas, params)
    regions = len(dragon_canvas.process().conditions)
    # One T5 entry per region and CLIP's pooled vector of the global text.
    assert cached.text_cache.entries == regions + 1
    assert cached.text_cache.hits == regions + 1
    for a, b, c in zip(_pixels(first), _pixels(again), _pixels(plain), strict=True):
        assert np.array_equal(a, b)
        assert np.array_equal(a, c)
