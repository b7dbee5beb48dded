import hashlib
import logging
import os

import numpy as np
import pytest
from PIL import Image

from babyemo.config import InputSpec
from babyemo.data.loading import dataset as dataset_mod
from babyemo.data.loading.dataset import ManifestDataset, decode_size
from babyemo.data.loading.image_cache import (
    DiskCache,
    RamCache,
    cache_key,
    content_digest,
    make_cache,
)
from babyemo.data.loading.images import load_image
from babyemo.data.preparation.manifest import read_manifest, write_manifest
from babyemo.errors import ConfigError
from babyemo.faces import CropSpec


def _img(mode="RGB", size=(9, 7)):
    rng = np.random.default_rng(0)
    shape = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    return Image.fromarray(rng.integers(0, 256, shape, dtype=np.uint8), mode)


@pytest.mark.parametrize("mode", ["RGB", "L"])
def test_disk_cache_round_trip_is_exact(tmp_path, mode):
    cache = DiskCache(tmp_path)
    img = _img(mode)
    assert cache.get("k1") is None
    cache.put("k1", img)
    back = cache.get("k1")
    assert back.mode == mode and back.size == img.size
    assert np.array_equal(np.asarray(back), np.asarray(img))
    assert not list(tmp_path.rglob("*.tmp"))  # written under a temporary name, renamed


def test_disk_cache_treats_a_broken_entry_as_absent(tmp_path):
    cache = DiskCache(tmp_path)
    cache.put("k", _img())
    path = next(tmp_path.rglob("k.npy"))
    path.write_bytes(path.read_bytes()[:20])  # truncated
    assert cache.get("k") is None
    cache.put("k", _img())
    assert cache.get("k") is not None


def test_cache_key_changes_with_everything_that_changes_pixels():
    base = cache_key("ab" * 32, size=112, mode="RGB")
    assert base == cache_key("ab" * 32, size=112, mode="RGB")
    others = {cache_key("cd" * 32, size=112, mode="RGB"),
              cache_key("ab" * 32, size=224, mode="RGB"),
              cache_key("ab" * 32, size=112, mode="L"),
              cache_key("ab" * 32, size=112, mode="RGB", crop=CropSpec(),
                        face={"box": [1, 2, 3, 4]}),
              cache_key("ab" * 32, size=112, mode="RGB", crop=CropSpec(),
                        face={"box": [1, 2, 3, 5]}),
              cache_key("ab" * 32, size=112, mode="RGB", crop=CropSpec(margin=0.5),
                        face={"box": [1, 2, 3, 4]})}
    assert base not in others and len(others) == 6


def test_make_cache(tmp_path):
    assert make_cache("none") is None
    assert isinstance(make_cache("ram"), RamCache)
    disk = make_cache("disk")
    assert isinstance(disk, DiskCache) and disk.folder.is_dir()


