"""Hostile and unlucky downloads (issue #13): checksums given late, error pages served with
status 200, responses cut short, zip bombs, servers that trickle bytes, and what killed or
interrupted downloads and extractions leave behind.

Every server here is a thread on 127.0.0.1; every archive is built in ``tmp_path``.
"""

from __future__ import annotations

import hashlib
import http.server
import io
import json
import logging
import os
import signal
import struct
import subprocess
import sys
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from babyemo import download as http_download
from babyemo import leftovers, paths
from babyemo.cli import app
from babyemo.data.sources import archives, fetch
from babyemo.data.sources.archives import CorruptArchiveError, check_archive, extract_archive
from babyemo.data.sources.fetch import fetch_dataset, fetch_url_dataset
from babyemo.download import download_url
from babyemo.errors import ConfigError, DownloadError
from tests.conftest import make_imagefolder
from tests.data.helpers import file_sha256, zip_folder

runner = CliRunner()


def _tree(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*"))


def _dataset_zip(path: Path, per_class: int = 2, color_shift: int = 0) -> Path:
    """An ImageFolder zip with top folder ``faces/``; ``color_shift`` makes another version."""
    src = path.parent / f"build-{path.stem}-{color_shift}"
    make_imagefolder(src / "faces", per_class=per_class)
    if color_shift:
        (src / "faces" / "angry" / f"v{color_shift}.txt").write_text(str(color_shift))
    return zip_folder(src, path)


# --------------------------------------------------------------------- a scripted server


class _Scripted:
    """A server on 127.0.0.1 whose answer to each GET is ``self.respond(handler)``."""

    def __init__(self) -> None:
        self.requests: list[str | None] = []
        self.respond = None
        scripted = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                scripted.requests.append(self.headers.get("Range"))
                try:
                    scripted.respond(self)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever,
                                       kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()
        self.base = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def scripted(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    server = _Scripted()
    yield server
    server.close()


def _serve_bytes(payload: bytes, *, content_length: bool = True, cut: int | None = None,
                 content_type: str = "application/zip", ranges: bool = True):
    """A ``respond`` that sends ``payload`` (honouring ``Range: bytes=N-``), optionally
    without Content-Length or cut after ``cut`` bytes."""
    def respond(h):
        header = h.headers.get("Range")
        start = int(header[6:-1]) if header and ranges else 0
        h.send_response(206 if start else 200)
        h.send_header("Content-Type", content_type)
        if start:
            h.send_header("Content-Range", f"bytes {start}-{len(payload) - 1}/{len(payload)}")
        if content_length:
            h.send_header("Content-Length", str(len(payload) - start))
        h.end_headers()
        h.wfile.write(payload[start:cut])
    return respond


def _trickle(payload_size: int | None, every: float, limit_s: float = 20):
    """A ``respond`` that sends one byte every ``every`` seconds (Content-Length
    ``payload_size`` when given) until the client hangs up."""
    def respond(h):
        h.send_response(200)
        if payload_size is not None:
            h.send_header("Content-Length", str(payload_size))
        h.end_headers()
        end = time.monotonic() + limit_s
        while time.monotonic() < end:
            h.wfile.write(b"x")
            h.wfile.flush()
            time.sleep(every)
    return respond


_HTML = (b"<!DOCTYPE html>\n<html><head><title>Rate limit exceeded</title></head>"
         b"<body>Please try again later.</body></html>\n")


# ------------------------------------------------------- --sha256: validated, then checked


def test_invalid_sha256_is_refused_before_any_network_or_disk(served_zip, server, tmp_path):
    _, url = served_zip
    home = Path(os.environ["BABYEMO_HOME"])
    for bad in ("zz", "0" * 63, "g" * 64, ""):
        with pytest.raises(ConfigError, match="Invalid sha256"):
            fetch_url_dataset(url, sha256=bad)
        with pytest.raises(ConfigError, match="Invalid sha256"):
            download_url(url, tmp_path / "x.zip", sha256=bad)
    result = runner.invoke(app, ["data", "download", "--url", url, "--sha256", "zz"])
    assert result.exit_code == 2 and "64 hexadecimal digits" in result.output
    assert server.handler.requests == [] and _tree(home) == [] and not (tmp_path / "x.zip").exists()
    # after an extraction: refused just the same, not ignored
    fetch_url_dataset(url)
    n = len(server.handler.requests)
    with pytest.raises(ConfigError, match="Invalid sha256 'zz'"):
        fetch_url_dataset(url, sha256="zz")
    result = runner.invoke(app, ["data", "download", "--url", url, "--sha256", "zz"])
    assert result.exit_code == 2
    assert len(server.handler.requests) == n


def test_sha256_given_after_extraction_is_checked_every_time(served_zip, server):
    archive, url = served_zip
    right = file_sha256(archive)
    root = fetch_url_dataset(url)  # no checksum the first time
    n = len(server.handler.requests)
    # a wrong (well-formed) checksum: the stored archive does not match, the download does
    # not either -> refused, the extracted folder left as it was
    with pytest.raises(DownloadError, match="Checksum mismatch"):
        fetch_url_dataset(url, sha256="0" * 64)
    assert len(server.handler.requests) == n + 1
    assert sorted(p.name for p in root.iterdir()) == ["angry", "crying", "happy"]
    # the right one, in capitals: the stored archive matches, no network
    assert fetch_url_dataset(url, sha256=right.upper()) == root
    assert len(server.handler.requests) == n + 1
    record = json.loads((root.parent / ".babyemo-source.json").read_text())
    assert record["archive_sha256"] == right


def test_changed_upstream_file_is_seen_with_sha256(server, tmp_path):
    v1 = _dataset_zip(server.root / "faces.zip")
    sha1 = file_sha256(v1)
    url = f"{server.url}/faces.zip"
    root = fetch_url_dataset(url, sha256=sha1)
    assert not (root / "angry" / "v2.txt").exists()
    v2 = _dataset_zip(tmp_path / "v2" / "faces.zip", color_shift=2)
    os.replace(v2, server.root / "faces.zip")  # upstream changed
    sha2 = file_sha256(server.root / "faces.zip")
    assert fetch_url_dataset(url, sha256=sha1) == root  # the pinned one is still here
    assert fetch_url_dataset(url, sha256=sha2) == root  # new pin: downloaded, replaced
    assert (root / "angry" / "v2.txt").read_text() == "2"
    n = len(server.handler.requests)
    with pytest.raises(DownloadError, match="Checksum mismatch"):  # upstream has only v2
        fetch_url_dataset(url, sha256=sha1)
    assert len(server.handler.requests) == n + 1
    assert (root / "angry" / "v2.txt").exists()  # v2 kept
    # nothing left beside the dataset and the archive
    assert sorted(p.name for p in paths.datasets_dir().iterdir()) == ["faces"]
    assert [p.suffix for p in paths.downloads_dir().iterdir()] == [".zip"]


def test_deleted_archive_is_not_needed_when_the_record_matches(served_zip, server):
    archive, url = served_zip
    sha = file_sha256(archive)
    root = fetch_url_dataset(url, sha256=sha)
    for f in paths.downloads_dir().iterdir():
        f.unlink()  # to save space
    n = len(server.handler.requests)
    assert fetch_url_dataset(url, sha256=sha) == root
    assert len(server.handler.requests) == n


def test_a_killed_replacement_is_not_taken_for_the_new_version(server, tmp_path):
    """The new archive was downloaded but its extraction was killed: the folder still
    holds v1 while the stored archive is v2; the record tells them apart."""
    _dataset_zip(server.root / "faces.zip")
    url = f"{server.url}/faces.zip"
    root = fetch_url_dataset(url)
    v2 = _dataset_zip(tmp_path / "v2" / "faces.zip", color_shift=2)
    stored = next(paths.downloads_dir().iterdir())
    os.replace(v2, stored)  # as if the download of v2 finished and the process died
    assert fetch_url_dataset(url, sha256=file_sha256(stored)) == root
    assert (root / "angry" / "v2.txt").exists()


# ------------------------------------------------ error pages and truncated downloads


def test_html_page_with_status_200_is_not_kept(scripted, tmp_path):
    good = _dataset_zip(tmp_path / "good.zip").read_bytes()
    url = f"{scripted.base}/faces.zip"
    scripted.respond = _serve_bytes(_HTML, content_type="text/html")
    with pytest.raises(DownloadError, match="HTML page") as info:
        fetch_url_dataset(url)
    assert "nothing was kept" in info.value.hint
    assert list(paths.downloads_dir().iterdir()) == []  # no archive, no .part, no lock
    assert list(paths.datasets_dir().iterdir()) == []
    scripted.respond = _serve_bytes(good)  # the server is back
    root = fetch_url_dataset(url)
    assert sorted(p.name for p in root.iterdir()) == ["angry", "crying", "happy"]
    assert scripted.requests == [None, None]


def test_response_cut_short_without_content_length_is_not_kept(scripted, tmp_path):
    good = _dataset_zip(tmp_path / "good.zip").read_bytes()
    url = f"{scripted.base}/faces.zip"
    scripted.respond = _serve_bytes(good, content_length=False, cut=len(good) * 2 // 3)
    with pytest.raises(CorruptArchiveError, match="not a zip or tar archive"):
        fetch_url_dataset(url)
    assert list(paths.downloads_dir().iterdir()) == []
    scripted.respond = _serve_bytes(good)
    assert fetch_url_dataset(url).name == "faces"


def test_cut_short_tar_gz_without_content_length_is_not_kept(scripted, tmp_path):
    src = make_imagefolder(tmp_path / "src", per_class=2)
    with tarfile.open(tmp_path / "d.tar.gz", "w:gz") as tf:
        tf.add(src, arcname="faces")
    good = (tmp_path / "d.tar.gz").read_bytes()
    scripted.respond = _serve_bytes(good, content_length=False, cut=len(good) - 100)
    with pytest.raises(CorruptArchiveError, match="Cannot read archive"):
        download_url(f"{scripted.base}/d.tar.gz", tmp_path / "dl" / "d.tar.gz",
                     verify=check_archive)
    assert list((tmp_path / "dl").iterdir()) == []


def test_bad_cached_archive_from_an_older_version_is_downloaded_again(served_zip, server):
    """Before #13 an error page could be saved as the archive and reused forever."""
    archive, url = served_zip
    cached = paths.downloads_dir() / f"faces-{hashlib.sha256(url.encode()).hexdigest()[:8]}.zip"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(_HTML)
    root = fetch_url_dataset(url)
    assert cached.read_bytes() == archive.read_bytes()
    assert len(server.handler.requests) == 1
    assert sorted(p.name for p in root.iterdir()) == ["angry", "crying", "happy"]


def test_unextractable_cached_archive_names_the_file_and_refresh(served_zip, server,
                                                                 monkeypatch):
    """An archive that passed its check but cannot be extracted (here: a CRC error, with
    the check switched off): the hint names the cache file and --refresh, which fixes it."""
    archive, url = served_zip
    data = bytearray(archive.read_bytes())
    at = data.index(b"PK\x03\x04") + 30 + len(b"faces/angry/angry_000.png") + 40
    data[at] ^= 0xFF
    archive.write_bytes(bytes(data))
    monkeypatch.setattr(fetch, "check_archive", lambda path: None)
    with pytest.raises(CorruptArchiveError) as info:
        fetch_url_dataset(url)
    cached = next(paths.downloads_dir().iterdir())
    assert str(cached) in info.value.hint and "--refresh" in info.value.hint
    assert f"babyemo data download --url {url} --refresh" in info.value.hint
    assert list(paths.datasets_dir().iterdir()) == []  # no half folder, no temporary
    archive.write_bytes(_dataset_zip(archive.parent.parent / "fixed" / "f.zip").read_bytes())
    result = runner.invoke(app, ["data", "download", "--url", url, "--refresh"])
    assert result.exit_code == 0, result.output
    assert Path(result.stdout.strip()) == paths.datasets_dir() / "faces" / "faces"


# ------------------------------------------------------------------------ zip bombs


def test_zip_entry_compressed_1000_to_1_is_refused(tmp_path):
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("faces/ok.txt", "fine")
        zf.writestr("faces/zeros.bin", b"\0" * (20 * 2**20))
    assert bomb.stat().st_size < 40_000  # about 1000:1
    for call in (lambda: extract_archive(bomb, tmp_path / "out"), lambda: check_archive(bomb)):
        with pytest.raises(DownloadError, match=r"compressed more than 100:1 .*'faces/zeros.bin'"
                           ) as info:
            call()
        assert "zip-bomb" in info.value.hint
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bomb.zip"]


def test_many_small_dense_zip_entries_are_refused_together(tmp_path, monkeypatch):
    """Each entry is small, all of them together are not: the allowance is per archive."""
    monkeypatch.setattr(archives, "RATIO_ALLOWANCE_BYTES", 1_000_000)
    bomb = tmp_path / "many.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(12):
            zf.writestr(f"z{i}.bin", b"\0" * 100_000)
    with pytest.raises(DownloadError, match="1,200,000 bytes in entries compressed more"):
        extract_archive(bomb, tmp_path / "out")
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for i in range(9):  # 900,000 bytes: under the allowance
            zf.writestr(f"z{i}.bin", b"\0" * 100_000)
    assert len(list(extract_archive(bomb, tmp_path / "out").iterdir())) == 9


def test_tar_gz_bomb_is_refused_by_the_whole_archive_ratio(tmp_path):
    bomb = tmp_path / "bomb.tar.gz"
    with tarfile.open(bomb, "w:gz") as tf:
        info = tarfile.TarInfo("zeros.bin")
        info.size = 20 * 2**20
        tf.addfile(info, io.BytesIO(b"\0" * info.size))
    with pytest.raises(DownloadError, match=r"unpacks at more than 100:1 \(20,971,520 bytes"):
        extract_archive(bomb, tmp_path / "out")
    assert not (tmp_path / "out").exists()
    assert extract_archive(bomb, tmp_path / "out", max_ratio=2000).is_dir()  # a parameter


def _raw_zip(path: Path, n: int) -> Path:
    """A zip of ``n`` empty stored entries, written directly (zipfile takes ~30 µs per
    entry); with zip64 end records when ``n`` exceeds 65,535."""
    local, central = bytearray(), bytearray()
    for i in range(n):
        name = f"f{i}".encode()
        offset = len(local)
        local += struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, 0, 0, 0, 0, 0, 0, len(name),
                             0) + name
        central += struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, 0, 0, 0, 0, 0, 0,
                               len(name), 0, 0, 0, 0, 0, offset) + name
    end = bytearray()
    cd_offset = len(local)
    if n > 0xFFFF:
        z64 = len(local) + len(central)
        end += struct.pack("<4sQ2H2L4Q", b"PK\x06\x06", 44, 45, 45, 0, 0, n, n, len(central),
                           cd_offset)
        end += struct.pack("<4sLQL", b"PK\x06\x07", 0, z64, 1)
    count = min(n, 0xFFFF)
    end += struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, count, count, len(central),
                       cd_offset, 0)
    path.write_bytes(bytes(local + central + end))
    return path


