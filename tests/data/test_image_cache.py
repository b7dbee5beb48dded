import numpy as np
import pytest
from PIL import Image

from babyemo.config import InputSpec
from babyemo.data import dataset as dataset_mod
from babyemo.data.dataset import ManifestDataset, decode_size
from babyemo.data.image_cache import DiskCache, RamCache, cache_key, make_cache
from babyemo.data.manifest import read_manifest
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
