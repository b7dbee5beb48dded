"""Tests of babyemo.download against a local HTTP server on 127.0.0.1 only."""

from __future__ import annotations

import time

import pytest

from babyemo.download import download_url
from babyemo.errors import DownloadError
from tests.data.helpers import closed_port_url, file_sha256


def test_download_with_right_sha(served_zip, tmp_path):
    archive, url = served_zip
    dest = tmp_path / "dl" / "faces.zip"
    assert download_url(url, dest, sha256=file_sha256(archive)) == dest
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
    assert download_url(closed_port_url(), dest, sha256=file_sha256(archive)) == dest
    assert download_url(closed_port_url(), dest) == dest


def test_existing_file_with_wrong_content_is_downloaded_again(served_zip, tmp_path):
    archive, url = served_zip
    dest = tmp_path / "dl" / "faces.zip"
    dest.parent.mkdir()
    dest.write_bytes(b"stale")
    download_url(url, dest, sha256=file_sha256(archive))
    assert dest.read_bytes() == archive.read_bytes()


def test_resume_partial_download(served_zip, server, tmp_path):
    archive, url = served_zip
    data = archive.read_bytes()
    dest = tmp_path / "dl" / "faces.zip"
    dest.parent.mkdir()
    half = len(data) // 2
    dest.with_name("faces.zip.part").write_bytes(data[:half])
    download_url(url, dest, sha256=file_sha256(archive))
    assert dest.read_bytes() == data
    assert server.handler.requests == [("/faces.zip", f"bytes={half}-")]


def test_restart_when_server_ignores_range(served_zip, server, tmp_path):
    archive, url = served_zip
    server.handler.supports_ranges = False
    dest = tmp_path / "dl" / "faces.zip"
    dest.parent.mkdir()
    dest.with_name("faces.zip.part").write_bytes(b"garbage that must not survive")
    download_url(url, dest, sha256=file_sha256(archive))
    assert dest.read_bytes() == archive.read_bytes()
    assert server.handler.requests[0][1] is not None  # a Range was asked, then ignored


def test_restart_after_416(served_zip, tmp_path):
    archive, url = served_zip
    dest = tmp_path / "dl" / "faces.zip"
    dest.parent.mkdir()
    dest.with_name("faces.zip.part").write_bytes(archive.read_bytes() + b"too long")
    download_url(url, dest, sha256=file_sha256(archive))
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
        download_url(closed_port_url(), tmp_path / "x.zip", timeout=5)
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
    dest = download_url(archive.as_uri(), tmp_path / "copy.zip", sha256=file_sha256(archive))
    assert dest.read_bytes() == archive.read_bytes()


# --- interruptions and limits (issue #6) -------------------------------------------


class _Flaky:
    """A server on 127.0.0.1 that cuts the first response after ``cut`` bytes (it promises
    the full Content-Length), and can omit Content-Length altogether."""

    def __init__(self, payload: bytes, cut: int | None, content_length: bool = True,
                 delay: float = 0.0):
        import http.server
        import threading

        self.payload, self.cut, self.requests = payload, cut, []
        flaky = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"

            def log_message(self, *args):
                pass

            def do_GET(self):  # noqa: N802
                header = self.headers.get("Range")
                flaky.requests.append(header)
                start = int(header[6:-1]) if header else 0
                body = flaky.payload[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range",
                                     f"bytes {start}-{len(flaky.payload) - 1}/"
                                     f"{len(flaky.payload)}")
                if content_length:
                    self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                if flaky.cut is not None and len(flaky.requests) == 1:
                    body = body[: flaky.cut]  # then the connection closes: a dropped download
                for at in range(0, len(body), 20_000):
                    self.wfile.write(body[at:at + 20_000])
                    time.sleep(delay)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/data.zip"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def flaky(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    made = []

    def make(payload, cut=None, content_length=True, delay=0.0):
        made.append(_Flaky(payload, cut, content_length, delay))
        return made[-1]

    yield make
    for f in made:
        f.close()