def test_raw_zip_builder_is_a_valid_zip64(tmp_path):
    archive = _raw_zip(tmp_path / "z.zip", 66_000)
    with zipfile.ZipFile(archive) as zf:
        assert len(zf.infolist()) == 66_000 and zf.infolist()[-1].filename == "f65999"
    assert archives._zip_entry_count(archive) == 66_000
    assert archives._zip_entry_count(_raw_zip(tmp_path / "small.zip", 7)) == 7


def test_100000_entries_are_refused_before_the_zip_directory_is_read(tmp_path, monkeypatch):
    archive = _raw_zip(tmp_path / "many.zip", 100_000)

    def never(*args, **kwargs):
        raise AssertionError("the central directory was parsed")

    monkeypatch.setattr(archives.zipfile, "ZipFile", never)
    for call in (lambda: extract_archive(archive, tmp_path / "out"),
                 lambda: check_archive(archive)):
        with pytest.raises(DownloadError, match=r"more than 50,000 entries \(100,000\)"):
            call()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["many.zip"]


@pytest.mark.parametrize("fmt", ["zip", "tar"])
def test_entry_limit_is_a_parameter(fmt, tmp_path):
    src = make_imagefolder(tmp_path / "src", classes=("a", "b"), per_class=4)  # 8 files
    if fmt == "zip":
        archive = zip_folder(src, tmp_path / "d.zip")  # 8 entries
    else:
        archive = tmp_path / "d.tar"
        with tarfile.open(archive, "w") as tf:
            for p in sorted(src.rglob("*.png")):
                tf.add(p, arcname=p.relative_to(src).as_posix())
    with pytest.raises(DownloadError, match="more than 7 entries"):
        extract_archive(archive, tmp_path / "out", max_entries=7)
    assert not (tmp_path / "out").exists()
    assert len(_tree(extract_archive(archive, tmp_path / "out", max_entries=8))) == 10


