"""validate_ratios / assign_splits / duplicate_ids: seeded, stratified, group-aware splits."""

from __future__ import annotations

import random
from collections import Counter

import pytest

from babyemo.data.inspection import hashing
from babyemo.data.preparation.split import assign_splits, duplicate_ids, validate_ratios
from babyemo.errors import ConfigError
from tests.data.helpers import CLASSES


def test_validate_ratios():
    assert validate_ratios(["0.8", 0.1, 0.1]) == (0.8, 0.1, 0.1)
    assert validate_ratios((1, 0, 0)) == (1.0, 0.0, 0.0)
    for bad in [(0.5, 0.5), (0.8, 0.3, 0.1), (0, 0.5, 0.5), (-0.1, 0.6, 0.5),
                ("a", 0.5, 0.5), (float("nan"), 0.5, 0.5)]:
        with pytest.raises(ConfigError):
            validate_ratios(bad)


def test_assign_splits_stratified_and_deterministic():
    labels = [c for c in CLASSES for _ in range(100)]
    groups = list(range(300))
    a = assign_splits(labels, groups, (0.7, 0.15, 0.15), seed=0)
    assert a == assign_splits(labels, groups, (0.7, 0.15, 0.15), seed=0)
    assert a != assign_splits(labels, groups, (0.7, 0.15, 0.15), seed=1)
    for cls in CLASSES:
        per = Counter(s for s, lab in zip(a, labels, strict=True) if lab == cls)
        assert per == {"train": 70, "val": 15, "test": 15}
    b = assign_splits(labels, groups, (0.5, 0.5, 0.0), seed=0)
    assert Counter(b) == {"train": 150, "val": 150}


def test_assign_splits_keeps_groups_together():
    rng = random.Random(0)
    labels, groups = [], []
    for g in range(200):
        for _ in range(rng.randint(1, 4)):
            labels.append(rng.choice(CLASSES))
            groups.append(g)
    splits = assign_splits(labels, groups, (0.6, 0.2, 0.2), seed=5)
    by_group: dict[int, set[str]] = {}
    for g, s in zip(groups, splits, strict=True):
        by_group.setdefault(g, set()).add(s)
    assert all(len(v) == 1 for v in by_group.values())
    assert 0.5 < Counter(splits)["train"] / len(splits) < 0.7


def test_assign_splits_small_inputs():
    assert assign_splits([], [], (0.7, 0.15, 0.15)) == []
    assert assign_splits(["a"], [0], (0.7, 0.15, 0.15)) == ["train"]
    # a class with a single group cannot be stratified: still split, no error
    out = assign_splits(["a"] * 10 + ["b"], list(range(11)), (0.6, 0.2, 0.2))
    assert Counter(out)["train"] >= 5 and set(out) <= {"train", "val", "test"}
    with pytest.raises(ConfigError):
        assign_splits(["a", "b"], [0], (0.7, 0.15, 0.15))


def test_duplicate_ids_merge_sources():
    shas = ["a", "b", "a", "c", "d", "e"]
    far = [0, 0xFFFFFFFF00000000, 0x00000000FFFFFFFF, 0xAAAAAAAAAAAAAAAA]  # 32+ bits apart
    dh = [far[0], far[1], far[0], far[1] ^ 0b11, far[2], far[3]]
    ids, d = duplicate_ids(shas, dh, extra_groups=[[4, 5]], max_distance=2)
    assert ids == [0, 1, 0, 1, 4, 4] and d == 2
    assert hashing.component_ids(4, [[0, 2], [2, 3]]) == [0, 1, 0, 0]
    assert hashing.exact_duplicate_groups(["x", "y", "x", "x"]) == [[0, 2, 3]]
