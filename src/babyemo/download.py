"""Resumable, verified downloads over https, http or file URLs (``urllib``).

The bytes stream into ``<name>.part`` (kept for resuming after a network error, a stall or
Ctrl-C), which is renamed to the final name only when the download is complete and
verified (its SHA-256, or a check such as "a whole, readable archive"), so a crash never
leaves a truncated file under the final name and an error page served with status 200 is
never kept. A file already under the final name is verified the same way before it is
reused, and downloaded again when it fails. A download that falls below a minimum rate
(averaged over a window, so a server that sends one byte every 20 s is caught, not only
one that sends nothing) stops with the ``.part`` kept.

Why not pooch: pooch (the scientific-Python download cache) would bring hash checks on
use and a download to a temporary name, which this module has; it has no resume with
``Range``, no size limit, no overall deadline (its timeout, like ``urllib``'s, is per
read), no lock between processes and, without a known hash, reuses whatever was saved; and
it needs ``requests``. See docs/reliability.md.
"""

from __future__ import annotations

import collections
import http.client
import logging
import os
import re
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

from babyemo import __version__
from babyemo.errors import BabyEmoError, ConfigError, CorruptArchiveError, DownloadError
from babyemo.fs import sha256_file
from babyemo.leftovers import exclusive, lock_file_for
from babyemo.progress import progress_bar

DEFAULT_MAX_BYTES = 20 * 2**30
"""Default limit (20 GiB) for one download and for the unpacked size of one archive."""

CHUNK_BYTES = 1 << 20
"""Bytes read and written at a time when downloading, hashing and extracting (1 MiB)."""

logger = logging.getLogger(__name__)

DEFAULT_MIN_RATE = 10_000
"""Slowest accepted download, in bytes per second (10 kB/s, averaged over
:data:`DEFAULT_STALL_S`): a 70 MB archive may take up to about 2 hours."""

DEFAULT_STALL_S = 60.0
"""Seconds over which the download rate is averaged; also the grace period at the start."""

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


def normalize_sha256(sha256: str | None) -> str | None:
    """``sha256`` as 64 lower-case hex digits (``None`` stays ``None``).

    Raises:
        ConfigError: Not 64 hexadecimal digits (checked before any network or disk work).
    """
    if sha256 is None:
        return None
    expected = sha256.strip().lower()
    if not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ConfigError(f"Invalid sha256 {sha256!r}.", "give 64 hexadecimal digits")
    return expected


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


class _Pace:
    """The minimum-rate check of one download (bytes per second over a sliding window).

    Checking the average over the last ``stall_s`` seconds after every read (one read
    returns whatever arrived, at most ``timeout`` seconds apart) bounds the whole
    download: ``expected`` bytes take at most ``stall_s + expected / min_rate`` seconds
    (plus one read timeout), and a trickle is stopped after about ``stall_s`` seconds.
    """

    def __init__(self, url: str, part: Path, done: int, total: int | None, min_rate: float,
                 stall_s: float, label: str, task: Any) -> None:
        self.url, self.part, self.min_rate, self.stall_s = url, part, min_rate, stall_s
        self.label, self.task = label, task
        self.start = self.warned = time.monotonic()
        self.samples: collections.deque[tuple[float, int]] = collections.deque([(self.start,
                                                                                 done)])
        self.expected = None if total is None else total - done
        self.stalled = False

    def check(self, done: int) -> None:
        """Record that ``done`` bytes are in; raise when the rate fell below the minimum."""
        now = time.monotonic()
        self.samples.append((now, done))
        while len(self.samples) > 1 and self.samples[1][0] <= now - self.stall_s:
            self.samples.popleft()
        then, before = self.samples[0]
        if now - then >= self.stall_s and done - before < self.min_rate * (now - then):
            bound = ""
            if self.expected is not None:
                bound = (f"; a download of {self.expected:,} bytes gets at most "
                         f"{self.stall_s + self.expected / self.min_rate:,.0f} s")
            raise DownloadError(
                f"Download of {self.url} is too slow: {done - before:,} bytes in the last "
                f"{now - then:.0f} s (minimum {self.min_rate:,.0f} bytes/s{bound}).",
                f"the partial download is kept in {self.part}; run the same command again to "
                "resume, or check the network and the server")
        # show a stall while it happens: at most every quarter window, the rate over the
        # last quarter window
        quarter = self.stall_s / 4
        if now - self.warned < quarter:
            return
        then, before = next(((t, d) for t, d in reversed(self.samples) if t <= now - quarter),
                            self.samples[0])
        rate = (done - before) / max(now - then, 1e-9)
        if rate < self.min_rate:
            logger.warning("Download of %s is stalling: %s bytes in the last %.0f s (%s so "
                           "far); it stops if it stays under %s bytes/s for %.0f s",
                           self.url, f"{done - before:,}", now - then, f"{done:,}",
                           f"{self.min_rate:,.0f}", self.stall_s)
            self.task.update(description=f"{self.label} (stalling: {rate:,.0f} B/s)")
            self.stalled, self.warned = True, now
        elif self.stalled:
            self.task.update(description=self.label)
            self.stalled = False


def _stream_to_part(url: str, part: Path, scheme: str, max_bytes: int, timeout: float,
                    label: str, min_rate: float = DEFAULT_MIN_RATE,
                    stall_s: float = DEFAULT_STALL_S) -> None:
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
            # read1: whatever has arrived (read() would wait for a whole chunk, so a
            # trickle of bytes would never be seen, nor its rate checked)
            read = getattr(response, "read1", None) or response.read
            with open(part, mode) as f, progress_bar(label, total, unit="B") as task:
                task.update(completed=done)
                pace = _Pace(url, part, done, total, min_rate, stall_s, label, task)
                while chunk := read(CHUNK_BYTES):
                    done += len(chunk)
                    if done > max_bytes:
                        too_big = True
                        break
                    f.write(chunk)
                    task.advance(len(chunk))
                    if total is None or done < total:
                        pace.check(done)
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


