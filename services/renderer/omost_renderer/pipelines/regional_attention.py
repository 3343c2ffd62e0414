"""Omost's regional cross-attention on a fused attention kernel.

Every key token ``j`` (a text token of some region's bags) belongs to one region ``r(j)``. For a
layer with ``N = H * W`` queries, Omost's logits are

    logits[n, j] = (q_n . k_j / sqrt(d)) * s_j,   s_j = N / area(r(j)),

and ``-inf`` where pixel ``n`` lies outside region ``r(j)``. Because ``s_j`` multiplies a dot
product with ``k_j``, it can be folded into the keys (``k_j * s_j``); the region test is a boolean
mask. That is what ``torch.nn.functional.scaled_dot_product_attention`` takes, so the logits are
never materialised by hand and the fused kernels (flash / memory-efficient) do the work.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F  # noqa: N812  (the conventional alias)

#: Side of Omost's region grid.
GRID = 90


def resize_masks(masks: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Resize region masks from the 90x90 grid to a layer's resolution, as Omost does.

    Args:
        masks: float (R, 90, 90) in {0, 1}.
        height: Rows of the layer's feature map.
        width: Columns of the layer's feature map.

    Returns:
        float (R, height * width) in {0, 1}, row-major like the flattened feature map.
    """
    resized = F.interpolate(masks[:, None].float(), size=(height, width), mode="nearest-exact")
    return resized.flatten(1)


def region_key_scale(region_masks: torch.Tensor, token_region: torch.Tensor) -> torch.Tensor:
    """Per-token logit scale ``s_j = N / area(r(j))``; 0 for padding tokens (``r(j) < 0``).

    Args:
        region_masks: float (R, N) at the layer's resolution.
        token_region: int64 (..., L) region of each key token, -1 for padding.

    Returns:
        float32 (..., L).
    """
    n = region_masks.shape[1]
    # A region too small to survive the resize gets area 0: clamp so its scale stays finite; its
    # tokens are masked out everywhere anyway.
    scale = n / region_masks.float().sum(dim=1).clamp(min=1.0)
    valid = token_region >= 0
    return torch.where(valid, scale[token_region.clamp(min=0)], torch.zeros_like(scale[0]))


def region_allowed(region_masks: torch.Tensor, token_region: torch.Tensor) -> torch.Tensor:
    """Boolean attention mask: query ``n`` may see key ``j`` when pixel ``n`` is in ``r(j)``.

    Args:
        region_masks: float (R, N) at the layer's resolution.
        token_region: int64 (..., L) region of each key token, -1 for padding (never visible).

    Returns:
        bool (..., N, L).
    """
    inside = region_masks[token_region.clamp(min=0)] > 0  # (..., L, N)
    inside = inside & (token_region >= 0)[..., None]
    return inside.transpose(-1, -2)


def region_bias(
    region_masks: torch.Tensor, token_region: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Additive attention mask: 0 where query ``n`` may see key ``j``, ``-inf`` elsewhere.

    The same information as :func:`region_allowed`, in the form the fused kernels add to the
    logits directly. Built once per resolution and reused at every step, it saves the kernel the
    conversion a boolean mask costs at each call (about 10% of a call on CPU at SDXL's shapes).

    Args:
        region_masks: float (R, N) at the layer's resolution.
        token_region: int64 (..., L) region of each key token, -1 for padding.
        dtype: The dtype of the queries it will be used with.

    Returns:
        ``dtype`` (..., N, L).
    """
    allowed = region_allowed(region_masks, token_region)
    bias = torch.zeros(allowed.shape, dtype=dtype, device=allowed.device)
    return bias.masked_fill_(~allowed, float("-inf"))


def masked_scaled_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    key_scale: torch.Tensor,
    allowed: torch.Tensor,
) -> torch.Tensor:
    """Attention with a per-key logit scale and a boolean mask, on the fused SDPA kernel.

    Args:
        query: (B, heads, N, d).
        key: (B, heads, L, d).
        value: (B, heads, L, d).
        key_scale: float (L,) or (B, L): multiplies each key's logits.
        allowed: bool (N, L) or (B, N, L): where attention is permitted; or the same as an
            additive mask (0 or ``-inf``, see :func:`region_bias`). Every query row must allow
            at least one key (the global region guarantees it).

    Returns:
        (B, heads, N, d) in the dtype of ``query``.
    """
    if key_scale.dim() == 1:
        key_scale = key_scale[None]
    if allowed.dim() == 2:
        allowed = allowed[None]
    key = key * key_scale[:, None, :, None].to(key.dtype)
    return F.scaled_dot_product_attention(query, key, value, attn_mask=allowed[:, None])


def regional_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    token_region: torch.Tensor,
    region_masks: torch.Tensor,
) -> torch.Tensor:
    """Omost's regional cross-attention (spec section 7) on a fused kernel.

    Args:
        query: (B, heads, N, d) image queries.
        key: (B, heads, L, d) text keys.
        value: (B, heads, L, d) text values.
        token_region: int64 (L,) region index of each key token.
        region_masks: float (R, N) in {0, 1}, already at the layer's resolution. Every pixel must
            lie in some region (Omost's global region covers all).

    Returns:
        (B, heads, N, d): softmax over keys of ``(q.k / sqrt(d)) * N / area(r(j))``, ``-inf``
        outside each token's region, times V.
    """
    scale = region_key_scale(region_masks, token_region)
    allowed = region_allowed(region_masks, token_region)
    return masked_scaled_attention(query, key, value, scale, allowed)


def naive_regional_attention(
    query: torch.Tensor,
    key: torch.Tensor,
    value: torch.Tensor,
    token_region: torch.Tensor,
    region_masks: torch.Tensor,
) -> torch.Tensor:
    """The formula written out with materialised logits, as Omost's baseline computes it.

    Reference for tests and benchmarks only; same arguments and result as
    :func:`regional_attention`.

    Args:
        query: (B, heads, N, d).
        key: (B, heads, L, d).
        value: (B, heads, L, d).
        token_region: int64 (L,).
        region_masks: float (R, N).

    Returns:
        (B, heads, N, d).
    """
    n = region_masks.shape[1]
    token_masks = region_masks[token_region]  # (L, N)
    scale = n / token_masks.sum(dim=1)  # (L,)
    logits = query @ key.transpose(-1, -2) / math.sqrt(query.shape[-1])  # (B, heads, N, L)
    logits = logits * scale.to(logits.dtype)
    logits = logits.masked_fill(token_masks.T[None, None] <= 0, float("-inf"))
    return logits.softmax(dim=-1) @ value
