from __future__ import annotations

from typing import Any

import pytest
import torch
from diffusers.models.transformers.transformer_flux import FluxAttnProcessor
from omost_renderer.pipelines.flux.attention_processor import (
    RegionalFluxAttnProcessor,
    RegionalMask,
    install_regional_processors,
)
from omost_renderer.pipelines.flux.tiny import tiny_transformer
from omost_renderer.pipelines.joint_mask import image_token_masks, joint_bias
from omost_renderer.pipelines.packed_latents import image_ids
from two_regions import COLS, ROWS, TOKEN_REGION, region_masks

TEXT = len(TOKEN_REGION)


@pytest.fixture(scope="module")
def transformer() -> Any:
    torch.manual_seed(0)
    return tiny_transformer().eval()


def _inputs(transformer: Any) -> dict[str, Any]:
    generator = torch.Generator().manual_seed(1)
    ids = torch.cat([torch.zeros(TEXT, 3), image_ids(ROWS, COLS)])
    return {
        "image": torch.randn(1, ROWS * COLS, 32, generator=generator),
        "text": torch.randn(1, TEXT, 32, generator=generator),
        "rotary": transformer.pos_embed(ids),
    }


def _mask(base_ratio: float = 0.0, every: int = 1) -> RegionalMask:
    bias = joint_bias(TOKEN_REGION, region_masks(), ROWS, COLS)
    assert bias is not None
    return RegionalMask(bias, TEXT, every, base_ratio)


def _double(transformer: Any, processor: Any, inputs: dict[str, Any], **kwargs: Any) -> Any:
    attn = transformer.transformer_blocks[0].attn
    return processor(
        attn, inputs["image"], inputs["text"], image_rotary_emb=inputs["rotary"], **kwargs
    )


def test_without_a_mask_it_computes_exactly_the_stock_processor(transformer: Any) -> None:
    inputs = _inputs(transformer)
    ours = _double(transformer, RegionalFluxAttnProcessor(0), inputs, regional_mask=None)
    stock = _double(transformer, FluxAttnProcessor(), inputs)
    assert torch.equal(ours[0], stock[0])
    assert torch.equal(ours[1], stock[1])
    single = transformer.single_transformer_blocks[0].attn
    joint = torch.cat([inputs["text"], inputs["image"]], dim=1)
    ours_single = RegionalFluxAttnProcessor(2)(single, joint, image_rotary_emb=inputs["rotary"])
    stock_single = FluxAttnProcessor()(single, joint, image_rotary_emb=inputs["rotary"])
    assert torch.equal(ours_single, stock_single)


def _perturbed(inputs: dict[str, Any]) -> dict[str, Any]:
    text = inputs["text"].clone()
    text[:, 3:] += torch.randn(1, 3, 32, generator=torch.Generator().manual_seed(2))
    return {**inputs, "text": text}


def _outside_inside() -> tuple[torch.Tensor, torch.Tensor]:
    inside = image_token_masks(region_masks(), ROWS, COLS)[1]
    return ~inside, inside


def test_a_region_text_changes_only_image_tokens_inside_its_box(transformer: Any) -> None:
    inputs = _inputs(transformer)
    processor = RegionalFluxAttnProcessor(0)
    image, text = _double(transformer, processor, inputs, regional_mask=_mask())
    image_2, text_2 = _double(transformer, processor, _perturbed(inputs), regional_mask=_mask())
    outside, inside = _outside_inside()
    assert torch.equal(image[0, outside], image_2[0, outside])
    assert not torch.allclose(image[0, inside], image_2[0, inside])
    # The global region's text does not see the local region's text either.
    assert torch.equal(text[0, :3], text_2[0, :3])


def test_single_stream_blocks_are_isolated_the_same_way(transformer: Any) -> None:
    inputs = _inputs(transformer)
    attn = transformer.single_transformer_blocks[0].attn
    processor = RegionalFluxAttnProcessor(2)
    outs = [
        processor(
            attn,
            torch.cat([i["text"], i["image"]], dim=1),
            image_rotary_emb=i["rotary"],
            regional_mask=_mask(),
        )[0, TEXT:]
        for i in (inputs, _perturbed(inputs))
    ]
    outside, inside = _outside_inside()
    assert torch.equal(outs[0][outside], outs[1][outside])
    assert not torch.allclose(outs[0][inside], outs[1][inside])


def test_unmasked_blocks_and_the_base_pass_let_region_text_reach_everywhere(
    transformer: Any,
) -> None:
    inputs = _inputs(transformer)
    outside, _ = _outside_inside()
    for processor, mask in (
        (RegionalFluxAttnProcessor(1), _mask(every=2)),  # block 1 is not masked
        (RegionalFluxAttnProcessor(0), _mask(base_ratio=0.2)),
    ):
        image = _double(transformer, processor, inputs, regional_mask=mask)[0]
        image_2 = _double(transformer, processor, _perturbed(inputs), regional_mask=mask)[0]
        assert not torch.allclose(image[0, outside], image_2[0, outside])


def test_install_numbers_double_then_single_blocks(transformer: Any) -> None:
    assert install_regional_processors(transformer) == 4
    processors = transformer.attn_processors
    assert processors["transformer_blocks.1.attn.processor"].block == 1
    assert processors["single_transformer_blocks.0.attn.processor"].block == 2
    assert RegionalMask(torch.zeros(1), 0, every=2).applies(2)
    assert not RegionalMask(torch.zeros(1), 0, every=2).applies(3)