def _verified(path: Path, expected: str | None,
              verify: Callable[[Path], None] | None) -> str | None:
    """Why ``path`` may not be used (``None`` when it may): its SHA-256 differs from
    ``expected``, or (without ``expected``) ``verify`` raised."""
    if expected is not None:
        got = sha256_file(path)
        return None if got == expected else f"its sha256 is {got}, not {expected}"
    if verify is not None:
        try:
            verify(path)
        except BabyEmoError as e:
            return e.message
    return None


def download_url(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    max_bytes: int = DEFAULT_MAX_BYTES,
    timeout: float = 60,
    verify: Callable[[Path], None] | None = None,
    refresh: bool = False,
    min_rate: float = DEFAULT_MIN_RATE,
    stall_s: float = DEFAULT_STALL_S,
) -> Path:
    """Download ``url`` to ``dest``, resumably, and keep it only once verified.

    The bytes stream into ``<dest>.part``. An existing ``.part`` is resumed with an HTTP
    ``Range`` request when the server answers ``206 Partial Content`` with the matching
    ``Content-Range``; otherwise the download restarts from the beginning. When the bytes
    are all in, the ``.part`` is checked against ``sha256``, or when there is none, with
    ``verify``; it is renamed to ``dest`` only when it passes, and deleted otherwise.
    Concurrent downloads of the same ``dest`` (processes or threads) take turns on a
    ``<dest>.lock`` file (POSIX).

    Args:
        url: ``https://``, ``http://`` or ``file://`` URL.
        dest: Final file path (parent folders are created).
        sha256: Expected SHA-256 (64 hex digits, any case) of the file, or ``None``.
        max_bytes: Refuse downloads larger than this many bytes (default 20 GiB).
        timeout: Socket timeout in seconds for connecting and for each read.
        verify: Used when ``sha256`` is ``None``: called with the downloaded file (and with
            an existing ``dest``), it raises a :class:`~babyemo.errors.BabyEmoError` when
            the file is not usable, e.g. :func:`babyemo.data.sources.archives.check_archive`.
        refresh: Download again even when ``dest`` exists and passes; an existing
            ``.part`` is not resumed. ``dest`` is replaced only when the new file passes.
        min_rate: Slowest accepted rate in bytes per second, averaged over the last
            ``stall_s`` seconds; a download of N bytes thus ends within
            ``stall_s + N / min_rate`` seconds (plus one read ``timeout``).
        stall_s: The averaging window of ``min_rate`` in seconds (and the grace period
            before it applies); a quarter of it under ``min_rate`` is logged, and shown
            on the progress bar.

    Returns:
        ``dest``. If ``dest`` already exists and passes (its SHA-256 matches ``sha256``;
        without ``sha256``, ``verify`` accepts it) it is returned without any network
        access; when it does not pass it is downloaded again.

    Raises:
        ConfigError: ``sha256`` is not 64 hex digits (before any network or disk access).
        DownloadError: Unsupported scheme, network or HTTP error, or slower than
            ``min_rate`` (the ``.part`` is kept for resuming); larger than ``max_bytes``,
            checksum mismatch or refused by ``verify`` (the ``.part`` is deleted and
            nothing is written under ``dest``).
        UnsafeArchiveError: ``verify`` found an archive entry that could escape its folder
            (nothing is kept).
    """
    dest = Path(dest)
    expected = normalize_sha256(sha256)
    scheme = check_scheme(url)
    if dest.is_file() and not refresh:
        problem = _verified(dest, expected, verify)
        if problem is None:
            logger.info("Using already downloaded %s", dest)
            return dest
        logger.warning("%s cannot be used (%s); downloading it again", dest, problem)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"Cannot create the folder {dest.parent}: {e}.",
                            "check the path and its permissions") from e
    with exclusive(lock_file_for(dest, "download"), str(dest)):
        part = dest.with_name(dest.name + ".part")
        if refresh:
            part.unlink(missing_ok=True)
        elif dest.is_file() and _verified(dest, expected, verify) is None:
            logger.info("Using %s, downloaded meanwhile by another process", dest)
            return dest
        _stream_to_part(url, part, scheme, max_bytes, timeout, f"Downloading {dest.name}",
                        min_rate, stall_s)
        if expected is not None:
            got = sha256_file(part)
            if got != expected:
                part.unlink(missing_ok=True)
                raise DownloadError(
                    f"Checksum mismatch for {url}: expected sha256 {expected}, got {got}.",
                    "the file is corrupt or changed upstream; nothing was kept, try again",
                )
        elif verify is not None:
            try:
                verify(part)
            except BabyEmoError as e:
                part.unlink(missing_ok=True)
                message = e.message.replace(str(part), "the downloaded file")
                hint = (f"nothing was kept; {e.hint}" if e.hint else "nothing was kept")
                if isinstance(e, CorruptArchiveError):
                    hint = ("nothing was kept; the server may have sent an error page or cut "
                            "the file short: try again later, or check the URL")
                raise type(e)(f"The download of {url} was refused: {message}", hint) from e
        try:
            os.replace(part, dest)
        except OSError as e:
            raise DownloadError(f"Cannot move the download to {dest}: {e}.",
                                "check that the path is a writable file name") from e
    logger.info("Downloaded %s", dest)
    return dest


__all__ = ["DEFAULT_MIN_RATE", "DEFAULT_STALL_S", "check_scheme", "download_url",
           "normalize_sha256"]
