from __future__ import annotations

from omost_schema import greedy_bags, greedy_partition

SEED_LENGTHS = [25, 35, 5, 60, 15, 25]  # sub-prompts A..F of the seed's example


def test_greedy_bags_packs_the_seed_example_after_a_prefix() -> None:
    # Every bag starts with a prefix (at least one token), so fewer than 75 tokens remain:
    # A25 B35 C5 D60 E15 F25 -> {A,B,C} 65, {D} 60, {E,F} 40, as the seed shows.
    suffixes = [[name] * length for name, length in zip("ABCDEF", SEED_LENGTHS, strict=True)]
    bags = greedy_bags(["p"], suffixes)
    assert [sorted(set(bag) - {"p"}) for bag in bags] == [["A", "B", "C"], ["D"], ["E", "F"]]
    assert [len(bag) - 1 for bag in bags] == [65, 60, 40]


def test_greedy_partition_packs_the_seed_example() -> None:
    assert greedy_partition(SEED_LENGTHS, 74) == [[0, 1, 2], [3], [4, 5]]


def test_greedy_partition_item_that_exactly_fills_the_bag_joins_it() -> None:
    # D60 + E15 == 75: with the whole window free (no prefix) E still fits beside D.
    assert greedy_partition(SEED_LENGTHS, 75) == [[0, 1, 2], [3, 4], [5]]


def test_greedy_partition_oversized_item_gets_its_own_bag() -> None:
    assert greedy_partition([10, 80, 10], 75) == [[0], [1], [2]]


def test_greedy_partition_is_greedy_not_optimal() -> None:
    # An optimal packing would put 40 with 35; the greedy merge keeps program order.
    assert greedy_partition([40, 40, 35], 75) == [[0], [1, 2]]


def test_greedy_partition_empty_gives_no_bags() -> None:
    assert greedy_partition([], 75) == []


def test_greedy_bags_prefix_starts_every_bag_and_limits_room() -> None:
    prefix = ["p"] * 10
    suffixes = [["a"] * 30, ["b"] * 30, ["c"] * 10]  # 65 tokens of room after the prefix
    bags = greedy_bags(prefix, suffixes)
    assert bags == [prefix + ["a"] * 30 + ["b"] * 30, prefix + ["c"] * 10]


def test_greedy_bags_crops_long_suffixes_and_bags_to_window() -> None:
    bags = greedy_bags(["p"] * 5, [list(range(100))])
    assert len(bags) == 1
    assert len(bags[0]) == 75
    assert bags[0][:5] == ["p"] * 5
    assert bags[0][5:] == list(range(70))


def test_greedy_bags_window_is_configurable() -> None:
    assert greedy_bags([0], [[1, 2], [3, 4]], window=3) == [[0, 1, 2], [0, 3, 4]]


def test_greedy_bags_without_suffixes_is_empty() -> None:
    assert greedy_bags([1, 2, 3], []) == []