def test_real_looking_archive_with_blank_images_passes_the_limits(tmp_path):
    """The guard is not over-eager: photos (about 1:1) plus a few blank images that
    compress over 1000:1, under the allowance, extract with the default limits."""
    from PIL import Image

    src = make_imagefolder(tmp_path / "src", per_class=5)
    for i in range(3):
        Image.new("L", (1000, 1000)).save(src / "happy" / f"blank{i}.bmp")
    archive = tmp_path / "d.zip"
    with zipfile.ZipFile(archive, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, p.relative_to(src).as_posix())
    check_archive(archive)
    assert len(list(extract_archive(archive, tmp_path / "out").rglob("*.*"))) == 18


def test_spliced_and_truncated_archives_fail_the_check(tmp_path):
    v1 = _dataset_zip(tmp_path / "v1.zip").read_bytes()
    v2 = _dataset_zip(tmp_path / "v2.zip", color_shift=3).read_bytes()
    half = len(v1) // 2
    spliced = tmp_path / "spliced.zip"
    spliced.write_bytes(v1[:half] + v2[half:])  # a .part resumed across an upstream change
    with pytest.raises(CorruptArchiveError):
        check_archive(spliced)
    src = make_imagefolder(tmp_path / "src", per_class=1)
    with tarfile.open(tmp_path / "t.tar", "w") as tf:
        tf.add(src, arcname="faces")
    cut = tmp_path / "cut.tar"
    whole = (tmp_path / "t.tar").read_bytes()
    for at in (2000, 2048, len(whole) - 10_240):  # inside a member, at a header, at the end
        cut.write_bytes(whole[:at])
        with pytest.raises(CorruptArchiveError, match="Cannot read archive"):
            check_archive(cut)
        with pytest.raises(CorruptArchiveError):
            extract_archive(cut, tmp_path / "out")
        assert not (tmp_path / "out").exists()
    check_archive(tmp_path / "t.tar")  # the whole one passes


