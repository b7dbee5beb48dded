"""babyemo.data.inspection.hashing: difference hashes, near-duplicate pairs and groups."""

from __future__ import annotations

import io
import random

import pytest
from PIL import Image

from babyemo.data.inspection import hashing
from tests.data.helpers import pattern_image


def test_dhash_separates_photos_and_matches_recompression():
    a = pattern_image(1, (200, 200))
    buf = io.BytesIO()
    a.save(buf, "JPEG", quality=50)
    recompressed = Image.open(io.BytesIO(buf.getvalue()))
    assert hashing.hamming(hashing.dhash(a), hashing.dhash(recompressed)) <= 3
    assert hashing.hamming(hashing.dhash(a), hashing.dhash(a.resize((64, 64)))) <= 3
    distances = [hashing.hamming(hashing.dhash(pattern_image(i)), hashing.dhash(pattern_image(j)))
                 for i, j in [(1, 2), (3, 4), (5, 6), (7, 8)]]
    assert min(distances) > 10
    assert hashing.format_hash(5) == "0000000000000005"


def test_pairs_within_matches_brute_force():
    rng = random.Random(1)
    hashes = [rng.getrandbits(64) for _ in range(400)]
    hashes += [h ^ (1 << rng.randrange(64)) ^ (1 << rng.randrange(64)) for h in hashes[:30]]
    pairs, dist = hashing.pairs_within(hashes, 12, chunk=37)
    got = {(int(i), int(j)): int(d) for (i, j), d in zip(pairs, dist, strict=True)}
    want = {(i, j): hashing.hamming(hashes[i], hashes[j])
            for i in range(len(hashes)) for j in range(i + 1, len(hashes))
            if hashing.hamming(hashes[i], hashes[j]) <= 12}
    assert got == want and len(want) >= 30


def test_near_duplicate_grouping_rules():
    base = [0x0F0F0F0F0F0F0F0F, 0xFFFF0000FFFF0000, 0x123456789ABCDEF0]
    hashes = [base[0], base[0] ^ 0b111, base[1], base[2], base[2] ^ 1, base[2] ^ 3]
    groups, d = hashing.near_duplicates(hashes)
    assert d == hashing.MAX_NEAR_DUPLICATE_DISTANCE
    assert groups == [[0, 1], [3, 4, 5]]
    assert hashing.near_duplicate_groups(hashes, 0) == []
    assert hashing.near_duplicate_groups(hashes, 1) == [[3, 4, 5]]
    # a hash value shared by many images (flat synthetic images) links nothing
    assert hashing.near_duplicate_groups([7] * 20 + [99, 99]) == [[20, 21]]
    with pytest.raises(ValueError):
        hashing.near_duplicates(hashes, -1)


def test_choose_max_distance_budget():
    assert hashing.choose_max_distance({1: 2, 2: 3, 6: 4}, 100) == 6
    assert hashing.choose_max_distance({1: 2, 2: 3, 3: 5}, 100) == 2   # budget 4
    assert hashing.choose_max_distance({1: 200, 2: 300, 3: 700}, 35887) == 2   # budget 560.7
    assert hashing.choose_max_distance({1: 10}, 100) == 0
