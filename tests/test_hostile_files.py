"""Hostile files (issue #6): archives that try to write outside their folder, checkpoints
whose pickle would run code, manifests whose paths escape the dataset root, catalogue
downloads without https. Each is refused with a clear, typed error, and nothing happens
outside the target (no file written, no code run)."""

from __future__ import annotations

import builtins
import io
import os
import pickle
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from babyemo.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    load_checkpoint,
    read_checkpoint_dict,
    record_evaluation,
    write_calibration,
)
from babyemo.cli import app
from babyemo.data.preparation.manifest import COLUMNS, read_manifest
from babyemo.data.sources import catalog, fetch
from babyemo.data.sources.archives import extract_archive
from babyemo.errors import CheckpointError, DownloadError, ManifestError, UnsafeArchiveError
from tests.conftest import make_checkpoint, make_image, make_imagefolder

runner = CliRunner()


# --------------------------------------------------------------------------- archives


def _tar(path: Path, *members: tuple[tarfile.TarInfo, bytes | None]) -> Path:
    with tarfile.open(path, "w") as tf:
        ok = tarfile.TarInfo("faces/ok.txt")
        ok.size = 2
        tf.addfile(ok, io.BytesIO(b"ok"))
        for info, payload in members:
            if payload is not None:
                info.size = len(payload)
                tf.addfile(info, io.BytesIO(payload))
            else:
                tf.addfile(info)
    return path


