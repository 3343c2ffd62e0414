"""Attention masks laid out for the fused kernels: keys padded to 8 in storage, rows as views.

PyTorch's memory-efficient SDPA kernel needs every stride of an attention mask but the last to be
a multiple of 8 (:data:`MASK_ALIGNMENT`); a mask that is not gets padded into a new tensor at every
call, a copy of the whole mask per layer per step. A mask built once per run is therefore stored
with its key axis padded to a multiple of 8 and sliced back (:func:`padded_keys`): same values,
aligned strides. A batch whose rows repeat a few distinct masks (a job's images, a job's negative
and positive groups) takes them as views where the layout allows (:func:`rows_of_groups`).
"""

from __future__ import annotations

import torch

#: The memory-efficient SDPA kernel wants every stride of its mask but the last to be a multiple
#: of this; a mask that is not gets padded by the kernel on every call (a copy per layer per step).
MASK_ALIGNMENT = 8


def padded_keys(bias: torch.Tensor) -> torch.Tensor:
    """``bias`` (..., N, L) copied into storage whose key axis is a multiple of 8, padded with -inf.

    Slicing the result back to ``L`` keys gives the same values in the layout the fused kernel
    takes as it is, instead of padding a copy of the mask at every call.

    Args:
        bias: Additive mask (..., N, L).

    Returns:
        (..., N, L8) with ``L8 = ceil(L / 8) * 8``; ``[..., :L]`` is ``bias``.
    """
    length = bias.shape[-1]
    padded_length = -(-length // MASK_ALIGNMENT) * MASK_ALIGNMENT
    if padded_length == length:
        return bias.contiguous()
    storage = bias.new_full((*bias.shape[:-1], padded_length), float("-inf"))
    storage[..., :length] = bias
    return storage


def rows_of_groups(tensor: torch.Tensor, repeats: tuple[int, ...]) -> torch.Tensor:
    """Rows ``[g0] * repeats[0] + [g1] * repeats[1] + ...`` of per-group ``tensor`` (G, ...).

    A view (``expand``) where the layout allows it: one row per group, or a single group
    repeated; otherwise one gathered copy (the caller keeps it for the whole run).

    Args:
        tensor: (G, ...) one entry per group.
        repeats: Rows of each group, ``len(repeats) == G``.

    Returns:
        (sum(repeats), ...).
    """
    if all(r == 1 for r in repeats):
        return tensor
    if len(repeats) == 1:
        return tensor.expand(repeats[0], *tensor.shape[1:])
    # Built from fills on the device: no host-to-device copy (a sync) inside a step.
    index = torch.cat([
        torch.full((r,), group, dtype=torch.int64, device=tensor.device)
        for group, r in enumerate(repeats)
    ])  # fmt: skip
    return tensor.index_select(0, index)
