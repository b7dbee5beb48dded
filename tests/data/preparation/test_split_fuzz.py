"""Property-based tests (hypothesis) of the split: stratification, duplicate grouping,
determinism for a seed."""

from __future__ import annotations

from collections import Counter, defaultdict

from hypothesis import given, settings
from hypothesis import strategies as st

from babyemo.data.inspection import hashing
from babyemo.data.preparation.split import assign_splits, duplicate_ids

FUZZ = settings(max_examples=60, deadline=None)
SPLIT_NAMES = ("train", "val", "test")

# ratios whose every non-zero part gives each class of >= 20 groups at least 2 groups
_RATIOS = st.sampled_from([(0.7, 0.15, 0.15), (0.8, 0.1, 0.1), (0.6, 0.2, 0.2),
                           (0.5, 0.25, 0.25), (0.5, 0.5, 0.0), (0.8, 0.0, 0.2),
                           (0.34, 0.33, 0.33), (1.0, 0.0, 0.0)])
_SEEDS = st.integers(0, 2**31 - 1)


@st.composite
def _grouped(draw, min_groups_per_class: int = 1):
    """``(labels, groups)``: 1-4 items per group, one label per group, shuffled."""
    classes = draw(st.lists(st.sampled_from(["angry", "crying", "happy", "sad", "x y"]),
                            min_size=1, max_size=4, unique=True))
    labels, groups = [], []
    gid = 0
    for cls in classes:
        for _ in range(draw(st.integers(min_groups_per_class, min_groups_per_class + 25))):
            for _ in range(draw(st.integers(1, 4))):
                labels.append(cls)
                groups.append(gid)
            gid += 1
    # group ids need not be 0..n-1 nor in order: scramble them
    offset = draw(st.integers(0, 10**6))
    groups = [offset + 7 * g for g in groups]
    order = draw(st.permutations(range(len(labels))))
    return [labels[i] for i in order], [groups[i] for i in order]


@FUZZ
@given(data=_grouped(), ratios=_RATIOS, seed=_SEEDS)
def test_groups_never_span_splits_and_seed_decides(data, ratios, seed):
    labels, groups = data
    splits = assign_splits(labels, groups, ratios, seed=seed)
    assert len(splits) == len(labels) and set(splits) <= set(SPLIT_NAMES)
    by_group = defaultdict(set)
    for g, s in zip(groups, splits, strict=True):
        by_group[g].add(s)
    assert all(len(v) == 1 for v in by_group.values())
    for name, r in zip(SPLIT_NAMES, ratios, strict=True):
        if r == 0:
            assert name not in splits
    # same arguments, same result; and the item order does not matter
    assert assign_splits(labels, groups, ratios, seed=seed) == splits
    reversed_splits = assign_splits(labels[::-1], groups[::-1], ratios, seed=seed)
    assert reversed_splits[::-1] == splits


@FUZZ
@given(data=_grouped(min_groups_per_class=20), ratios=_RATIOS, seed=_SEEDS)
def test_every_label_is_stratified(data, ratios, seed):
    """With >= 20 single-label groups per class, each class's groups are split in the
    requested ratios to within 2 groups per split (one per stage of the two-stage split)."""
    labels, groups = data
    splits = assign_splits(labels, groups, ratios, seed=seed)
    group_label = dict(zip(groups, labels, strict=True))
    group_split = dict(zip(groups, splits, strict=True))
    per_class = Counter(group_label.values())
    for cls, n in per_class.items():
        got = Counter(group_split[g] for g, lab in group_label.items() if lab == cls)
        for name, r in zip(SPLIT_NAMES, ratios, strict=True):
            assert abs(got[name] - r * n) <= 2, (cls, n, name, r, got)


_HASH = st.integers(0, 2**64 - 1)


@st.composite
def _hashed(draw):
    """Items with sha256 keys and dhashes, built with exact copies and near copies."""
    n = draw(st.integers(1, 40))
    shas, dh = [], []
    for i in range(n):
        kind = draw(st.sampled_from(["new", "copy", "near"])) if i else "new"
        if kind == "new":
            shas.append(f"sha{i}")
            dh.append(draw(_HASH))
        else:
            j = draw(st.integers(0, i - 1))
            if kind == "copy":
                shas.append(shas[j])
                dh.append(dh[j])
            else:
                flips = draw(st.lists(st.integers(0, 63), max_size=8))
                h = dh[j]
                for b in flips:
                    h ^= 1 << b
                shas.append(f"sha{i}")
                dh.append(h)
    return shas, dh


def _reference_components(shas, dh, extra, distance):
    """Union-find of the documented links: same SHA-256, dhash within ``distance`` for
    informative hash values (shared by at most max(8, n/100) items), extra groups."""
    n = len(shas)
    parent = list(range(n))

    def find(x):
        while parent[x] != x:
            x = parent[x]
        return x

    def union(a, b):
        ra, rb = find(a), find(b)
        parent[max(ra, rb)] = min(ra, rb)

    value_count = Counter(dh)
    informative = [value_count[h] <= max(hashing.MIN_CROWDED_HASH,
                                         n / hashing.CROWDED_HASH_DIVISOR) for h in dh]
    for i in range(n):
        for j in range(i + 1, n):
            if shas[i] == shas[j] or (informative[i] and informative[j]
                                      and hashing.hamming(dh[i], dh[j]) <= distance):
                union(i, j)
    for group in extra:
        for other in group[1:]:
            union(group[0], other)
    return [find(i) for i in range(n)]


@FUZZ
@given(data=_hashed(), max_distance=st.one_of(st.none(), st.integers(0, 8)),
       extra_seed=st.randoms(use_true_random=False), seed=_SEEDS)
def test_duplicates_are_grouped_and_kept_in_one_split(data, max_distance, extra_seed, seed):
    shas, dh = data
    n = len(shas)
    extra = [extra_seed.sample(range(n), min(n, 2))] if n > 2 else []
    ids, distance = duplicate_ids(shas, dh, extra_groups=extra, max_distance=max_distance)
    if max_distance is not None:
        assert distance == max_distance
    assert 0 <= distance <= max(hashing.MAX_NEAR_DUPLICATE_DISTANCE, max_distance or 0)
    assert ids == _reference_components(shas, dh, extra, distance)
    assert duplicate_ids(shas, dh, extra_groups=extra, max_distance=max_distance) == (
        ids, distance)
    labels = [extra_seed.choice(["a", "b"]) for _ in range(n)]
    splits = assign_splits(labels, ids, (0.6, 0.2, 0.2), seed=seed)
    for i in range(n):
        for j in range(n):
            if shas[i] == shas[j]:
                assert splits[i] == splits[j]  # byte-identical copies never span splits
            if ids[i] == ids[j]:
                assert splits[i] == splits[j]