# ------------------------------------------------------------------- slow servers


def test_trickling_server_is_stopped_and_the_stall_shown(scripted, tmp_path, caplog):
    """One byte every 0.3 s and no Content-Length: each read returns, so a per-read
    timeout never fires; the rate window (here 0.8 s at 1,000 B/s) stops it."""
    scripted.respond = _trickle(None, every=0.3)
    dest = tmp_path / "dl" / "data.zip"
    caplog.set_level(logging.WARNING, logger="babyemo.download")
    started = time.monotonic()
    with pytest.raises(DownloadError, match="too slow: .* bytes in the last") as info:
        download_url(f"{scripted.base}/data.zip", dest, min_rate=1000, stall_s=0.8, timeout=5)
    assert time.monotonic() - started < 5
    assert "is stalling" in caplog.text  # the stall is shown while it happens
    part = dest.with_name("data.zip.part")
    assert "kept in" in info.value.hint and str(part) in info.value.hint
    assert part.read_bytes().startswith(b"x") and not dest.exists()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["data.zip.part"]  # no lock


def test_trickle_with_content_length_reports_the_size_scaled_deadline(scripted, tmp_path):
    scripted.respond = _trickle(5000, every=0.05)
    started = time.monotonic()
    with pytest.raises(DownloadError, match="5,000 bytes gets at most 6 s"):
        download_url(f"{scripted.base}/d.zip", tmp_path / "d.zip", min_rate=1000,
                     stall_s=1.0, timeout=5)
    assert time.monotonic() - started < 5


