from __future__ import annotations

import numpy as np
import pytest
import torch
from omost_renderer.pipelines.rendering import RenderParams
from omost_renderer.pipelines.sdxl.tiny import build_tiny_renderer, tiny_components
from omost_renderer.pipelines.vae_codec import VaeCodec, pixels_to_uint8, tiled, uint8_to_pixels
from omost_schema import Canvas
from torch.nn import functional


def test_pixels_become_uint8_by_truncation() -> None:
    x = (
        torch.tensor([0.999, 0.0039, -0.0039, -1.2, 1.5, -1.0, 1.0])
        .reshape(1, 1, 7)
        .expand(3, 1, 7)
    )
    # 254.87 -> 254, 127.997 -> 127, 127.003 -> 127, below 0 -> 0, above 255 -> 255.
    assert pixels_to_uint8(x)[0, :, 0].tolist() == [254, 127, 127, 0, 255, 0, 255]


def test_pixels_to_uint8_runs_the_affine_map_in_the_tensor_dtype() -> None:
    # As Omost's pytorch2numpy on a bfloat16 VAE: 2**-8 * 127.5 + 127.5 = 127.998 is 128 in
    # bfloat16 (steps of 0.5 there) and 127.998 in float32, truncated to 127.
    x = torch.full((3, 1, 1), 2**-8, dtype=torch.bfloat16)
    assert pixels_to_uint8(x)[0, 0].tolist() == [128, 128, 128]
    assert pixels_to_uint8(x.float())[0, 0].tolist() == [127, 127, 127]


def test_uint8_to_pixels_inverts_omosts_conversion() -> None:
    image = np.arange(0, 256, dtype=np.uint8).reshape(16, 16, 1).repeat(3, axis=2)
    pixels = uint8_to_pixels(image)
    assert pixels.shape == (1, 3, 16, 16)
    assert pixels.dtype == torch.float32
    assert np.array_equal(pixels_to_uint8(pixels[0]), image)


def _upsample(z: torch.Tensor) -> torch.Tensor:
    return z.repeat_interleave(8, dim=-2).repeat_interleave(8, dim=-1) * 2.0


@pytest.mark.parametrize(("height", "width"), [(20, 31), (8, 8), (17, 64)])
def test_tiles_of_a_pointwise_map_equal_the_whole(height: int, width: int) -> None:
    z = torch.randn(1, 4, height, width)
    out = tiled(_upsample, z, tile=8, overlap=2, scale=8)
    torch.testing.assert_close(out, _upsample(z))


def test_tiles_of_a_downsampling_map_equal_the_whole() -> None:
    x = torch.randn(1, 3, 24 * 8, 17 * 8)

    def pool(x: torch.Tensor) -> torch.Tensor:
        return functional.avg_pool2d(x, 8)

    out = tiled(pool, x, tile=64, overlap=16, scale=1 / 8)
    torch.testing.assert_close(out, pool(x))


def test_vae_works_whole_up_to_the_threshold_and_in_tiles_above() -> None:
    vae = tiny_components()["vae"]
    codec = VaeCodec(vae, tile_above=8, tile=8)
    assert not codec.tiles(8, 8)
    assert codec.tiles(8, 9)
    calls: list[tuple[int, ...]] = []
    original = vae.decode

    def counting(z: torch.Tensor) -> object:
        calls.append(tuple(z.shape))
        return original(z)

    vae.decode = counting
    latents = torch.randn(2, 4, 16, 16)
    tiles = codec.decode(latents)
    assert [image.shape for image in tiles] == [(128, 128, 3)] * 2
    # Per image, each in 3 x 3 tiles of 8 x 8 latents.
    assert calls == [(1, 4, 8, 8)] * 18
    calls.clear()
    whole = VaeCodec(vae, tile_above=16, tile=8).decode(latents)
    assert calls == [(1, 4, 16, 16)] * 2
    # Each tile normalises its own activations (the tiny VAE's random weights make that visible),
    # but the picture is the same.
    a, b = tiles[0].astype(np.float64).ravel(), whole[0].astype(np.float64).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.9
    assert np.abs(a - b).mean() < 16


def test_encode_is_per_image_and_tiled_above_the_threshold() -> None:
    vae = tiny_components()["vae"]
    pixels = torch.rand(2, 3, 128, 128) * 2 - 1
    whole = VaeCodec(vae, tile_above=16, tile=8).encode(pixels)
    parts = VaeCodec(vae, tile_above=8, tile=8).encode(pixels)
    assert whole.shape == parts.shape == (2, 4, 16, 16)
    single = VaeCodec(vae, tile_above=16, tile=8).encode(pixels[1:])
    torch.testing.assert_close(whole[1:], single)
    assert (parts - whole).abs().mean() < 0.25 * whole.abs().mean()


def test_the_tiny_pipeline_renders_with_a_tiled_vae(dragon_canvas: Canvas) -> None:
    tiled_renderer = build_tiny_renderer(vae_tile_above=8, vae_tile=8)
    assert tiled_renderer.codec.tiles(16, 16)
    params = RenderParams(
        width=128, height=64, steps=2, num_images=2, sketch_strength=0.9, hires_scale=1.5,
        hires_steps=2,
    )  # fmt: skip
    images = tiled_renderer.render(dragon_canvas, params)
    assert [image.image.size for image in images] == [(192, 128)] * 2
    whole = build_tiny_renderer().render(dragon_canvas, params)
    a = np.asarray(images[0].image, dtype=np.float64).ravel()
    b = np.asarray(whole[0].image, dtype=np.float64).ravel()
    assert np.corrcoef(a, b)[0, 1] > 0.5