def _member(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, linkname
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor = 1, 3
    return info


def _zip(path: Path, name: str, data: bytes = b"evil", mode: int | None = None) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("faces/ok.txt", "ok")
        info = zipfile.ZipInfo(name)
        if mode is not None:
            info.external_attr = mode << 16
        zf.writestr(info, data)
    return path


def _hostile_archive(kind: str, folder: Path, outside: Path) -> Path:
    """An archive whose one bad entry targets ``outside`` (a file beside the target)."""
    rel_out = f"../{outside.name}"
    tar, zp = folder / "a.tar", folder / "a.zip"
    cases = {
        "tar-absolute": lambda: _tar(tar, (_member(str(outside)), b"evil")),
        "tar-dotdot": lambda: _tar(tar, (_member(rel_out), b"evil")),
        "tar-dotdot-nested": lambda: _tar(tar, (_member(f"faces/../../{outside.name}"), b"e")),
        "tar-dot-dotdot": lambda: _tar(tar, (_member(f"./{rel_out}"), b"evil")),
        "tar-backslash-dotdot": lambda: _tar(tar, (_member(f"..\\{outside.name}"), b"evil")),
        "tar-symlink-out": lambda: _tar(tar, (_member("faces/link", tarfile.SYMTYPE,
                                                      str(outside.parent)), None),
                                        (_member(f"faces/link/{outside.name}"), b"evil")),
        "tar-symlink-relative": lambda: _tar(tar, (_member("faces/up", tarfile.SYMTYPE,
                                                           "../.."), None)),
        "tar-hardlink-out": lambda: _tar(tar, (_member("faces/hard", tarfile.LNKTYPE,
                                                       str(outside)), None)),
        "tar-hardlink-dotdot": lambda: _tar(tar, (_member("faces/hard", tarfile.LNKTYPE,
                                                          rel_out), None)),
        "tar-chardev": lambda: _tar(tar, (_member("faces/null", tarfile.CHRTYPE), None)),
        "tar-blockdev": lambda: _tar(tar, (_member("faces/sda", tarfile.BLKTYPE), None)),
        "tar-fifo": lambda: _tar(tar, (_member("faces/pipe", tarfile.FIFOTYPE), None)),
        "zip-absolute": lambda: _zip(zp, str(outside)),
        "zip-dotdot": lambda: _zip(zp, rel_out),
        "zip-dotdot-nested": lambda: _zip(zp, f"faces/../../{outside.name}"),
        "zip-backslash-dotdot": lambda: _zip(zp, f"faces\\..\\..\\{outside.name}"),
        "zip-drive": lambda: _zip(zp, f"C:/{outside.name}"),
        "zip-symlink": lambda: _zip(zp, "faces/link", str(outside).encode(),
                                    mode=stat.S_IFLNK | 0o777),
        "zip-chardev": lambda: _zip(zp, "faces/null", b"", mode=stat.S_IFCHR | 0o666),
        "zip-blockdev": lambda: _zip(zp, "faces/sda", b"", mode=stat.S_IFBLK | 0o666),
        "zip-fifo": lambda: _zip(zp, "faces/pipe", b"", mode=stat.S_IFIFO | 0o666),
        "zip-socket": lambda: _zip(zp, "faces/sock", b"", mode=stat.S_IFSOCK | 0o666),
    }
    return cases[kind]()


HOSTILE = ["tar-absolute", "tar-dotdot", "tar-dotdot-nested", "tar-dot-dotdot",
           "tar-backslash-dotdot", "tar-symlink-out", "tar-symlink-relative",
           "tar-hardlink-out", "tar-hardlink-dotdot", "tar-chardev", "tar-blockdev", "tar-fifo",
           "zip-absolute", "zip-dotdot", "zip-dotdot-nested", "zip-backslash-dotdot",
           "zip-drive", "zip-symlink", "zip-chardev", "zip-blockdev", "zip-fifo", "zip-socket"]


def _tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


@pytest.mark.parametrize("kind", HOSTILE)
def test_hostile_archive_is_refused_whole(kind, tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    work = tmp_path / "work"
    work.mkdir()
    outside = work / "evil.txt"
    archive = _hostile_archive(kind, src, outside)
    with pytest.raises(UnsafeArchiveError) as info:
        extract_archive(archive, work / "target")
    message = str(info.value)
    assert "Archive entry" in message and "refused as a whole" in message
    assert _tree(work) == []  # no target, no temporary folder, nothing outside
    assert not outside.exists() and not (tmp_path / "evil.txt").exists()
    assert _tree(src) == [archive.name]


@pytest.mark.parametrize("kind", ["tar-dotdot", "tar-symlink-out", "zip-absolute",
                                  "zip-symlink", "tar-chardev"])
def test_hostile_archive_from_a_url_installs_nothing(kind, tmp_path):
    """``babyemo data download --url`` (file:// here: no network in tests) refuses it too."""
    src = tmp_path / "src"
    src.mkdir()
    dest = tmp_path / "datasets"
    outside = dest / "evil.txt"
    archive = _hostile_archive(kind, src, outside)
    result = runner.invoke(app, ["data", "download", "--url", archive.as_uri(),
                                 "--dest", str(dest)])
    assert result.exit_code == 1, result.output
    assert "Error:" in result.stderr and "Archive entry" in result.stderr
    assert "Traceback" not in result.output
    assert not outside.exists()
    assert not dest.exists() or _tree(dest) == []


def test_links_inside_the_archive_are_refused_too(tmp_path):
    """Stricter than needed: a link that stays inside is refused as well (no link is ever
    created), so no later entry can be written through a link."""
    archive = _tar(tmp_path / "a.tar", (_member("faces/alias", tarfile.SYMTYPE, "ok.txt"), None))
    with pytest.raises(UnsafeArchiveError, match="link"):
        extract_archive(archive, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_benign_archive_with_odd_names_extracts(tmp_path):
    """The guard is not over-eager: dots inside names, spaces, unicode, './' prefixes."""
    with tarfile.open(tmp_path / "ok.tar", "w") as tf:
        for name in ["./faces/a..b.png", "faces/..hidden-ish.png", "faces/été 1.png",
                     "faces/sub/./c.png"]:
            info = tarfile.TarInfo(name)
            info.size = 1
            tf.addfile(info, io.BytesIO(b"x"))
    out = extract_archive(tmp_path / "ok.tar", tmp_path / "out")
    assert _tree(out) == ["faces", "faces/..hidden-ish.png", "faces/a..b.png",
                          "faces/sub", "faces/sub/c.png", "faces/été 1.png"]


# ------------------------------------------------------------------------ checkpoints


class _RunsCode:
    """Unpickling this object calls ``exec`` (a real payload, made harmless: it creates
    the marker file the test then looks for)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (builtins.exec, (f"open({str(self.marker)!r}, 'w').close()",))


def _armed_checkpoint(path: Path, marker: Path, *, legacy: bool = False,
                      where: str = "top") -> Path:
    """A file that looks like a babyemo checkpoint but carries :class:`_RunsCode`."""
    payload = {"format": FORMAT, "format_version": FORMAT_VERSION, "arch": "x",
               "arch_kwargs": {}, "class_names": ["a", "b"], "input": {},
               "state_dict": {"w": torch.zeros(2)}, "train": {}, "metrics": {}}
    if where == "top":
        payload["payload"] = _RunsCode(marker)
    else:  # deep inside an innocent-looking entry
        payload["train"] = {"config": {"notes": [1, 2, {"x": _RunsCode(marker)}]}}
    if legacy:  # a raw pickle (torch.load's legacy format); tensors would pickle via
        payload["state_dict"] = {"w": [0.0, 0.0]}  # torch.storage, refused first
        with open(path, "wb") as f:
            pickle.dump(payload, f, protocol=2)
    else:
        torch.save(payload, path)
    return path


@pytest.mark.parametrize("legacy", [False, True], ids=["zip-format", "legacy-pickle"])
@pytest.mark.parametrize("where", ["top", "nested"])
def test_checkpoint_that_would_run_code_is_refused(tmp_path, legacy, where):
    marker = tmp_path / "code-ran"
    evil = _armed_checkpoint(tmp_path / "evil.pt", marker, legacy=legacy, where=where)
    for load in (read_checkpoint_dict, load_checkpoint,
                 lambda p: write_calibration(p, {"temperature": 1.5}),
                 lambda p: record_evaluation(p, {"key": "k"})):
        with pytest.raises(CheckpointError) as info:
            load(evil)
        assert "refused to load" in info.value.message and "exec" in info.value.message
        assert "weights_only=True" in info.value.hint
        assert "weights_only=False" not in str(info.value)  # no advice to load it unsafely
        assert not marker.exists()
    # control: the file really is armed; an unsafe load would have run its code
    if legacy:
        with open(evil, "rb") as f:
            pickle.load(f)  # noqa: S301 - on purpose
    else:
        torch.load(evil, weights_only=False)
    assert marker.exists()


def test_predict_and_evaluate_refuse_an_armed_checkpoint(tmp_path, prepared):
    marker = tmp_path / "code-ran"
    evil = _armed_checkpoint(tmp_path / "evil.pt", marker)
    photos = make_imagefolder(tmp_path / "photos", classes=("x",), per_class=1)
    for args in (["predict", str(photos), "--checkpoint", str(evil), "--csv",
                  str(tmp_path / "out.csv")],
                 ["evaluate", "--checkpoint", str(evil), "--data", str(prepared),
                  "--split", "test"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        assert "Error:" in result.stderr and "refused to load" in result.stderr
        assert "Traceback" not in result.output
    assert not marker.exists() and not (tmp_path / "out.csv").exists()


def test_train_init_and_resume_refuse_an_armed_checkpoint(tmp_path, prepared, tiny_arch):
    from babyemo.config import TrainConfig
    from babyemo.training import train

    marker = tmp_path / "code-ran"
    evil = _armed_checkpoint(tmp_path / "evil.pt", marker)
    with pytest.raises(CheckpointError, match="refused to load"):
        train(TrainConfig(data=str(prepared), arch=tiny_arch, image_size=None, epochs=1,
                          precision="fp32", init=str(evil), out=str(tmp_path / "a")))
    run = tmp_path / "b"
    run.mkdir()
    _armed_checkpoint(run / "last.pt", marker)
    with pytest.raises(CheckpointError, match="refused to load"):
        train(TrainConfig(resume=True, out=str(run), precision="fp32"))
    assert not marker.exists()


def test_checkpoint_whose_state_dict_is_not_tensors_fails_cleanly(tmp_path, tiny_arch):
    """Plain data in the wrong places is a CheckpointError too, never a crash later."""
    good = make_checkpoint(tmp_path / "good.pt", tiny_arch)
    data = torch.load(good, weights_only=True)
    data["state_dict"] = {k: "not a tensor" for k in data["state_dict"]}
    torch.save(data, tmp_path / "bad.pt")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "bad.pt").build_model()


# -------------------------------------------------------------------------- manifests


def _manifest_with(tmp_path: Path, rel: str) -> Path:
    folder = tmp_path / "prepared"
    folder.mkdir(exist_ok=True)
    row = [rel, "angry", "train", "ab", "1", "1", "PNG", "00"]
    import csv

    with open(folder / "manifest.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(COLUMNS)
        w.writerow(row)
    return folder


@pytest.mark.parametrize("rel", ["/etc/passwd", "../secret.png", "angry/../../secret.png",
                                 "..", "C:/secret.png", "c:secret.png", "angry\\..\\x.png",
                                 "\\\\server\\share\\x.png", ""])
def test_manifest_paths_cannot_escape_the_root(tmp_path, rel):
    make_image(tmp_path / "secret.png")
    with pytest.raises(ManifestError, match="not a relative path inside the dataset root"):
        read_manifest(_manifest_with(tmp_path, rel))


def test_manifest_symlink_out_of_the_root_is_refused_before_training(tmp_path, tiny_arch):
    from babyemo.config import TrainConfig
    from babyemo.data.preparation.manifest import new_info, write_manifest
    from babyemo.data.preparation.prepare import prepare
    from babyemo.training import train

    root = make_imagefolder(tmp_path / "images", per_class=4)
    manifest = prepare(root, out=tmp_path / "prepared", seed=0).manifest
    secret = make_image(tmp_path / "secret" / "photo.png")
    victim = manifest.rows_for("train")[0]
    (root / victim.path).unlink()
    os.symlink(secret, root / victim.path)  # the row now leads outside the root
    write_manifest(manifest.rows, tmp_path / "prepared",
                   new_info("x", root, str(root), manifest.class_names))
    with pytest.raises(ManifestError, match="outside the dataset root"):
        read_manifest(tmp_path / "prepared").resolve(victim)
    with pytest.raises(ManifestError, match="outside the dataset root"):
        train(TrainConfig(data=str(tmp_path / "prepared"), arch=tiny_arch, image_size=None,
                          epochs=1, precision="fp32", out=str(tmp_path / "run")))
    assert not (tmp_path / "run" / "last.pt").exists()


# -------------------------------------------------------------------------- catalogue


@pytest.mark.parametrize("entry", catalog.list_datasets(), ids=lambda e: e.name)
def test_catalogue_downloads_are_https_with_a_size_limit(entry, monkeypatch):
    assert 0 < entry.max_bytes <= catalog.DEFAULT_ENTRY_MAX_BYTES
    if entry.url is None:
        assert entry.kind in ("kaggle", "gdrive")  # fetched by kagglehub / gdown
        return
    assert entry.url.startswith("https://")
    assert entry.sha256 is None or len(entry.sha256) == 64
    calls = []

    def fake_download(url, dest, **kw):
        calls.append((url, kw))
        raise DownloadError("stop here")

    monkeypatch.setattr(fetch, "download_url", fake_download)
    with pytest.raises(DownloadError, match="stop here"):
        fetch._download_entry_archive(entry)
    assert calls == [(entry.url, {"sha256": entry.sha256, "max_bytes": entry.max_bytes,
                                  "verify": fetch.check_archive, "refresh": False})]


@pytest.mark.parametrize("url", ["http://example.org/a.zip", "ftp://example.org/a.zip",
                                 "file:///tmp/a.zip", "//example.org/a.zip"])
def test_catalogue_entry_without_https_is_refused_before_any_network(url, monkeypatch):
    import dataclasses

    monkeypatch.setattr(fetch, "download_url", lambda *a, **k: pytest.fail("downloaded"))
    entry = dataclasses.replace(catalog.get_dataset("infant-emotions"), url=url)
    with pytest.raises(DownloadError, match="not https"):
        fetch._download_entry_archive(entry)
