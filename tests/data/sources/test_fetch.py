"""Tests of babyemo.data.sources.fetch against a local HTTP server on 127.0.0.1 only."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import sys
import tarfile
import types
from pathlib import Path

import pytest

from babyemo import paths
from babyemo.data.sources import catalog
from babyemo.data.sources.fetch import fetch_dataset, fetch_url_dataset
from babyemo.errors import DataError, DownloadError, MissingDependencyError
from tests.conftest import make_image, make_imagefolder
from tests.data.helpers import closed_port_url, file_sha256, zip_folder


def test_fetch_url_dataset_end_to_end(served_zip, server, tmp_path):
    _, url = served_zip
    root = fetch_url_dataset(url)
    assert root == paths.datasets_dir() / "faces" / "faces"
    assert sorted(p.name for p in root.iterdir()) == ["angry", "crying", "happy"]
    assert all(len(list((root / c).glob("*.png"))) == 3 for c in ("angry", "crying", "happy"))
    downloaded = list(paths.downloads_dir().iterdir())
    assert len(downloaded) == 1 and re.fullmatch(r"faces-[0-9a-f]{8}\.zip", downloaded[0].name)
    n_requests = len(server.handler.requests)
    assert fetch_url_dataset(url) == root  # reused, no new request
    assert len(server.handler.requests) == n_requests


def test_fetch_url_dataset_dest_and_flat_archive(server, tmp_path):
    data = make_imagefolder(tmp_path / "build", classes=("a", "b"), per_class=1)
    archive = server.root / "my set (v2).tar.gz"
    with tarfile.open(archive, "w:gz") as tf:
        for cls in ("a", "b"):
            tf.add(data / cls, arcname=cls)
    url = f"{server.url}/my%20set%20%28v2%29.tar.gz"
    root = fetch_url_dataset(url, sha256=file_sha256(archive), dest=tmp_path / "mine")
    assert root == tmp_path / "mine" / "my_set_v2"
    assert sorted(p.name for p in root.iterdir() if not p.name.startswith(".")) == ["a", "b"]


def test_fetch_url_dataset_refuses_folder_from_other_url(served_zip, server, tmp_path):
    archive, url = served_zip
    fetch_url_dataset(url)
    (server.root / "other").mkdir()
    (server.root / "other" / "faces.zip").write_bytes(archive.read_bytes())
    with pytest.raises(DownloadError, match="not made from"):
        fetch_url_dataset(f"{server.url}/other/faces.zip")


# --------------------------------------------------------------------------- fetch_dataset

INFANT_SHA = "c50836c43f3c3403a0b62a13e544b31acbd40a24"


def _infant_github_zip(tmp_path: Path, archive: Path) -> Path:
    """A zip laid out like the real InfantEmotionGen GitHub archive."""
    top = tmp_path / "gh" / f"InfantEmotionGen-{INFANT_SHA}"
    images = top / "data" / "baby_emotion_samples"
    labels = []
    for index, cls in enumerate(("angry", "crying", "happy")):
        for i in range(index + 2):  # 2 angry, 3 crying, 4 happy
            name = f"{cls} ({i})_jpg.rf.{i:04d}.jpg"
            make_image(images / name, color=(60 * index, 80, 120), fmt="JPEG")
            labels.append([name, index])
    labels.append(["gone_jpg.rf.0.jpg", 0])          # listed but missing
    make_image(images / "stray.jpg", fmt="JPEG")      # present but not listed
    (top / "README.md").write_text("demo")
    (top / "data" / "baby_emotion_samples.json").write_text(json.dumps({"labels": labels}))
    return zip_folder(tmp_path / "gh", archive)


@pytest.fixture
def infant_server(server, tmp_path, monkeypatch):
    archive = _infant_github_zip(tmp_path, server.root / f"{INFANT_SHA}.zip")
    entry = catalog.CATALOG["infant-emotions"]
    monkeypatch.setitem(catalog.CATALOG, "infant-emotions",
                        dataclasses.replace(entry, url=f"{server.url}/{INFANT_SHA}.zip"))
    return archive


def test_fetch_infant_emotions_download(infant_server, server, caplog):
    caplog.set_level(logging.INFO, logger="babyemo.data.sources.arrange")
    root = fetch_dataset("infant-emotions")
    assert root == paths.datasets_dir() / "infant-emotions"
    counts = {c.name: len(list(c.iterdir())) for c in root.iterdir()}
    assert counts == {"angry": 2, "crying": 3, "happy": 4}
    assert (root / "crying" / "crying (2)_jpg.rf.0002.jpg").is_file()
    assert "1 images listed" in caplog.text and "1 images in the archive" in caplog.text
    assert (paths.downloads_dir() / f"infant-emotions-{INFANT_SHA}.zip").is_file()
    # nothing else left beside the dataset (no temp folders)
    assert [p.name for p in paths.datasets_dir().iterdir()] == ["infant-emotions"]
    n_requests = len(server.handler.requests)
    assert fetch_dataset("infant-emotions") == root
    assert len(server.handler.requests) == n_requests


def test_fetch_dataset_dest(infant_server, tmp_path):
    root = fetch_dataset("infant-emotions", dest=tmp_path / "elsewhere")
    assert root == tmp_path / "elsewhere" / "infant-emotions"
    assert sorted(p.name for p in root.iterdir()) == ["angry", "crying", "happy"]


def test_fetch_dataset_source_archive(infant_server, tmp_path):
    root = fetch_dataset("infant-emotions", source=infant_server, dest=tmp_path / "d")
    assert sum(1 for _ in root.rglob("*.jpg")) == 9


def test_fetch_fer2013_download(server, tmp_path, monkeypatch):
    sha = "9d0b7b81c7335d20576326daa70d1a7cc7b0c42f"
    top = tmp_path / "gh" / f"FaceExp-{sha}" / "data"
    for split in ("train", "test"):
        make_imagefolder(top / split, classes=catalog.CATALOG["fer2013"].classes, per_class=1,
                         size=(48, 48))
    zip_folder(tmp_path / "gh", server.root / "fer.zip")
    monkeypatch.setitem(catalog.CATALOG, "fer2013", dataclasses.replace(
        catalog.CATALOG["fer2013"], url=f"{server.url}/fer.zip"))
    root = fetch_dataset("fer2013")
    assert sorted(p.name for p in root.iterdir()) == ["test", "train"]
    assert sorted(p.name for p in (root / "train").iterdir()) == sorted(
        catalog.CATALOG["fer2013"].classes)
    assert len(list(root.rglob("*.png"))) == 14


def test_fetch_dataset_local_datasets_in_place(tmp_path, monkeypatch):
    local = tmp_path / "local"
    make_imagefolder(local / "infant-emotions", per_class=1)
    monkeypatch.setenv("BABYEMO_DATASETS", str(local))
    assert fetch_dataset("infant-emotions") == local / "infant-emotions"
    assert list(paths.datasets_dir().iterdir()) == []  # not copied


def test_fetch_dataset_source_folder_in_place(tmp_path):
    source = make_imagefolder(tmp_path / "mine", per_class=1)
    assert fetch_dataset("infant-emotions", source=source) == source
    assert list(paths.datasets_dir().iterdir()) == []


def test_fetch_dataset_bad_source(tmp_path):
    with pytest.raises(DataError, match="does not exist"):
        fetch_dataset("infant-emotions", source=tmp_path / "nope")
    (tmp_path / "flat").mkdir()
    make_image(tmp_path / "flat" / "a.png")
    with pytest.raises(DataError, match="no class or split folders"):
        fetch_dataset("infant-emotions", source=tmp_path / "flat")


def test_fetch_dataset_existing_cache_is_used(tmp_path, monkeypatch):
    monkeypatch.setitem(catalog.CATALOG, "infant-emotions", dataclasses.replace(
        catalog.CATALOG["infant-emotions"], url=closed_port_url()))
    cached = make_imagefolder(paths.datasets_dir() / "infant-emotions", per_class=1)
    assert fetch_dataset("infant-emotions") == cached


def test_catalogue_url_must_be_https(monkeypatch):
    monkeypatch.setitem(catalog.CATALOG, "infant-emotions", dataclasses.replace(
        catalog.CATALOG["infant-emotions"], url="http://example.invalid/x.zip"))
    with pytest.raises(DownloadError, match="not https"):
        fetch_dataset("infant-emotions")
    assert list(paths.downloads_dir().iterdir()) == []


def test_local_datasets_without_name_mentioned_on_failure(tmp_path, monkeypatch):
    (tmp_path / "local").mkdir()
    monkeypatch.setenv("BABYEMO_DATASETS", str(tmp_path / "local"))
    monkeypatch.setitem(catalog.CATALOG, "infant-emotions", dataclasses.replace(
        catalog.CATALOG["infant-emotions"], url=closed_port_url()))
    with pytest.raises(DownloadError) as info:
        fetch_dataset("infant-emotions")
    assert f"BABYEMO_DATASETS={tmp_path / 'local'} has no 'infant-emotions'" in info.value.hint


def test_unknown_dataset():
    with pytest.raises(KeyError, match="did you mean fer2013"):
        fetch_dataset("fer2014")


@pytest.mark.parametrize(("name", "module", "extra"), [
    ("baby-emotion-kaggle", "kagglehub", "kaggle"),
    ("babyface", "gdown", "gdrive"),
])
def test_missing_optional_dependency(name, module, extra, monkeypatch):
    monkeypatch.setitem(sys.modules, module, None)  # makes `import module` fail
    with pytest.raises(MissingDependencyError) as info:
        fetch_dataset(name)
    assert "pip install" in info.value.hint and f"babyemo[{extra}]" in info.value.hint
    assert info.value.package == module


def _fake_kagglehub(folder: Path, calls: list[str]) -> types.ModuleType:
    module = types.ModuleType("kagglehub")

    def dataset_download(handle):
        calls.append(handle)
        return str(folder)

    module.dataset_download = dataset_download
    return module


def test_kaggle_entry_with_fake_kagglehub(tmp_path, monkeypatch):
    cache = tmp_path / "kagglecache" / "versions" / "1"
    for split in ("train", "validation"):
        make_imagefolder(cache / "Baby Emotions" / split, classes=tuple("abcde"), per_class=1)
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "kagglehub", _fake_kagglehub(cache, calls))
    root = fetch_dataset("baby-emotion-kaggle")
    assert calls == ["sudarshanvaidya/baby-emotion-classification"]
    assert root == paths.datasets_dir() / "baby-emotion-kaggle"
    assert sorted(p.name for p in root.iterdir()) == ["train", "validation"]
    assert len(list(root.rglob("*.png"))) == 10
    assert len(list(cache.rglob("*.png"))) == 10  # kagglehub's cache left intact


def test_kaggle_failure_becomes_download_error(monkeypatch):
    module = types.ModuleType("kagglehub")

    def dataset_download(handle):
        raise RuntimeError("401 Unauthorized")

    module.dataset_download = dataset_download
    monkeypatch.setitem(sys.modules, "kagglehub", module)
    with pytest.raises(DownloadError, match="401") as info:
        fetch_dataset("baby-emotion-kaggle")
    assert "KAGGLE_KEY" in info.value.hint


def test_fer2013_falls_back_to_kaggle(tmp_path, monkeypatch):
    monkeypatch.setitem(catalog.CATALOG, "fer2013", dataclasses.replace(
        catalog.CATALOG["fer2013"], url=closed_port_url()))
    cache = tmp_path / "kagglecache"
    for split in ("train", "test"):
        make_imagefolder(cache / split, classes=("angry", "happy"), per_class=1)
    calls: list[str] = []
    monkeypatch.setitem(sys.modules, "kagglehub", _fake_kagglehub(cache, calls))
    root = fetch_dataset("fer2013")
    assert calls == ["msambare/fer2013"]
    assert sorted(p.name for p in root.iterdir()) == ["test", "train"]


def test_gdrive_entry_with_fake_gdown(tmp_path, monkeypatch):
    calls = []
    module = types.ModuleType("gdown")

    def download_folder(id, output, quiet):  # noqa: A002 - gdown's parameter name
        calls.append(id)
        inner = tmp_path / "inner"
        make_imagefolder(inner / "BabyFace", classes=("happy", "sad", "neutral"), per_class=2)
        archive = Path(output) / "BabyFace.zip"
        zip_folder(inner, archive)
        return [str(archive)]

    module.download_folder = download_folder
    monkeypatch.setitem(sys.modules, "gdown", module)
    root = fetch_dataset("babyface")
    assert calls == ["1hOa0vpw69RvMer_AtGLDZtspyfLAhYiS"]
    assert sorted(p.name for p in root.iterdir()) == ["happy", "neutral", "sad"]
    assert len(list(root.rglob("*.png"))) == 6


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_local_datasets_used_in_place(shared_data, monkeypatch):
    monkeypatch.setenv("BABYEMO_DATASETS", str(shared_data))
    infant = fetch_dataset("infant-emotions")
    assert infant == shared_data / "infant-emotions"
    assert infant.resolve() == (shared_data / "infant-emotions").resolve()
    assert sorted(p.name for p in infant.iterdir()) == ["angry", "crying", "happy"]
    fer = fetch_dataset("fer2013")
    assert fer == shared_data / "fer2013"
    assert sorted(p.name for p in fer.iterdir()) == ["test", "train"]
    assert list(paths.datasets_dir().iterdir()) == []  # nothing copied