@pytest.mark.parametrize("kind", ["ram", "disk"])
def test_dataset_decodes_each_file_once_with_a_cache(prepared, monkeypatch, kind):
    spec = InputSpec(size=16, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    calls = []
    real = dataset_mod.load_image
    monkeypatch.setattr(dataset_mod, "load_image",
                        lambda p, *a, **k: calls.append(p) or real(p, *a, **k))
    manifest = read_manifest(prepared)
    ds = ManifestDataset(manifest, "train", manifest.class_names, spec, lambda im: im,
                         cache=make_cache(kind), augment=True)
    first = [np.asarray(ds.load(i)) for i in range(len(ds))]
    assert len(calls) == len(ds)
    if kind == "disk":  # a new dataset (another run, another worker) reads the disk cache
        ds = ManifestDataset(manifest, "train", manifest.class_names, spec, lambda im: im,
                             cache=make_cache(kind), augment=True)
    again = [np.asarray(ds.load(i)) for i in range(len(ds))]
    assert len(calls) == len(ds)
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


def test_training_datasets_decode_at_twice_the_input_and_eval_at_the_input():
    spec = InputSpec(size=112, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)
    assert decode_size(spec, augment=True) == 224 and decode_size(spec) == 112


# ---------------------------------------------- keyed on the bytes read, not the manifest


def _spec():
    return InputSpec(size=16, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)


def _replace_keeping_stat(path, colour):
    """Overwrite ``path`` with another picture of the same size, mtime restored."""
    from tests.conftest import make_image

    st = path.stat()
    with Image.open(path) as img:
        size = img.size
    make_image(path, color=colour, size=size)
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


@pytest.mark.parametrize("kind", ["ram", "disk"])
def test_a_replaced_image_is_decoded_anew_not_served_from_the_cache(prepared, kind):
    """Issue 13: after the images were replaced, ``train --cache disk`` trained on the old
    pixels (the key came from the manifest's sha256 column)."""
    manifest = read_manifest(prepared)
    cache = make_cache(kind)
    ds = ManifestDataset(manifest, "train", manifest.class_names, _spec(), lambda im: im,
                         cache=cache)
    before = [np.asarray(ds.load(i)) for i in range(len(ds))]
    _replace_keeping_stat(ds.paths[0], (255, 255, 255))
    if kind == "disk":  # a later run, same manifest, same cache folder
        ds = ManifestDataset(manifest, "train", manifest.class_names, _spec(), lambda im: im,
                             cache=make_cache(kind))
    after = np.asarray(ds.load(0))
    fresh = np.asarray(load_image(ds.paths[0], 3, decode_size(_spec())))
    assert np.array_equal(after, fresh) and not np.array_equal(after, before[0])
    assert all(np.array_equal(np.asarray(ds.load(i)), before[i]) for i in range(1, len(ds)))


@pytest.mark.parametrize("value", ["", "ab" * 32])
def test_blank_or_repeated_manifest_hashes_never_share_an_entry(prepared, tmp_path, value):
    """Issue 13: with the sha256 values blanked, 51 images collapsed into 2 cache entries."""
    manifest = read_manifest(prepared)
    for row in manifest.rows:
        row.sha256 = value
    hand_made = read_manifest(write_manifest(manifest, tmp_path / "hand-made"))
    folder = tmp_path / "cache"
    ds = ManifestDataset(hand_made, "train", hand_made.class_names, _spec(), lambda im: im,
                         cache=DiskCache(folder))
    for i in range(len(ds)):
        ds.load(i)
    cached = [np.asarray(ds.load(i)) for i in range(len(ds))]
    for i, got in enumerate(cached):
        assert np.array_equal(got, np.asarray(load_image(ds.paths[i], 3, 16))), ds.rel_paths[i]
    distinct = {hashlib.sha256(p.read_bytes()).hexdigest() for p in ds.paths}
    assert len(list(folder.rglob("*.npy"))) == len(distinct) == len(ds)


def test_cache_key_refuses_a_missing_hash():
    for bad in ("", "ab", "AB" * 32, "zz" * 32, None):
        with pytest.raises(ConfigError, match="SHA-256 of the file's bytes"):
            cache_key(bad, size=16, mode="RGB")
    assert content_digest(b"x") == hashlib.sha256(b"x").hexdigest()


def test_entries_hold_the_pixels_of_the_bytes_their_key_names(prepared, monkeypatch):
    """The bytes hashed for the key are the bytes decoded: a file swapped between the two
    reads cannot store new pixels under the old content's key."""
    manifest = read_manifest(prepared)
    cache = RamCache()
    ds = ManifestDataset(manifest, "train", manifest.class_names, _spec(), lambda im: im,
                         cache=cache)
    snapshot = ds.paths[0].read_bytes()
    real = dataset_mod.read_image_bytes

    def read_then_swap(path):
        data = real(path)
        if path == ds.paths[0]:
            _replace_keeping_stat(path, (0, 0, 0))  # replaced right after being read
        return data

    monkeypatch.setattr(dataset_mod, "read_image_bytes", read_then_swap)
    got = np.asarray(ds.load(0))
    want = np.asarray(load_image(ds.paths[0], 3, 16, data=snapshot))
    assert np.array_equal(got, want)
    key = cache_key(hashlib.sha256(snapshot).hexdigest(), size=16, mode="RGB")
    assert np.array_equal(np.asarray(cache.get(key)), want)


def test_a_file_changed_since_prepare_is_logged_once(prepared, caplog):
    """Once per manifest and process, however many files and datasets (train and val)."""
    manifest = read_manifest(prepared)
    datasets = [ManifestDataset(manifest, split, manifest.class_names, _spec(), lambda im: im,
                                cache=RamCache()) for split in ("train", "val")]
    for ds in datasets:
        _replace_keeping_stat(ds.paths[0], (1, 2, 3))
    with caplog.at_level(logging.WARNING, logger="babyemo.data.loading.dataset"):
        for ds in datasets:
            for i in range(len(ds)):
                ds.load(i)
    changed = [r for r in caplog.records if "changed since the manifest" in r.getMessage()]
    assert len(changed) == 1 and datasets[0].rel_paths[0] in changed[0].getMessage()
