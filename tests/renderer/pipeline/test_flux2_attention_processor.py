"""Regional joint attention on FLUX.2's transformer: stock-exact without a mask, isolated with."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from omost_renderer.pipelines.flux.attention_processor import RegionalMask
from omost_renderer.pipelines.flux2.attention_processor import install_regional_flux2_processors
from omost_renderer.pipelines.flux2.tiny import TEXT_WIDTH, tiny_flux2_transformer
from omost_renderer.pipelines.joint_mask import image_token_masks, joint_bias
from two_regions import COLS, ROWS, TOKEN_REGION, region_masks


def _ids(rows: int, cols: int, text: int) -> tuple[torch.Tensor, torch.Tensor]:
    # FLUX.2's positions are (t, h, w, l); text tokens count along l.
    image = torch.zeros(rows, cols, 4)
    image[..., 1] = torch.arange(rows)[:, None]
    image[..., 2] = torch.arange(cols)[None, :]
    words = torch.zeros(text, 4)
    words[:, 3] = torch.arange(text)
    return image.reshape(-1, 4), words


def _run(model: Any, text: torch.Tensor, mask: RegionalMask | None, stock: bool = False) -> Any:
    image_ids, text_ids = _ids(ROWS, COLS, text.shape[1])
    generator = torch.Generator().manual_seed(1)
    with torch.inference_mode():
        return model(
            hidden_states=torch.randn(1, ROWS * COLS, 16, generator=generator),
            encoder_hidden_states=text,
            timestep=torch.tensor([0.5]),
            img_ids=image_ids,
            txt_ids=text_ids,
            joint_attention_kwargs=None if stock else {"regional_mask": mask},
            return_dict=False,
        )[0]


@pytest.fixture(scope="module")
def text() -> torch.Tensor:
    return torch.randn(1, 6, TEXT_WIDTH, generator=torch.Generator().manual_seed(2))


def test_without_a_mask_it_is_exactly_the_stock_transformer(text: torch.Tensor) -> None:
    torch.manual_seed(0)
    model = tiny_flux2_transformer().eval()
    stock = _run(model, text, None, stock=True)
    assert install_regional_flux2_processors(model) == 4
    assert torch.equal(_run(model, text, None), stock)


def _block_inputs(model: Any, text: torch.Tensor) -> tuple[torch.Tensor, Any]:
    image_ids, text_ids = _ids(ROWS, COLS, text.shape[1])
    image_rotary, text_rotary = model.pos_embed(image_ids), model.pos_embed(text_ids)
    rotary = tuple(torch.cat([t, i]) for t, i in zip(text_rotary, image_rotary, strict=True))
    image = torch.randn(1, ROWS * COLS, 32, generator=torch.Generator().manual_seed(3))
    return image, rotary


@pytest.mark.parametrize("block", ["double", "single"])
def test_a_region_text_reaches_only_the_image_tokens_of_its_box_at_a_masked_block(
    text: torch.Tensor, block: str
) -> None:
    torch.manual_seed(0)
    model = tiny_flux2_transformer().eval()
    install_regional_flux2_processors(model)
    bias = joint_bias(TOKEN_REGION, region_masks(), ROWS, COLS)
    assert bias is not None
    embedded = model.context_embedder(text)
    moved = embedded.clone()
    moved[:, 3:] += 1.0
    image, rotary = _block_inputs(model, text)

    def image_out(words: torch.Tensor, mask: RegionalMask) -> torch.Tensor:
        with torch.inference_mode():
            if block == "double":
                attn = model.transformer_blocks[0].attn
                out: torch.Tensor = attn(image, words, image_rotary_emb=rotary, regional_mask=mask)
                return out[0][0]
            attn = model.single_transformer_blocks[0].attn
            joint = torch.cat([words, image], dim=1)
            joint_out: torch.Tensor = attn(joint, image_rotary_emb=rotary, regional_mask=mask)
            return joint_out[0, 6:]

    mask = RegionalMask(bias, text_length=6)
    inside = image_token_masks(region_masks(), ROWS, COLS)[1]
    out, out_2 = image_out(embedded, mask), image_out(moved, mask)
    assert torch.equal(out[~inside], out_2[~inside])
    assert not torch.allclose(out[inside], out_2[inside])
    # With a base pass (base_ratio > 0) the region's text reaches everywhere.
    blended = RegionalMask(bias, text_length=6, base_ratio=0.3)
    assert not torch.allclose(
        image_out(embedded, blended)[~inside], image_out(moved, blended)[~inside]
    )
