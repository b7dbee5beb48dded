"""Perceptual hashing and duplicate grouping (Pillow + numpy, no torch).

The perceptual hash is the *difference hash* (dHash) of N. Krawetz, "Kind of Like That",
The Hacker Factor Blog, 2013: shrink the grayscale image to ``(hash_size + 1) x hash_size``
pixels and set one bit per horizontal pixel pair telling whether the left pixel is
brighter than its right neighbour. Re-encoding, rescaling or slight colour changes flip few
of the 64 bits; unrelated photos differ in about half of them (median 31 on the infant set).

Calibration of the near-duplicate Hamming distance on the real sets of ``../shared/data``
(hashes computed exactly as ``prepare`` does: JPEG draft decode to >= 64 px, grayscale).
Every infant pair up to distance 8 was looked at side by side; for FER-2013, 24 random
pairs per distance:

========  ======================================  ======================================
distance  infant-emotions (1,020 varied photos)   FER-2013 (35,887 aligned 48x48 faces)
========  ======================================  ======================================
0 - 5     26 pairs, all the same photo re-encoded  d=1: 226 pairs, all the same face
          or re-cropped; 3 of them across labels   d=2: 368 pairs, ~85 % the same face
          (angry/crying twice, angry/happy once)   d=3: 634 pairs, ~half unrelated
6         8 pairs, 7 the same photo (one more      d=4: 1,359 pairs, ~80 % unrelated
          crying/happy pair)                       union-find groups: largest 20 images
7 - 8     21 pairs, 12 the same photo              at d<=2, 72 at 3, 599 at 4, 3,086 at 6
========  ======================================  ======================================

The data README speaks of "about 9 pairs, one across classes"; by eye the infant set has
at least 33 near-identical pairs (4 across labels), so that count is an undercount.

Chance collisions between *unrelated* images grow with the square of the number of images
and are far more frequent among aligned, centred faces (FER) than among varied photos, so
no single distance suits both sets: 6 fits the infant photos but chains FER into one group
of 3,086 images. When no distance is given, :func:`near_duplicates` therefore chooses it
from the data (:func:`choose_max_distance`): the largest ``d <= 6`` such that at every
distance ``1..d`` the number of pairs of distinct hashes is at most
``max(4, n_images / 64)``. True duplicates are a small, roughly constant number per
distance, while chance collisions roughly double per extra bit and soon exceed this
budget. The rule picks 6 for the infant set (at most 8 pairs per distance against a budget
of 15.9) and 2 for FER-2013 (226 and 368 pairs against 560.7; 634 at distance 3), the
thresholds the table supports.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
from PIL import Image

MAX_NEAR_DUPLICATE_DISTANCE = 6
"""Largest Hamming distance ever used automatically (all but 1 of 34 infant pairs up to
this distance are the same photo; see the module doc)."""

PAIR_BUDGET_DIVISOR = 64
"""Automatic threshold: at most ``n_images / 64`` pairs per distance (see module doc)."""

MIN_PAIR_BUDGET = 4
"""Automatic threshold: the per-distance budget is never below this (small datasets)."""

MIN_CROWDED_HASH = 8
CROWDED_HASH_DIVISOR = 100
"""A hash value shared by more than ``max(8, n_images / 100)`` images is uninformative and
links nothing. Real sets stay far below it (infant: at most 2 images per value; FER-2013:
12, its blank images, against a limit of 358), while synthetic sets of flat images
drawn with the same shape share one value for every image."""

NEAR_BLANK_STD = 2.0
"""Images whose grayscale pixel standard deviation is below this many grey levels (0-255)
are near-blank. FER-2013 has 13 (12 of a single grey, one at 0.65); its next lowest
image has 4.1."""

_POPCOUNT8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def dhash(img: Image.Image, hash_size: int = 8) -> int:
    """Difference hash of an image (Krawetz 2013).

    Args:
        img: Any PIL image; it is converted to grayscale ("L") and resized with Pillow's
            Lanczos filter to ``(hash_size + 1, hash_size)``.
        hash_size: Rows of the hash grid; the hash has ``hash_size ** 2`` bits.

    Returns:
        The hash as a non-negative int of ``hash_size ** 2`` bits, row-major, most
        significant bit first; a bit is set when a pixel is brighter than its right
        neighbour.
    """
    small = img.convert("L").resize((hash_size + 1, hash_size), Image.Resampling.LANCZOS)
    pixels = np.asarray(small, dtype=np.int16)
    bits = (pixels[:, :-1] > pixels[:, 1:]).ravel()
    return int.from_bytes(np.packbits(bits).tobytes(), "big")


def format_hash(value: int) -> str:
    """A 64-bit hash as 16 lowercase hex digits."""
    return f"{value:016x}"


def hamming(a: int, b: int) -> int:
    """Number of differing bits between two hashes."""
    return bin(a ^ b).count("1")


def _popcount64(x: np.ndarray) -> np.ndarray:
    """Bits set per element of a uint64 array (uint8 result)."""
    if hasattr(np, "bitwise_count"):  # numpy >= 2.0
        return np.bitwise_count(x)
    return _POPCOUNT8[x.view(np.uint8)].reshape(x.shape + (8,)).sum(axis=-1, dtype=np.uint8)


def pairs_within(hashes: Sequence[int], max_distance: int,
                 chunk: int = 256) -> tuple[np.ndarray, np.ndarray]:
    """All pairs ``(i, j)``, ``i < j``, of 64-bit hashes at most ``max_distance`` bits apart.

    Exhaustive and exact: blocks of ``chunk`` hashes are XORed with every later hash and
    the set bits counted (``numpy.bitwise_count``, or a byte table on numpy < 2). The
    33,906 distinct FER-2013 hashes (575 million pairs) take about 2 s on one CPU core.

    Args:
        hashes: Hashes of at most 64 bits.
        max_distance: Maximum Hamming distance, inclusive.
        chunk: Hashes per block (memory about ``chunk * len(hashes) * 9`` bytes).

    Returns:
        ``(pairs, distances)``: int64 array of shape ``(n_pairs, 2)`` and the uint8
        distance of each pair.
    """
    h = np.asarray(list(hashes), dtype=np.uint64)
    found_pairs: list[np.ndarray] = []
    found_dist: list[np.ndarray] = []
    for start in range(0, len(h) - 1, chunk):
        stop = min(start + chunk, len(h) - 1)
        xor = h[start:stop, None] ^ h[None, start + 1:]
        dist = _popcount64(xor)
        rows, cols = np.nonzero(dist <= max_distance)
        i = rows + start
        j = cols + start + 1
        keep = j > i
        if keep.any():
            found_pairs.append(np.stack([i[keep], j[keep]], axis=1).astype(np.int64))
            found_dist.append(dist[rows[keep], cols[keep]].astype(np.uint8))
    if not found_pairs:
        return np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.uint8)
    return np.concatenate(found_pairs), np.concatenate(found_dist)


def component_ids(n: int, groups: Iterable[Iterable[int]]) -> list[int]:
    """Connected components of items linked by groups (union-find).

    Args:
        n: Number of items.
        groups: Any number of index groups; items of one group end in one component, and
            overlapping groups merge.

    Returns:
        For each item the smallest index of its component (so ids are deterministic).
    """
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for group in groups:
        members = list(group)
        for other in members[1:]:
            ra, rb = find(members[0]), find(other)
            if ra != rb:
                parent[max(ra, rb)] = min(ra, rb)
    return [find(i) for i in range(n)]


def _groups_of(ids: list[int]) -> list[list[int]]:
    members: dict[int, list[int]] = {}
    for i, root in enumerate(ids):
        members.setdefault(root, []).append(i)
    return sorted((g for g in members.values() if len(g) > 1), key=lambda g: g[0])


def choose_max_distance(pair_counts: dict[int, int], n_images: int) -> int:
    """The automatic near-duplicate threshold (see the module doc for the evidence).

    Args:
        pair_counts: Number of pairs of *distinct* hashes at each distance 1..6.
        n_images: Number of images hashed.

    Returns:
        The largest ``d <= MAX_NEAR_DUPLICATE_DISTANCE`` with at most
        ``max(MIN_PAIR_BUDGET, n_images / PAIR_BUDGET_DIVISOR)`` pairs at every distance
        ``1..d`` (0 when distance 1 already exceeds it).
    """
    budget = max(MIN_PAIR_BUDGET, n_images / PAIR_BUDGET_DIVISOR)
    chosen = 0
    for d in range(1, MAX_NEAR_DUPLICATE_DISTANCE + 1):
        if pair_counts.get(d, 0) > budget:
            break
        chosen = d
    return chosen


def near_duplicates(hashes: Sequence[int],
                    max_distance: int | None = None) -> tuple[list[list[int]], int]:
    """Groups of images whose hashes are within a Hamming distance, transitively.

    Identical hashes are linked; distinct hashes are compared with :func:`pairs_within`,
    and linked pairs merged by union-find. A hash value shared by more than
    ``max(MIN_CROWDED_HASH, n / CROWDED_HASH_DIVISOR)`` images carries no information
    (flat or synthetic images whose only edges coincide) and links nothing; byte-identical
    copies are still found by SHA-256 elsewhere.

    Args:
        hashes: 64-bit perceptual hashes (from :func:`dhash`), one per image.
        max_distance: Maximum Hamming distance, or ``None`` to choose it from the data
            with :func:`choose_max_distance`.

    Returns:
        ``(groups, max_distance)``: groups of two or more indices into ``hashes`` (each
        sorted, ordered by first index) and the distance used.

    Raises:
        ValueError: ``max_distance`` is negative.
    """
    if max_distance is not None and max_distance < 0:
        raise ValueError(f"max_distance must be >= 0, got {max_distance}")
    values = np.asarray(list(hashes), dtype=np.uint64)
    n = len(values)
    if n == 0:
        return [], max_distance if max_distance is not None else 0
    unique, first, inverse, counts = np.unique(values, return_index=True, return_inverse=True,
                                               return_counts=True)
    inverse = inverse.ravel()
    informative = counts <= max(MIN_CROWDED_HASH, n / CROWDED_HASH_DIVISOR)
    kept = np.flatnonzero(informative)
    search = MAX_NEAR_DUPLICATE_DISTANCE if max_distance is None else max_distance
    pairs, dist = (pairs_within(unique[kept].tolist(), search) if search > 0 and len(kept) > 1
                   else (np.zeros((0, 2), dtype=np.int64), np.zeros(0, dtype=np.uint8)))
    if max_distance is None:
        hist = np.bincount(dist, minlength=search + 1)
        max_distance = choose_max_distance({d: int(c) for d, c in enumerate(hist)}, n)
    pairs = kept[pairs[dist <= max_distance]] if len(pairs) else pairs
    same_hash: dict[int, list[int]] = {}
    for i, u in enumerate(inverse.tolist()):
        if informative[u]:
            same_hash.setdefault(u, []).append(i)
    links = [g for g in same_hash.values() if len(g) > 1]
    links.extend([int(first[a]), int(first[b])] for a, b in pairs.tolist())
    return _groups_of(component_ids(n, links)), max_distance


def near_duplicate_groups(hashes: Sequence[int],
                          max_distance: int | None = None) -> list[list[int]]:
    """Groups of indices whose hashes are within ``max_distance`` bits, transitively.

    Same as :func:`near_duplicates` without the distance used.
    """
    return near_duplicates(hashes, max_distance)[0]


def exact_duplicate_groups(keys: Sequence[str]) -> list[list[int]]:
    """Groups of indices sharing a key (e.g. the SHA-256 of the file), two or more each.

    Returns:
        Groups of indices, each sorted, ordered by first index.
    """
    members: dict[str, list[int]] = {}
    for i, key in enumerate(keys):
        members.setdefault(key, []).append(i)
    return sorted((g for g in members.values() if len(g) > 1), key=lambda g: g[0])
