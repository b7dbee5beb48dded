"""Run the app with uvicorn in a background thread (tests, benchmarks, notebooks)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from babyemo.errors import BabyEmoError


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port free on ``host`` now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@contextmanager
def running(app: Any, host: str = "127.0.0.1", port: int | None = None,
            timeout_s: float = 30.0) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a daemon thread; yields its base URL
    (``http://HOST:PORT``) once it accepts connections, and stops it on exit.

    Args:
        app: The ASGI app (:func:`babyemo.serve.create_app`).
        host: Address to listen on.
        port: Port (``None``: a free one).
        timeout_s: Longest wait for the server to start, in seconds.

    Raises:
        BabyEmoError: The server did not start within ``timeout_s`` (the port taken?).
    """
    import uvicorn

    port = port or free_port(host)
    server = uvicorn.Server(uvicorn.Config(app, host=host, port=port, log_level="warning",
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, name="babyemo-serve-uvicorn", daemon=True)
    thread.start()
    deadline = time.monotonic() + timeout_s
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            raise BabyEmoError(f"The server on {host}:{port} did not start.",
                               "is the port already in use?")
        time.sleep(0.02)
    try:
        yield f"http://{host}:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=timeout_s)
