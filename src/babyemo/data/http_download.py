"""Resumable, checksum-verified downloads over https, http or file URLs (``urllib``).

The bytes stream into ``<name>.part`` (kept for resuming after a network error), which is
renamed to the final name only when the download is complete and verified, so a crash
never leaves a truncated file under the final name.
"""

from __future__ import annotations

import contextlib
import http.client
import logging
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from babyemo import __version__
from babyemo.data.archives import CHUNK_BYTES, DEFAULT_MAX_BYTES
from babyemo.errors import ConfigError, DownloadError
from babyemo.io import sha256_file
from babyemo.progress import progress_bar

logger = logging.getLogger(__name__)

_SCHEMES = ("http", "https", "file")
_OFFLINE_HINT = ("check the network connection and try again (a partial download resumes); "
                 "offline? put a local copy under BABYEMO_DATASETS=DIR/<name> or pass "
                 "--source PATH")


def check_scheme(url: str) -> str:
    """The lower-case scheme of ``url``.

    Raises:
        DownloadError: The scheme is not ``https``, ``http`` or ``file``.
    """
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme not in _SCHEMES:
        raise DownloadError(
            f"Unsupported URL scheme '{scheme or '(none)'}' in {url!r}.",
            "use an https://, http:// or file:// URL, or a local folder with --source PATH",
        )
    return scheme


def _open_url(url: str, offset: int, timeout: float) -> Any:
    request = urllib.request.Request(url, headers={"User-Agent": f"babyemo/{__version__}"})
    if offset:
        request.add_header("Range", f"bytes={offset}-")
    return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 (scheme checked)


def _range_start(response: Any) -> int | None:
    match = re.match(r"\s*bytes\s+(\d+)-", response.headers.get("Content-Range") or "")
    return int(match.group(1)) if match else None


def _too_large(url: str, size: int, max_bytes: int) -> DownloadError:
    return DownloadError(
        f"Download of {url} is larger than the limit ({size:,} > {max_bytes:,} bytes).",
        "raise max_bytes if this size is expected",
    )


def _stream_to_part(url: str, part: Path, scheme: str, max_bytes: int, timeout: float,
                    label: str) -> None:
    """Stream ``url`` into ``part``, resuming an existing ``part`` when the server allows."""
    offset = part.stat().st_size if part.is_file() and scheme != "file" else 0
    try:
        try:
            response = _open_url(url, offset, timeout)
        except urllib.error.HTTPError as e:
            if e.code != 416 or not offset:
                raise
            e.close()  # 416: the .part does not fit the file any more; start over
            offset = 0
            response = _open_url(url, 0, timeout)
        with response:
            final_url = response.geturl() or url
            if scheme == "https" and urllib.parse.urlparse(final_url).scheme != "https":
                raise DownloadError(f"{url} redirected to a non-https address ({final_url}).",
                                    "refusing an insecure redirect")
            status = getattr(response, "status", None) or 200
            length_text = response.headers.get("Content-Length") or ""
            length = int(length_text) if length_text.strip().isdigit() else None
            if offset and status == 206 and _range_start(response) == offset:
                mode, done = "ab", offset
                logger.info("Resuming %s at byte %d", url, offset)
            else:
                if offset:
                    logger.info("Server did not resume %s; restarting from the beginning", url)
                mode, done = "wb", 0
            total = done + length if length is not None else None
            if total is not None and total > max_bytes:
                part.unlink(missing_ok=True)
                raise _too_large(url, total, max_bytes)
            too_big = False
            with open(part, mode) as f, progress_bar(label, total, unit="B") as task:
                task.update(completed=done)
                while chunk := response.read(CHUNK_BYTES):
                    done += len(chunk)
                    if done > max_bytes:
                        too_big = True
                        break
                    f.write(chunk)
                    task.advance(len(chunk))
                f.flush()
                os.fsync(f.fileno())
            if too_big:
                part.unlink(missing_ok=True)
                raise _too_large(url, done, max_bytes)
            if total is not None and done != total:
                raise DownloadError(
                    f"Download of {url} ended early ({done:,} of {total:,} bytes).",
                    _OFFLINE_HINT)
    except urllib.error.HTTPError as e:
        raise DownloadError(f"Download of {url} failed: HTTP {e.code} {e.reason}.",
                            "check the URL; or put a local copy under BABYEMO_DATASETS=DIR/"
                            "<name> or pass --source PATH") from e
    except urllib.error.URLError as e:
        raise DownloadError(f"Download of {url} failed: {e.reason}.", _OFFLINE_HINT) from e
    except (OSError, http.client.HTTPException, ValueError) as e:
        raise DownloadError(f"Download of {url} failed: {e!r}.", _OFFLINE_HINT) from e


