"""Tests of babyemo.data.http_download against a local HTTP server on 127.0.0.1 only."""

from __future__ import annotations

import pytest

from babyemo.data.http_download import download_url
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
