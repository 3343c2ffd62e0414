"""Where and how strongly the regional mask applies in an MM-DiT family (FLUX.1, FLUX.2).

Both families mask the joint attention of ``[text, image]`` the same way (``joint_mask``), in the
same steps and blocks, blended with an unmasked pass by the same ratio; one schedule describes it,
builds a canvas's mask at a token grid, and records itself in each image's metadata.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from omost_renderer.pipelines.joint_mask import ImageAttention, joint_bias


@dataclass(frozen=True)
class RegionalSchedule:
    """Where and how strongly the regional mask applies.

    The defaults are InstantX Regional-Prompting-FLUX's: the mask in the first 10 steps, at every
    block, blended with 20% of an unmasked pass.

    Attributes:
        regional_steps: The mask applies in the first this many steps of each pass.
        regional_blocks: The mask applies at every this-many-th block (1: every block; 2:
            alternating blocks, as InvokeAI does).
        base_ratio: Share of an unmasked pass blended into the image tokens at masked blocks;
            0 runs no unmasked pass.
        image_attention: ``free`` or ``restricted`` image-to-image attention (``joint_mask``).
        area_scale: The ``log(N / area)`` bias on region text keys.
    """

    regional_steps: int = 10
    regional_blocks: int = 1
    base_ratio: float = 0.2
    image_attention: ImageAttention = ImageAttention.FREE
    area_scale: bool = True

    def __post_init__(self) -> None:
        if self.regional_steps < 0 or self.regional_blocks < 1:
            raise ValueError("regional_steps must be >= 0 and regional_blocks >= 1")
        if not 0.0 <= self.base_ratio <= 1.0:
            raise ValueError("base_ratio must be within 0..1")

    def joint_bias(
        self,
        token_region: torch.Tensor,
        masks: torch.Tensor,
        rows: int,
        cols: int,
        dtype: torch.dtype,
        device: torch.device,
    ) -> torch.Tensor | None:
        """A canvas's joint attention mask at a token grid, with this schedule's options.

        Args:
            token_region: The region of each text token (as ``joint_mask.joint_bias``).
            masks: The region masks, global first (as ``joint_mask.joint_bias``).
            rows: Image-token rows.
            cols: Image-token columns.
            dtype: The transformer's dtype.
            device: The transformer's device.

        Returns:
            ``joint_mask.joint_bias`` on ``device``; ``None`` for a canvas of one region.
        """
        mask = joint_bias(token_region, masks, rows, cols, image_attention=self.image_attention,
                          area_scale=self.area_scale, dtype=dtype)  # fmt: skip
        return None if mask is None else mask.to(device)

    def metadata(self) -> dict[str, object]:
        """The schedule as an image's metadata records it (plain JSON values)."""
        schedule: dict[str, object] = asdict(self)
        schedule["image_attention"] = str(self.image_attention)
        return schedule
