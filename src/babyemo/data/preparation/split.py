"""Seeded, stratified, group-aware train/val/test splits.

Groups are the units that are split, so exact duplicates (SHA-256), near-duplicates
(dHash, :mod:`babyemo.data.inspection.hashing`) and the images of one subject never land in two
splits. scikit-learn is imported only when a split is made.
"""

from __future__ import annotations

import logging
import math
from collections import Counter
from collections.abc import Sequence

import numpy as np

from babyemo.data.inspection.hashing import component_ids, exact_duplicate_groups, near_duplicates
from babyemo.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_RATIOS = (0.7, 0.15, 0.15)
"""Default train/val/test fractions."""


def validate_ratios(ratios: Sequence[float]) -> tuple[float, float, float]:
    """Check train/val/test fractions.

    Raises:
        ConfigError: Not three finite non-negative numbers summing to 1 (within 1e-6)
            with a positive train fraction.
    """
    try:
        values = tuple(float(r) for r in ratios)
    except (TypeError, ValueError):
        raise ConfigError(f"Split ratios must be numbers, got {ratios!r}.",
                          "e.g. --split 0.7,0.15,0.15") from None
    if len(values) != 3:
        raise ConfigError(f"Split ratios need three values (train, val, test), got "
                          f"{len(values)}: {ratios!r}.", "e.g. --split 0.7,0.15,0.15")
    if any(not math.isfinite(v) or v < 0 for v in values) or abs(sum(values) - 1) > 1e-6:
        raise ConfigError(f"Split ratios must be non-negative and sum to 1, got {values}.",
                          "e.g. --split 0.7,0.15,0.15")
    if values[0] <= 0:
        raise ConfigError(f"The train ratio must be positive, got {values[0]}.",
                          "e.g. --split 0.7,0.15,0.15")
    return values  # type: ignore[return-value]


def _strata(labels: list[str]) -> list[str]:
    """Labels with classes of a single member merged (sklearn needs >= 2 per stratum)."""
    counts = Counter(labels)
    return [lab if counts[lab] >= 2 else "\0rare" for lab in labels]


def _two_way(items: np.ndarray, labels: list[str], fraction: float, seed: int
             ) -> tuple[np.ndarray, np.ndarray]:
    """Split ``items`` into (keep, take) with about ``fraction`` taken, stratified if possible."""
    from sklearn.model_selection import train_test_split

    if fraction <= 0 or len(items) == 0:
        return items, items[:0]
    if fraction >= 1:
        return items[:0], items
    strata = _strata(labels)
    attempts: list[list[str] | None] = [strata] if len(set(strata)) > 1 else []
    attempts.append(None)
    for stratify in attempts:
        try:
            keep, take = train_test_split(items, test_size=fraction, random_state=seed,
                                          shuffle=True, stratify=stratify)
            return np.asarray(keep), np.asarray(take)
        except ValueError as e:
            logger.debug("Stratified split not possible (%s); trying unstratified", e)
    return items, items[:0]  # a single item: it stays on the keep side


def assign_splits(labels: Sequence[str], groups: Sequence[int], ratios: Sequence[float],
                  seed: int = 0) -> list[str]:
    """Assign ``train``/``val``/``test`` to items, keeping each group in one split.

    Groups (e.g. duplicates, one subject) are the units that are split: each group gets
    the most common label of its members (ties: alphabetical first) and the group ids are
    split with scikit-learn's ``train_test_split`` in two seeded, stratified stages: train
    vs the rest, then the rest into val vs test. Stratification falls back to unstratified
    when a class has too few groups. The ratios therefore apply to groups; with mostly
    single-image groups they match the image fractions closely.

    Args:
        labels: Label of each item.
        groups: Group id of each item (equal ids = same group).
        ratios: ``(train, val, test)`` fractions (see :func:`validate_ratios`).
        seed: Random seed; the result is a pure function of the arguments.

    Returns:
        The split name of each item.

    Raises:
        ConfigError: Bad ratios, or ``labels`` and ``groups`` of different lengths.
    """
    train_r, val_r, test_r = validate_ratios(ratios)
    if len(labels) != len(groups):
        raise ConfigError(f"assign_splits got {len(labels)} labels but {len(groups)} groups.")
    members: dict[int, list[str]] = {}
    for label, group in zip(labels, groups, strict=True):
        members.setdefault(group, []).append(label)
    group_ids = sorted(members)
    group_labels = []
    for g in group_ids:
        counts = Counter(members[g])
        top = max(counts.values())
        group_labels.append(min(lab for lab, c in counts.items() if c == top))
    index = np.arange(len(group_ids))
    split_of = np.full(len(group_ids), "train", dtype=object)
    if len(group_ids):
        _, rest = _two_way(index, group_labels, val_r + test_r, seed)
        rest = np.sort(rest)
        if len(rest):
            test_fraction = test_r / (val_r + test_r)
            val, test = _two_way(rest, [group_labels[i] for i in rest], test_fraction, seed)
            split_of[val] = "val"
            split_of[test] = "test"
    by_group = dict(zip(group_ids, split_of.tolist(), strict=True))
    return [by_group[g] for g in groups]


def duplicate_ids(sha256s: Sequence[str], dhashes: Sequence[int],
                  extra_groups: Sequence[Sequence[int]] = (),
                  max_distance: int | None = None) -> tuple[list[int], int]:
    """Group ids joining exact duplicates, near-duplicates and ``extra_groups``.

    Args:
        sha256s: SHA-256 of each image.
        dhashes: Difference hash of each image.
        extra_groups: More groups of indices to keep together (e.g. one subject).
        max_distance: Near-duplicate Hamming distance, ``None`` = chosen from the data
            (:func:`babyemo.data.inspection.hashing.near_duplicates`).

    Returns:
        ``(ids, max_distance)``: a group id per image and the distance used.
    """
    exact = exact_duplicate_groups(list(sha256s))
    near, distance = near_duplicates(list(dhashes), max_distance)
    return component_ids(len(sha256s), [*exact, *near, *extra_groups]), distance


__all__ = ["DEFAULT_RATIOS", "assign_splits", "duplicate_ids", "validate_ratios"]
