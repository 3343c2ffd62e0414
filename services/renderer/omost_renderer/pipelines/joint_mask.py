"""The regional mask of joint (MM-DiT) attention over one sequence of text and image tokens.

An MM-DiT block attends over ``[text tokens, image tokens]`` at once. The canvas's text is the
concatenation of every region's prompt (global first), so each text token belongs to one region;
each image token lies inside some regions' boxes (always the global one, which covers the image).
The rules, as an additive bias on the ``(T + N) x (T + N)`` logits (0 allowed, ``-inf`` not):

- a region's text tokens and the image tokens inside its box see each other;
- the text tokens of different regions do not see each other (the global region's included);
- image to image is ``free`` (every image token sees every other), or ``restricted``: an image
  token sees the image tokens it shares a local region with, and a token that lies in no local
  region (the global one only) sees and is seen by every image token;
- Omost's area scale ``N / area`` (a multiplier on the logits of a region's text keys in its
  cross-attention) becomes the additive ``log(N / area)`` on the logits from image queries to the
  region's text keys: a small region's prompt keeps its weight against the large ones around it.

A canvas with the global region alone has nothing to mask and no bias (``log(N / N) = 0``):
:func:`joint_bias` returns ``None`` and the attention is exactly the unmasked one.
"""

from __future__ import annotations

from enum import StrEnum

import torch

from omost_renderer.pipelines.mask_layout import padded_keys
from omost_renderer.pipelines.regional_attention import resize_masks


class ImageAttention(StrEnum):
    """How image tokens attend to each other under the regional mask."""

    FREE = "free"
    RESTRICTED = "restricted"


def image_token_masks(masks: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    """Region masks on the image-token grid.

    Args:
        masks: float (R, 90, 90) in {0, 1}, global first.
        rows: Image-token rows (latent height / patch).
        cols: Image-token columns.

    Returns:
        bool (R, rows * cols), row-major like the packed image tokens; the global row all true.
    """
    inside = resize_masks(masks, rows, cols) > 0
    inside[0] = True
    return inside


def joint_allowed(
    token_region: torch.Tensor, inside: torch.Tensor, image_attention: ImageAttention
) -> torch.Tensor:
    """Which query may see which key in the joint sequence ``[text, image]``.

    Args:
        token_region: int64 (T,) region of each text token.
        inside: bool (R, N) region membership of each image token (:func:`image_token_masks`).
        image_attention: ``free`` or ``restricted`` image-to-image attention.

    Returns:
        bool (T + N, T + N); every row allows at least itself.
    """
    text_text = token_region[:, None] == token_region[None, :]
    text_image = inside[token_region]  # (T, N)
    n = inside.shape[1]
    if image_attention is ImageAttention.FREE:
        image_image = torch.ones(n, n, dtype=torch.bool, device=inside.device)
    else:
        local = inside[1:].float()
        uncovered = local.sum(dim=0) == 0
        image_image = (local.T @ local) > 0
        image_image |= uncovered[:, None] | uncovered[None, :]
        image_image |= torch.eye(n, dtype=torch.bool, device=inside.device)
    top = torch.cat([text_text, text_image], dim=1)
    bottom = torch.cat([text_image.T, image_image], dim=1)
    return torch.cat([top, bottom], dim=0)


def area_bias(token_region: torch.Tensor, inside: torch.Tensor) -> torch.Tensor:
    """``log(N / area(r(j)))`` for each text key ``j``: the additive form of Omost's area scale.

    Args:
        token_region: int64 (T,).
        inside: bool (R, N).

    Returns:
        float32 (T,); 0 for the global region's tokens.
    """
    n = inside.shape[1]
    # A region too small to cover one image token keeps a finite bias; its text sees no image.
    area = inside.float().sum(dim=1).clamp(min=1.0)
    return torch.log(n / area)[token_region]


def joint_bias(
    token_region: torch.Tensor,
    masks: torch.Tensor,
    rows: int,
    cols: int,
    *,
    image_attention: ImageAttention = ImageAttention.FREE,
    area_scale: bool = True,
    dtype: torch.dtype = torch.float32,
) -> torch.Tensor | None:
    """The additive attention mask of one canvas for the joint sequence ``[text, image]``.

    Args:
        token_region: int64 (T,) region of each text token (global first).
        masks: float (R, 90, 90) region masks, global first.
        rows: Image-token rows.
        cols: Image-token columns.
        image_attention: ``free`` or ``restricted`` image-to-image attention.
        area_scale: Add ``log(N / area)`` to the logits from image queries to region text keys.
        dtype: The dtype of the queries it will be added to.

    Returns:
        ``dtype`` (1, 1, T + N, T + N) with 0 where allowed, ``-inf`` elsewhere and the area bias
        on the image-to-text block (a view of storage padded to 8 keys, ``mask_layout``);
        ``None`` when the canvas has only its global region.
    """
    if masks.shape[0] == 1:
        return None
    token_region = token_region.cpu()
    inside = image_token_masks(masks.cpu(), rows, cols)
    allowed = joint_allowed(token_region, inside, image_attention)
    bias = torch.zeros(allowed.shape, dtype=torch.float32)
    if area_scale:
        t = token_region.shape[0]
        bias[t:, :t] += area_bias(token_region, inside)[None, :]
    bias.masked_fill_(~allowed, float("-inf"))
    # Stored with its key axis padded to 8, so the fused kernel takes it without a copy per call.
    size = allowed.shape[-1]
    return padded_keys(bias.to(dtype))[:, :size][None, None]