def test_slow_but_steady_download_completes(scripted, tmp_path):
    payload = os.urandom(60_000)

    def respond(h):  # 40 kB/s in 2 kB steps: 1.5 s, 8 times the minimum rate
        h.send_response(200)
        h.end_headers()
        for at in range(0, len(payload), 2000):
            h.wfile.write(payload[at:at + 2000])
            h.wfile.flush()
            time.sleep(0.05)

    scripted.respond = respond
    dest = download_url(f"{scripted.base}/d.bin", tmp_path / "d.bin", min_rate=5_000,
                        stall_s=1.0, sha256=hashlib.sha256(payload).hexdigest())
    assert dest.read_bytes() == payload


def test_stalled_download_resumes_from_its_part(scripted, tmp_path):
    payload = os.urandom(50_000)
    sha = hashlib.sha256(payload).hexdigest()

    def fast_then_trickle(h):
        h.send_response(200)
        h.send_header("Content-Length", str(len(payload)))
        h.end_headers()
        h.wfile.write(payload[:25_000])
        for at in range(25_000, 25_100):  # then one byte every 0.1 s
            h.wfile.flush()
            time.sleep(0.1)
            h.wfile.write(payload[at:at + 1])

    scripted.respond = fast_then_trickle
    dest = tmp_path / "d.bin"
    with pytest.raises(DownloadError, match="too slow"):
        download_url(f"{scripted.base}/d.bin", dest, sha256=sha, min_rate=20_000,
                     stall_s=0.5)
    kept = dest.with_name("d.bin.part").stat().st_size
    assert 25_000 <= kept < len(payload) and not dest.exists()
    scripted.respond = _serve_bytes(payload)
    assert download_url(f"{scripted.base}/d.bin", dest, sha256=sha).read_bytes() == payload
    assert scripted.requests == [None, f"bytes={kept}-"]