@contextlib.contextmanager
def _exclusive(dest: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``<dest>.lock`` while downloading ``dest`` (POSIX only).

    Two processes (or threads) fetching the same file, e.g. two ``babyemo predict --faces``
    runs downloading the face detector on first use, would otherwise both append to one
    ``.part`` file. The second waits, then finds ``dest`` complete. The lock file is
    removed when released; a waiter that locked a removed file tries again.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no lock (concurrent downloads fail their checksum)
        yield
        return
    lock = dest.with_name(dest.name + ".lock")
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                logger.info("Waiting for another download of %s to finish", dest.name)
                fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                current = os.stat(lock).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                current = False
        except BaseException:
            os.close(fd)
            raise
        if current:
            break
        os.close(fd)  # the holder removed this lock file meanwhile: lock the new one
    try:
        yield
    finally:
        with contextlib.suppress(OSError):
            os.unlink(lock)
        os.close(fd)


def _reusable(dest: Path, expected: str | None) -> bool:
    """``dest`` exists and matches ``expected`` (any content when ``None``)."""
    return dest.is_file() and (expected is None or sha256_file(dest) == expected)


def download_url(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = 60,
) -> Path:
    """Download ``url`` to ``dest``, resumably and (optionally) checksum-verified.

    The bytes stream into ``<dest>.part``. An existing ``.part`` is resumed with an HTTP
    ``Range`` request when the server answers ``206 Partial Content`` with the matching
    ``Content-Range``; otherwise the download restarts from the beginning. The ``.part``
    is renamed to ``dest`` only when complete and verified. Concurrent downloads of the
    same ``dest`` (processes or threads) take turns on a ``<dest>.lock`` file (POSIX).

    Args:
        url: ``https://``, ``http://`` or ``file://`` URL.
        dest: Final file path (parent folders are created).
        sha256: Expected SHA-256 (64 hex digits) of the file, or ``None`` to skip checking.
        max_bytes: Refuse downloads larger than this many bytes (default 20 GiB).
        timeout: Socket timeout in seconds for connecting and for each read.

    Returns:
        ``dest``. If ``dest`` already exists and matches ``sha256`` (or ``sha256`` is
        ``None``) it is returned without any network access.

    Raises:
        ConfigError: ``sha256`` is not 64 hex digits.
        DownloadError: Unsupported scheme, network or HTTP error (the ``.part`` is kept for
            resuming), larger than ``max_bytes``, or checksum mismatch (the ``.part`` is
            deleted and nothing is written under ``dest``).
    """
    dest = Path(dest)
    scheme = check_scheme(url)
    expected = sha256.strip().lower() if sha256 else None
    if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ConfigError(f"Invalid sha256 {sha256!r}.", "give 64 hexadecimal digits")
    if dest.is_file():
        if _reusable(dest, expected):
            logger.info("Using already downloaded %s", dest)
            return dest
        logger.warning("%s does not match the expected SHA-256; downloading it again", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive(dest):
        if _reusable(dest, expected):  # another process finished it while we waited
            logger.info("Using %s, downloaded meanwhile by another process", dest)
            return dest
        part = dest.with_name(dest.name + ".part")
        _stream_to_part(url, part, scheme, max_bytes, timeout, f"Downloading {dest.name}")
        if expected is not None:
            got = sha256_file(part)
            if got != expected:
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"Checksum mismatch for {url}: expected sha256 {expected}, got {got}.",
                    "the file is corrupt or changed upstream; nothing was kept, try again",
                )
        try:
            os.replace(part, dest)
        except OSError as e:
            raise DownloadError(f"Cannot move the download to {dest}: {e}.",
                                "check that the path is a writable file name") from e
    logger.info("Downloaded %s", dest)
    return dest


__all__ = ["check_scheme", "download_url"]
