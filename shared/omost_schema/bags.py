"""Greedy packing of sub-prompts into CLIP-sized bags, independent of any tokenizer."""

from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")

#: Tokens of one CLIP window between its BOS and EOS.
CLIP_WINDOW = 75


def greedy_partition(lengths: Sequence[int], max_sum: int) -> list[list[int]]:
    """Group items, in order, into bags whose lengths sum to at most ``max_sum``.

    An item joins the current bag if it fits, otherwise it starts a new bag (an item longer than
    ``max_sum`` gets a bag of its own). This is Omost's greedy merge.

    Args:
        lengths: Length of each item, in order.
        max_sum: Largest total length of a bag.

    Returns:
        The bags as lists of item indices, in order; empty when there are no items.
    """
    bags: list[list[int]] = []
    current: list[int] = []
    total = 0
    for index, length in enumerate(lengths):
        if current and total + length > max_sum:
            bags.append(current)
            current, total = [], 0
        current.append(index)
        total += length
    if current:
        bags.append(current)
    return bags


def greedy_bags(
    prefix: Sequence[T], suffixes: Sequence[Sequence[T]], *, window: int = CLIP_WINDOW
) -> list[list[T]]:
    """Pack tokenized sub-prompts into bags of at most ``window`` tokens, as Omost's renderer does.

    Each suffix is cropped to ``window`` tokens, the suffixes are packed greedily into the room
    left after the prefix (``window - len(prefix)``), and every bag becomes
    ``(prefix + bag)[:window]``. Add BOS, EOS and padding around each bag to encode it.

    Args:
        prefix: Tokens that start every bag (the concatenated prefix sub-prompts).
        suffixes: Tokens of each suffix sub-prompt, in order.
        window: Tokens available between BOS and EOS (75 for CLIP).

    Returns:
        One token list per bag, each at most ``window`` long; empty when there are no suffixes.
    """
    cropped = [list(s[:window]) for s in suffixes]
    allowed = window - len(prefix)
    bags = greedy_partition([len(s) for s in cropped], allowed)
    return [
        [*prefix, *(token for index in bag for token in cropped[index])][:window] for bag in bags
    ]