# ------------------------------------------------- interruptions and their leftovers


def test_leftover_pattern_matches_only_temporaries_of_the_target():
    pattern = leftovers.leftover_pattern("faces")
    for name in (".faces.k2j4_9zq.tmp", ".faces.abcdefgh.extracting"):
        assert pattern.match(name), name
    for name in (".faces.tmp", ".faces2.abcdefgh.tmp", ".faces.v2.abcdefgh.tmp",
                 "faces.abcdefgh.tmp", ".faces.abcdefgh.part", ".faces.abcdefg.tmp",
                 ".faces.lock", ".faces.ABCDEFGH.tmp"):
        assert not pattern.match(name), name


def _hand_made_leftovers(folder: Path, name: str) -> list[str]:
    """What a SIGKILL leaves: temporary folders of ``name`` and no live lock holder."""
    made = [f".{name}.k2j4_9zq.tmp", f".{name}.abcdefgh.extracting"]
    for leftover in made:
        (folder / leftover / "deep").mkdir(parents=True)
        (folder / leftover / "deep" / "big.bin").write_bytes(b"\0" * 1000)
    lock = leftovers.lock_file_for(folder / name, "write")
    lock.parent.mkdir(parents=True, exist_ok=True)
    lock.write_text("")  # a lock file whose holder died (it holds no lock)
    return made


def test_an_install_sweeps_what_a_killed_install_left(served_zip, server):
    _, url = served_zip
    datasets = paths.datasets_dir()
    datasets.mkdir(parents=True, exist_ok=True)
    _hand_made_leftovers(datasets, "faces")
    others = [".other.abcdefgh.tmp", ".faces-old.tmp", "faces.k2j4_9zq.tmp"]
    for other in others:
        (datasets / other).mkdir()
    fetch_url_dataset(url)
    assert sorted(p.name for p in datasets.iterdir()) == sorted(["faces", *others])


def test_a_catalogue_install_sweeps_its_leftovers(server, tmp_path, monkeypatch):
    import dataclasses

    from babyemo.data.sources import catalog
    from tests.data.sources.test_fetch import INFANT_SHA, _infant_github_zip

    _infant_github_zip(tmp_path, server.root / f"{INFANT_SHA}.zip")
    monkeypatch.setitem(catalog.CATALOG, "infant-emotions", dataclasses.replace(
        catalog.CATALOG["infant-emotions"], url=f"{server.url}/{INFANT_SHA}.zip"))
    datasets = paths.datasets_dir()
    datasets.mkdir(parents=True, exist_ok=True)
    _hand_made_leftovers(datasets, "infant-emotions")
    fetch_dataset("infant-emotions")
    assert [p.name for p in datasets.iterdir()] == ["infant-emotions"]


_EXTRACT_CHILD = r"""
import sys, time
from pathlib import Path
from babyemo.data.sources import archives

real, calls = archives._copy_member, []

def parked(*args, **kwargs):
    calls.append(1)
    if len(calls) == 3:  # two files written, the third never
        Path(sys.argv[3]).write_text("parked")
        time.sleep(600)
    return real(*args, **kwargs)

archives._copy_member = parked
archives.extract_archive(Path(sys.argv[1]), Path(sys.argv[2]))
"""


