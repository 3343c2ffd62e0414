"""The two-region scene of the FLUX attention tests: a 4x4 token image, six text tokens."""

from __future__ import annotations

import torch

ROWS = COLS = 4
#: Text tokens 0-2 are the global region's, 3-5 the local one's (the left half).
TOKEN_REGION = torch.tensor([0, 0, 0, 1, 1, 1])


def region_masks() -> torch.Tensor:
    """Return the two regions' pixel masks: the whole image, and its left half."""
    masks = torch.zeros(2, 90, 90)
    masks[0] = 1
    masks[1, :, :45] = 1
    return masks
