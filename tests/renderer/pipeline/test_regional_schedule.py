"""The FLUX families' regional schedule: its checks, its mask at a token grid, its metadata."""

from __future__ import annotations

import pytest
import torch
from omost_renderer.pipelines.joint_mask import ImageAttention, joint_bias
from omost_renderer.pipelines.regional_schedule import RegionalSchedule
from two_regions import COLS, ROWS, TOKEN_REGION, region_masks


def test_the_schedule_refuses_impossible_values() -> None:
    with pytest.raises(ValueError, match="regional_blocks"):
        RegionalSchedule(regional_blocks=0)
    with pytest.raises(ValueError, match="base_ratio"):
        RegionalSchedule(base_ratio=1.5)


def test_the_mask_is_joint_bias_with_the_schedules_options() -> None:
    schedule = RegionalSchedule(image_attention=ImageAttention.RESTRICTED, area_scale=False)
    ours = schedule.joint_bias(TOKEN_REGION, region_masks(), ROWS, COLS, torch.float32,
                               torch.device("cpu"))  # fmt: skip
    theirs = joint_bias(TOKEN_REGION, region_masks(), ROWS, COLS,
                        image_attention=ImageAttention.RESTRICTED, area_scale=False)  # fmt: skip
    assert ours is not None
    assert theirs is not None
    assert torch.equal(ours, theirs)
    one_region = region_masks()[:1]
    assert schedule.joint_bias(TOKEN_REGION[:3], one_region, ROWS, COLS, torch.float32,
                               torch.device("cpu")) is None  # fmt: skip


def test_the_metadata_is_plain_values() -> None:
    assert RegionalSchedule().metadata() == {
        "regional_steps": 10,
        "regional_blocks": 1,
        "base_ratio": 0.2,
        "image_attention": "free",
        "area_scale": True,
    }