@pytest.mark.skipif(os.name == "nt", reason="POSIX locks")
def test_a_live_extraction_is_waited_for_and_a_killed_ones_leftovers_swept(tmp_path):
    archive = _dataset_zip(tmp_path / "d.zip", per_class=3)
    target = tmp_path / "out" / "faces"
    sentinel = tmp_path / "parked"
    proc = subprocess.Popen([sys.executable, "-c", _EXTRACT_CHILD, str(archive), str(target),
                             str(sentinel)], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while not sentinel.exists():
            assert proc.poll() is None, proc.stderr.read().decode()
            assert time.monotonic() < deadline, "the child did not park"
            time.sleep(0.05)
        temps = [p for p in target.parent.iterdir() if p.name.endswith(".extracting")]
        assert len(temps) == 1
        written = _tree(temps[0])
        assert len([p for p in written if p.endswith(".png")]) == 3  # the 3rd is empty
        done: list[object] = []
        worker = threading.Thread(target=lambda: done.append(extract_archive(archive, target)))
        worker.start()
        worker.join(1.5)  # the child is alive and holds the lock: we wait, touching nothing
        assert worker.is_alive() and not done
        assert _tree(temps[0]) == written
    finally:
        proc.send_signal(signal.SIGKILL)  # no cleanup of any kind
        proc.wait(30)
    worker.join(30)
    assert done == [target]
    assert not temps[0].exists()  # swept once its writer was gone
    assert sorted(p.name for p in target.parent.iterdir()) == ["faces"]  # no lock left
    assert len(list(target.rglob("*.png"))) == 9


def test_ctrl_c_during_extraction_leaves_nothing(tmp_path, monkeypatch):
    archive = _dataset_zip(tmp_path / "d.zip", per_class=3)
    real, calls = archives._copy_member, []

    def interrupted(*args, **kwargs):
        calls.append(1)
        if len(calls) == 4:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(archives, "_copy_member", interrupted)
    (tmp_path / "out").mkdir()
    with pytest.raises(KeyboardInterrupt):
        extract_archive(archive, tmp_path / "out" / "faces")
    assert list((tmp_path / "out").iterdir()) == []


def test_a_full_disk_during_extraction_is_not_called_a_corrupt_archive(tmp_path,
                                                                         monkeypatch):
    archive = _dataset_zip(tmp_path / "d.zip", per_class=3)
    real, calls = archives._copy_member, []

    class FullDisk(io.BytesIO):
        def write(self, data):
            raise OSError(28, "No space left on device")

    def full(open_member, out, *args):
        calls.append(1)
        return real(open_member, FullDisk() if len(calls) == 2 else out, *args)

    monkeypatch.setattr(archives, "_copy_member", full)
    (tmp_path / "out").mkdir()
    with pytest.raises(DownloadError, match="No space left on device") as info:
        extract_archive(archive, tmp_path / "out" / "faces")
    assert not isinstance(info.value, CorruptArchiveError)
    assert "free space" in info.value.hint
    assert list((tmp_path / "out").iterdir()) == []


def test_ctrl_c_during_a_catalogue_install_leaves_nothing(served_zip, server, monkeypatch):
    import dataclasses

    from babyemo.data.sources import catalog

    archive, url = served_zip
    monkeypatch.setitem(catalog.CATALOG, "fer2013", dataclasses.replace(
        catalog.CATALOG["fer2013"], url=url, kaggle_handle=None))

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(fetch, "arrange", interrupted)
    with pytest.raises(KeyboardInterrupt):
        fetch_dataset("fer2013")
    assert list(paths.datasets_dir().iterdir()) == []  # no staging folder, no lock
    assert [p.name for p in paths.downloads_dir().iterdir()] == ["fer2013-faces.zip"]


def test_ctrl_c_during_a_download_keeps_only_the_resumable_part(served_zip, tmp_path,
                                                                monkeypatch):
    archive, url = served_zip
    dest = tmp_path / "dl" / "faces.zip"
    monkeypatch.setattr(archives, "CHUNK_BYTES", 1000)
    monkeypatch.setattr(http_download, "CHUNK_BYTES", 1000)
    real = http_download._Pace.check

    def interrupted(self, done):
        raise KeyboardInterrupt  # after the first chunk

    monkeypatch.setattr(http_download._Pace, "check", interrupted)
    with pytest.raises(KeyboardInterrupt):
        download_url(url, dest, verify=check_archive)
    assert sorted(p.name for p in dest.parent.iterdir()) == ["faces.zip.part"]
    assert 0 < dest.with_name("faces.zip.part").stat().st_size < archive.stat().st_size
    monkeypatch.setattr(http_download._Pace, "check", real)
    download_url(url, dest, verify=check_archive)  # resumed
    assert dest.read_bytes() == archive.read_bytes()
    assert sorted(p.name for p in dest.parent.iterdir()) == ["faces.zip"]


# -------------------------------------------------------------------------- --refresh


def test_refresh_downloads_again_and_replaces_the_folder(server, tmp_path):
    _dataset_zip(server.root / "faces.zip")
    url = f"{server.url}/faces.zip"
    root = fetch_url_dataset(url)
    v2 = _dataset_zip(tmp_path / "v2" / "faces.zip", color_shift=2)
    os.replace(v2, server.root / "faces.zip")
    n = len(server.handler.requests)
    assert fetch_url_dataset(url) == root and not (root / "angry" / "v2.txt").exists()
    assert len(server.handler.requests) == n  # no checksum: reused without network
    result = runner.invoke(app, ["data", "download", "--url", url, "--refresh"])
    assert result.exit_code == 0, result.output
    assert len(server.handler.requests) == n + 1
    assert (root / "angry" / "v2.txt").read_text() == "2"
    assert sorted(p.name for p in paths.datasets_dir().iterdir()) == ["faces"]
    assert [p.suffix for p in paths.downloads_dir().iterdir()] == [".zip"]


def test_refresh_of_a_catalogue_dataset(served_zip, server, tmp_path, monkeypatch):
    import dataclasses

    from babyemo.data.sources import catalog
    from tests.data.sources.test_fetch import INFANT_SHA, _infant_github_zip

    _infant_github_zip(tmp_path, server.root / f"{INFANT_SHA}.zip")
    monkeypatch.setitem(catalog.CATALOG, "infant-emotions", dataclasses.replace(
        catalog.CATALOG["infant-emotions"], url=f"{server.url}/{INFANT_SHA}.zip"))
    root = fetch_dataset("infant-emotions")
    (root / "angry" / "stray.png").write_bytes(b"not from the archive")
    n = len(server.handler.requests)
    assert fetch_dataset("infant-emotions", refresh=True) == root
    assert len(server.handler.requests) == n + 1
    assert not (root / "angry" / "stray.png").exists()
    assert [p.name for p in paths.datasets_dir().iterdir()] == ["infant-emotions"]
    with pytest.raises(ConfigError, match="does not go with --source"):
        fetch_dataset("infant-emotions", source=tmp_path, refresh=True)
    local = make_imagefolder(tmp_path / "local" / "infant-emotions", per_class=1)
    monkeypatch.setenv("BABYEMO_DATASETS", str(local.parent))
    with pytest.raises(ConfigError, match="--refresh does not apply"):
        fetch_dataset("infant-emotions", refresh=True)
    result = runner.invoke(app, ["data", "download", "infant-emotions", "--source",
                                 str(local), "--refresh"])
    assert result.exit_code == 2 and "does not go with --source" in result.output


# -------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_real_images_through_a_local_url(infant_dir, server, tmp_path):
    """The real flow with BABYEMO_DATASETS unset: a zip of a few real images served from
    127.0.0.1, downloaded with its checksum, then prepared from the same URL."""
    archive = server.root / "real-faces.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for cls in ("angry", "crying", "happy"):
            for p in sorted((infant_dir / cls).iterdir())[:4]:
                zf.write(p, f"real-faces/{cls}/{p.name}")
    url = f"{server.url}/real-faces.zip"
    sha = file_sha256(archive)
    result = runner.invoke(app, ["data", "download", "--url", url, "--sha256", sha])
    assert result.exit_code == 0, result.output
    root = Path(result.stdout.strip())
    assert root == paths.datasets_dir() / "real-faces" / "real-faces"
    assert {c.name: len(list(c.iterdir())) for c in root.iterdir()} == {
        "angry": 4, "crying": 4, "happy": 4}
    n = len(server.handler.requests)
    result = runner.invoke(app, ["data", "prepare", url, "--out", str(tmp_path / "prep"),
                                 "--split", "0.5,0.25,0.25"])
    assert result.exit_code == 0, result.output
    assert "12 images, 3 classes" in result.stdout
    assert len(server.handler.requests) == n  # prepare reused the extraction