def test_dropped_download_keeps_part_then_resumes_and_verifies(flaky, tmp_path):
    import hashlib
    import os

    payload = os.urandom(300_000)
    srv = flaky(payload, cut=100_000)
    dest = tmp_path / "dl" / "data.zip"
    with pytest.raises(DownloadError, match="ended early"):
        download_url(srv.url, dest, sha256=hashlib.sha256(payload).hexdigest())
    part = dest.with_name("data.zip.part")
    assert not dest.exists() and part.read_bytes() == payload[:100_000]
    assert download_url(srv.url, dest, sha256=hashlib.sha256(payload).hexdigest()) == dest
    assert dest.read_bytes() == payload and not part.exists()
    assert srv.requests == [None, "bytes=100000-"]


def test_resumed_part_that_does_not_match_is_deleted(flaky, tmp_path):
    """A stale .part from another file: the resumed bytes fail the checksum, nothing is
    kept under the final name, and the next try starts from scratch."""
    import hashlib
    import os

    payload = os.urandom(50_000)
    srv = flaky(payload)
    dest = tmp_path / "data.zip"
    part = dest.with_name("data.zip.part")
    part.write_bytes(b"x" * 10_000)  # the first 10,000 bytes of something else
    with pytest.raises(DownloadError, match="Checksum mismatch"):
        download_url(srv.url, dest, sha256=hashlib.sha256(payload).hexdigest())
    assert not dest.exists() and not part.exists()
    download_url(srv.url, dest, sha256=hashlib.sha256(payload).hexdigest())
    assert dest.read_bytes() == payload


def test_size_limit_without_content_length(flaky, tmp_path):
    srv = flaky(b"z" * 200_000, content_length=False)
    dest = tmp_path / "data.zip"
    with pytest.raises(DownloadError, match="larger than the limit"):
        download_url(srv.url, dest, max_bytes=50_000)
    assert not dest.exists() and not dest.with_name("data.zip.part").exists()


def test_https_download_redirected_to_http_is_refused(monkeypatch, tmp_path):
    import io

    from babyemo import download as http_download

    class Response(io.BytesIO):
        status, headers = 200, {"Content-Length": "4"}

        def geturl(self):
            return "http://mirror.example.org/data.zip"

    monkeypatch.setattr(http_download, "_open_url", lambda url, offset, timeout: Response(b"evil"))
    with pytest.raises(DownloadError, match="non-https"):
        download_url("https://example.org/data.zip", tmp_path / "d.zip")
    assert list(tmp_path.iterdir()) in ([], [tmp_path / "d.zip.part"])
    assert not (tmp_path / "d.zip").exists()


@pytest.mark.parametrize("limit, sha, error", [(100, None, "larger than the limit"),
                                               (None, "0" * 64, "Checksum mismatch")])
def test_catalogue_download_enforces_size_limit_and_checksum(served_zip, monkeypatch, tmp_path,
                                                             limit, sha, error):
    import dataclasses

    from babyemo.data.sources import catalog
    from babyemo.data.sources.fetch import fetch_dataset

    _, url = served_zip
    entry = catalog.get_dataset("infant-emotions")
    changes = {"url": url, "sha256": sha}
    if limit is not None:
        changes["max_bytes"] = limit
    monkeypatch.setitem(catalog.CATALOG, entry.name, dataclasses.replace(entry, **changes))
    with pytest.raises(DownloadError, match=error):
        fetch_dataset(entry.name, dest=tmp_path / "datasets")
    assert not (tmp_path / "datasets" / entry.name).exists()
    from babyemo import paths

    assert [p.name for p in paths.downloads_dir().glob("*")] == []  # no archive, no .part


def test_concurrent_downloads_of_one_file_take_turns(flaky, tmp_path):
    """Two downloads of the same file at once (threads here; processes alike: the lock is
    a file lock): one downloads, the other waits and reuses it; no interleaved .part."""
    import hashlib
    import os
    import threading

    payload = os.urandom(400_000)
    sha = hashlib.sha256(payload).hexdigest()
    srv = flaky(payload, delay=0.02)  # about 0.4 s per download
    dest = tmp_path / "models" / "detector.onnx"
    results, errors = [], []

    def fetch():
        try:
            results.append(download_url(srv.url, dest, sha256=sha))
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=fetch) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and results == [dest] * 3
    assert dest.read_bytes() == payload
    assert srv.requests == [None]  # one download; the others found it done
    assert sorted(p.name for p in dest.parent.iterdir()) == ["detector.onnx"]  # no lock left
