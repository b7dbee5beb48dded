"""Tests of babyemo.data.download against a local HTTP server on 127.0.0.1 only."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import io
import json
import logging
import os
import re
import socket
import sys
import tarfile
import threading
import types
import zipfile
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from babyemo import paths
from babyemo.data import catalog, download
from babyemo.data.download import download_url, extract_archive, fetch_dataset, fetch_url_dataset
from babyemo.errors import DataError, DownloadError, MissingDependencyError, UnsafeArchiveError
from tests.conftest import make_image, make_imagefolder

# --------------------------------------------------------------------------- server


class _RangeHandler(SimpleHTTPRequestHandler):
    """SimpleHTTPRequestHandler plus single open-ended ``Range: bytes=N-`` requests."""

    supports_ranges = True
    requests: list[tuple[str, str | None]] = []

    def log_message(self, format, *args):  # noqa: A002 - keep test output quiet
        pass

    def send_head(self):
        header = self.headers.get("Range")
        type(self).requests.append((self.path, header))
        path = self.translate_path(self.path)
        match = re.fullmatch(r"bytes=(\d+)-", header or "")
        if not (self.supports_ranges and match and os.path.isfile(path)):
            return super().send_head()
        start, size = int(match.group(1)), os.path.getsize(path)
        if start >= size:
            self.send_error(416)
            return None
        f = open(path, "rb")  # noqa: SIM115 - closed by do_GET
        f.seek(start)
        self.send_response(206)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.send_header("Content-Length", str(size - start))
        self.end_headers()
        return f


@pytest.fixture
def server(tmp_path, monkeypatch):
    """A threaded HTTP server on 127.0.0.1 (random port) serving ``tmp_path/srv``."""
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy",
                "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    root = tmp_path / "srv"
    root.mkdir()
    handler = type("Handler", (_RangeHandler,), {"requests": [], "supports_ranges": True})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0),
                                functools.partial(handler, directory=str(root)))
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    yield types.SimpleNamespace(root=root, handler=handler,
                                url=f"http://127.0.0.1:{httpd.server_address[1]}")
    httpd.shutdown()
    httpd.server_close()
    thread.join(5)


def _closed_port_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/x.zip"


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + p.relative_to(folder).as_posix())
    return archive


@pytest.fixture
def served_zip(server, tmp_path):
    """An ImageFolder zip (top folder ``faces/``) served as ``/faces.zip``."""
    data = make_imagefolder(tmp_path / "build" / "faces", per_class=3)
    archive = _zip_folder(data, server.root / "faces.zip", prefix="faces/")
    return archive, f"{server.url}/faces.zip"


# --------------------------------------------------------------------------- download_url


def test_download_with_right_sha(served_zip, tmp_path):
    archive, url = served_zip
    dest = tmp_path / "dl" / "faces.zip"
    assert download_url(url, dest, sha256=_sha(archive)) == dest
    assert dest.read_bytes() == archive.read_bytes()
    assert not dest.with_name("faces.zip.part").exists()


def test_download_with_wrong_sha_keeps_nothing(served_zip, tmp_path):
    _, url = served_zip
    dest = tmp_path / "dl" / "faces.zip"
    with pytest.raises(DownloadError, match="Checksum mismatch"):
        download_url(url, dest, sha256="0" * 64)
    assert not dest.exists()
    assert not dest.with_name("faces.zip.part").exists()


def test_existing_file_is_reused_without_network(served_zip, tmp_path):
    archive, _ = served_zip
    dest = tmp_path / "dl" / "faces.zip"
    dest.parent.mkdir()
    dest.write_bytes(archive.read_bytes())
    assert download_url(_closed_port_url(), dest, sha256=_sha(archive)) == dest
    assert download_url(_closed_port_url(), dest) == dest


def test_existing_file_with_wrong_content_is_downloaded_again(served_zip, tmp_path):
    archive, url = served_zip
    dest = tmp_path / "dl" / "faces.zip"
    dest.parent.mkdir()
    dest.write_bytes(b"stale")
    download_url(url, dest, sha256=_sha(archive))
    assert dest.read_bytes() == archive.read_bytes()


def test_resume_partial_download(served_zip, server, tmp_path):
    archive, url = served_zip
    data = archive.read_bytes()
    dest = tmp_path / "dl" / "faces.zip"
    dest.parent.mkdir()
    half = len(data) // 2
    dest.with_name("faces.zip.part").write_bytes(data[:half])
    download_url(url, dest, sha256=_sha(archive))
    assert dest.read_bytes() == data
    assert server.handler.requests == [("/faces.zip", f"bytes={half}-")]


def test_restart_when_server_ignores_range(served_zip, server, tmp_path):
    archive, url = served_zip
    server.handler.supports_ranges = False
    dest = tmp_path / "dl" / "faces.zip"
    dest.parent.mkdir()
    dest.with_name("faces.zip.part").write_bytes(b"garbage that must not survive")
    download_url(url, dest, sha256=_sha(archive))
    assert dest.read_bytes() == archive.read_bytes()
    assert server.handler.requests[0][1] is not None  # a Range was asked, then ignored


def test_restart_after_416(served_zip, tmp_path):
    archive, url = served_zip
    dest = tmp_path / "dl" / "faces.zip"
    dest.parent.mkdir()
    dest.with_name("faces.zip.part").write_bytes(archive.read_bytes() + b"too long")
    download_url(url, dest, sha256=_sha(archive))
    assert dest.read_bytes() == archive.read_bytes()


def test_max_bytes(served_zip, tmp_path):
    _, url = served_zip
    dest = tmp_path / "dl" / "faces.zip"
    with pytest.raises(DownloadError, match="larger than the limit"):
        download_url(url, dest, max_bytes=100)
    assert not dest.exists()
    assert not dest.with_name("faces.zip.part").exists()


def test_network_error_hint(tmp_path):
    with pytest.raises(DownloadError) as info:
        download_url(_closed_port_url(), tmp_path / "x.zip", timeout=5)
    assert "BABYEMO_DATASETS" in info.value.hint and "--source" in info.value.hint
    assert not (tmp_path / "x.zip").exists()


def test_http_404(server, tmp_path):
    with pytest.raises(DownloadError, match="404"):
        download_url(f"{server.url}/missing.zip", tmp_path / "x.zip")


@pytest.mark.parametrize("url", ["ftp://example.org/x.zip", "x.zip", "javascript:alert(1)"])
def test_unsupported_scheme(url, tmp_path):
    with pytest.raises(DownloadError, match="Unsupported URL scheme"):
        download_url(url, tmp_path / "x.zip")


def test_file_url(served_zip, tmp_path):
    archive, _ = served_zip
    dest = download_url(archive.as_uri(), tmp_path / "copy.zip", sha256=_sha(archive))
    assert dest.read_bytes() == archive.read_bytes()


# --------------------------------------------------------------------------- extract_archive


def test_extract_zip_and_tar_gz(tmp_path):
    data = make_imagefolder(tmp_path / "src", classes=("a", "b"), per_class=2)
    zip_path = _zip_folder(data, tmp_path / "arch" / "d.zip")
    tar_path = tmp_path / "arch" / "d.tar.gz"
    with tarfile.open(tar_path, "w:gz") as tf:
        tf.add(data, arcname="d")
    expected = sorted(p.relative_to(data).as_posix() for p in data.rglob("*.png"))
    out_zip = extract_archive(zip_path, tmp_path / "out" / "z")
    out_tar = extract_archive(tar_path, tmp_path / "out" / "t")
    assert sorted(p.relative_to(out_zip).as_posix() for p in out_zip.rglob("*.png")) == expected
    assert sorted(p.relative_to(out_tar / "d").as_posix()
                  for p in out_tar.rglob("*.png")) == expected
    assert (out_zip / "a" / "a_000.png").read_bytes() == (data / "a" / "a_000.png").read_bytes()
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["t", "z"]  # no temp left


def _tar_with(path: Path, *members: tarfile.TarInfo, payload: bytes = b"evil") -> Path:
    with tarfile.open(path, "w") as tf:
        good = tarfile.TarInfo("good.txt")
        good.size = 2
        tf.addfile(good, io.BytesIO(b"ok"))
        for m in members:
            if m.isreg():
                m.size = len(payload)
                tf.addfile(m, io.BytesIO(payload))
            else:
                tf.addfile(m)
    return path


def _zip_with(path: Path, name: str, mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("good.txt", "ok")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        zf.writestr(info, "../../outside" if mode is not None else "evil")
    return path


def _make_unsafe(kind: str, archive_dir: Path, outside: Path) -> Path:
    if kind == "zip-dotdot":
        return _zip_with(archive_dir / "a.zip", "../../evil.txt")
    if kind == "zip-absolute":
        return _zip_with(archive_dir / "a.zip", str(outside))
    if kind == "zip-drive":
        return _zip_with(archive_dir / "a.zip", "C:/evil.txt")
    if kind == "zip-symlink":
        return _zip_with(archive_dir / "a.zip", "link", mode=0o120777)
    if kind == "tar-dotdot":
        return _tar_with(archive_dir / "a.tar", tarfile.TarInfo("../../evil.txt"))
    if kind == "tar-absolute":
        return _tar_with(archive_dir / "a.tar", tarfile.TarInfo(str(outside)))
    if kind == "tar-symlink":
        link = tarfile.TarInfo("link")
        link.type, link.linkname = tarfile.SYMTYPE, str(outside.parent)
        return _tar_with(archive_dir / "a.tar", link, tarfile.TarInfo("link/evil.txt"))
    if kind == "tar-hardlink":
        link = tarfile.TarInfo("hard")
        link.type, link.linkname = tarfile.LNKTYPE, str(outside)
        return _tar_with(archive_dir / "a.tar", link)
    if kind == "tar-device":
        dev = tarfile.TarInfo("null")
        dev.type, dev.devmajor, dev.devminor = tarfile.CHRTYPE, 1, 3
        return _tar_with(archive_dir / "a.tar", dev)
    if kind == "tar-fifo":
        fifo = tarfile.TarInfo("pipe")
        fifo.type = tarfile.FIFOTYPE
        return _tar_with(archive_dir / "a.tar", fifo)
    raise AssertionError(kind)


UNSAFE = ["zip-dotdot", "zip-absolute", "zip-drive", "zip-symlink", "tar-dotdot",
          "tar-absolute", "tar-symlink", "tar-hardlink", "tar-device", "tar-fifo"]


@pytest.mark.parametrize("kind", UNSAFE)
def test_unsafe_archive_refused_whole(kind, tmp_path):
    archive_dir = tmp_path / "arch"
    archive_dir.mkdir()
    outside = tmp_path / "abs_evil.txt"
    archive = _make_unsafe(kind, archive_dir, outside)
    parent = tmp_path / "x" / "y"
    target = parent / "target"
    with pytest.raises(UnsafeArchiveError) as info:
        extract_archive(archive, target)
    entry = {"zip-dotdot": "../../evil.txt", "zip-absolute": str(outside),
             "zip-drive": "C:/evil.txt", "zip-symlink": "link", "tar-dotdot": "../../evil.txt",
             "tar-absolute": str(outside), "tar-symlink": "link", "tar-hardlink": "hard",
             "tar-device": "null", "tar-fifo": "pipe"}[kind]
    assert repr(entry) in info.value.message
    # nothing anywhere: not the target, not its parents, not the would-be outside paths
    assert not target.exists() and not (tmp_path / "x").exists()
    assert not outside.exists()
    assert not (tmp_path / "evil.txt").exists() and not (tmp_path / "x" / "evil.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["arch"]
    assert [p.name for p in archive_dir.iterdir()] == [archive.name]


def test_zip_bomb_guard(tmp_path):
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("zeros.bin", b"\0" * 2_000_000)
    assert archive.stat().st_size < 20_000
    with pytest.raises(DownloadError, match="unpacks to more than the limit"):
        extract_archive(archive, tmp_path / "out" / "t", max_bytes=1_000_000)
    assert not (tmp_path / "out").exists()


def test_zip_bomb_guard_counts_real_bytes(tmp_path, monkeypatch):
    """A zip that under-declares its sizes is stopped by the bytes actually written."""
    archive = tmp_path / "bomb.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a.bin", b"\0" * 600_000)
        zf.writestr("b.bin", b"\0" * 600_000)
    real_plan = download._zip_plan
    monkeypatch.setattr(download, "_zip_plan", lambda zf: (real_plan(zf)[0], 0))
    with pytest.raises(DownloadError, match="unpacks to more than the limit"):
        extract_archive(archive, tmp_path / "out" / "t", max_bytes=1_000_000)
    assert list((tmp_path / "out").iterdir()) == []  # temp folder removed


def test_not_an_archive(tmp_path):
    junk = tmp_path / "junk.zip"
    junk.write_bytes(b"this is not an archive at all" * 20)
    with pytest.raises(DownloadError, match="not a zip or tar archive"):
        extract_archive(junk, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_extract_refuses_non_empty_target(tmp_path):
    data = make_imagefolder(tmp_path / "src", classes=("a",), per_class=1)
    archive = _zip_folder(data, tmp_path / "d.zip")
    target = tmp_path / "out"
    make_image(target / "keep.png")
    with pytest.raises(DownloadError, match="not empty"):
        extract_archive(archive, target)
    assert [p.name for p in target.iterdir()] == ["keep.png"]


# --------------------------------------------------------------------------- fetch_url_dataset


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
    root = fetch_url_dataset(url, sha256=_sha(archive), dest=tmp_path / "mine")
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
    return _zip_folder(tmp_path / "gh", archive)


@pytest.fixture
def infant_server(server, tmp_path, monkeypatch):
    archive = _infant_github_zip(tmp_path, server.root / f"{INFANT_SHA}.zip")
    entry = catalog.CATALOG["infant-emotions"]
    monkeypatch.setitem(catalog.CATALOG, "infant-emotions",
                        dataclasses.replace(entry, url=f"{server.url}/{INFANT_SHA}.zip"))
    return archive


def test_fetch_infant_emotions_download(infant_server, server, caplog):
    caplog.set_level(logging.INFO, logger="babyemo.data.download")
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
    _zip_folder(tmp_path / "gh", server.root / "fer.zip")
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
        catalog.CATALOG["infant-emotions"], url=_closed_port_url()))
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
        catalog.CATALOG["infant-emotions"], url=_closed_port_url()))
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
        catalog.CATALOG["fer2013"], url=_closed_port_url()))
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
        _zip_folder(inner, archive)
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
