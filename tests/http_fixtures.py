"""Fixtures of the download tests: a local HTTP server on 127.0.0.1 only, and a zip it serves
(a pytest plugin of tests/conftest.py)."""

from __future__ import annotations

import functools
import os
import re
import threading
import types
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer

import pytest

from tests.conftest import make_imagefolder
from tests.data.helpers import zip_folder


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


@pytest.fixture
def served_zip(server, tmp_path):
    """An ImageFolder zip (top folder ``faces/``) served as ``/faces.zip``."""
    data = make_imagefolder(tmp_path / "build" / "faces", per_class=3)
    archive = zip_folder(data, server.root / "faces.zip", prefix="faces/")
    return archive, f"{server.url}/faces.zip"
