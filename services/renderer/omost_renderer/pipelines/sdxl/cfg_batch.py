"""Classifier-free guidance in one UNet call: negative and positive conditionings stacked.

The regional (positive) and plain (negative) key sequences have different lengths; the shorter is
padded with zero features whose tokens belong to no region (-1), so the attention mask hides them
and the result equals two separate passes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F  # noqa: N812  (the conventional alias)

from omost_renderer.pipelines.sdxl.attention_processor import RegionalContext
from omost_renderer.pipelines.sdxl.encoding import EncodedPrompt


@dataclass(frozen=True)
class GuidanceBatch:
    """The UNet's text inputs for ``[neg] * k + [pos] * k``.

    Attributes:
        embeds: (2k, L, D) text features, padded to the longer sequence.
        pooled: (2k, P) pooled embeddings.
        token_region: int64 (2, L) region of each token per group, -1 on padding.
        masks: float32 (R_neg + R_pos, 90, 90) every region of both groups.
        repeats: k, the number of images.
    """

    embeds: torch.Tensor
    pooled: torch.Tensor
    token_region: torch.Tensor
    masks: torch.Tensor
    repeats: int

    def context(self, latent_height: int, latent_width: int) -> RegionalContext:
        """Regional attention context for a latent of this size."""
        return RegionalContext(
            self.token_region, self.masks, latent_height, latent_width, repeats=self.repeats
        )


def _pad(
    prompt: EncodedPrompt, length: int, region_offset: int
) -> tuple[torch.Tensor, torch.Tensor]:
    missing = length - prompt.embeds.shape[1]
    embeds = F.pad(prompt.embeds, (0, 0, 0, missing))
    regions = F.pad(prompt.token_region + region_offset, (0, missing), value=-1)
    return embeds, regions


def stack_for_guidance(
    negative: EncodedPrompt, positive: EncodedPrompt, repeats: int
) -> GuidanceBatch:
    """Stack two conditionings for one batched UNet call per step.

    Args:
        negative: The negative prompt (one all-ones region).
        positive: The canvas's regions.
        repeats: Images rendered at once.

    Returns:
        The batch, negative rows first.
    """
    length = max(negative.embeds.shape[1], positive.embeds.shape[1])
    neg_embeds, neg_regions = _pad(negative, length, 0)
    pos_embeds, pos_regions = _pad(positive, length, negative.masks.shape[0])
    embeds = torch.cat([neg_embeds, pos_embeds]).repeat_interleave(repeats, dim=0)
    pooled = torch.cat([negative.pooled, positive.pooled]).repeat_interleave(repeats, dim=0)
    return GuidanceBatch(
        embeds=embeds,
        pooled=pooled,
        token_region=torch.stack([neg_regions, pos_regions]).to(torch.int64),
        masks=torch.cat([negative.masks, positive.masks]),
        repeats=repeats,
    )


def single_context(
    prompt: EncodedPrompt, latent_height: int, latent_width: int, repeats: int
) -> RegionalContext:
    """Regional context for a conditioning run on its own (Omost's separate passes)."""
    return RegionalContext(
        prompt.token_region[None], prompt.masks, latent_height, latent_width, repeats=repeats
    )
