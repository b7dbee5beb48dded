"""Tests of babyemo.data.sources.archives: safe extraction of zip and tar archives."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from babyemo.data.sources import archives
from babyemo.data.sources.archives import (
    extract_archive,
    extract_with_record,
    previous_extraction,
    split_archive_name,
)
from babyemo.errors import DownloadError, UnsafeArchiveError
from tests.conftest import make_image, make_imagefolder
from tests.data.helpers import zip_folder


def test_extract_zip_and_tar_gz(tmp_path):
    data = make_imagefolder(tmp_path / "src", classes=("a", "b"), per_class=2)
    zip_path = zip_folder(data, tmp_path / "arch" / "d.zip")
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
    real_plan = archives._zip_plan
    monkeypatch.setattr(archives, "_zip_plan", lambda zf, *limits: (real_plan(zf, *limits)[0], 0))
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
    archive = zip_folder(data, tmp_path / "d.zip")
    target = tmp_path / "out"
    make_image(target / "keep.png")
    with pytest.raises(DownloadError, match="not empty"):
        extract_archive(archive, target)
    assert [p.name for p in target.iterdir()] == ["keep.png"]


@pytest.mark.parametrize("name, expected", [
    ("Faces.TAR.GZ", ("Faces", ".TAR.GZ")),
    ("a.tgz.zip", ("a.tgz", ".zip")),
    ("photos", ("photos", "")),
    ("x.gz", ("x.gz", "")),
    (".zip", (".zip", "")),  # nothing but a suffix: not an archive name
])
def test_split_archive_name(name, expected):
    assert split_archive_name(name) == expected


def test_extraction_record(tmp_path):
    data = make_imagefolder(tmp_path / "src", classes=("a",), per_class=1)
    archive = zip_folder(data, tmp_path / "d.zip", prefix="top/")
    target = tmp_path / "out"
    assert previous_extraction(target, ".record.json") is None
    assert extract_with_record(archive, target, ".record.json", {"k": 1}) == target / "top"
    assert previous_extraction(target, ".record.json") == {"k": 1}
    (target / ".record.json").write_text("not json")
    assert previous_extraction(target, ".record.json") == {}
