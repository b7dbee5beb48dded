"""Atomic file writing: write to a temporary name in the same folder, then rename.

A crash or Ctrl-C therefore never leaves a truncated file under the final name.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from babyemo.errors import StateError

_TEMP_NAME = re.compile(r"^\.(?P<name>.+)\.[A-Za-z0-9_]{8}\.tmp$")
"""Names of :func:`atomic_open`'s temporary files: ``.<final name>.<8 random>.tmp``."""


@functools.lru_cache(maxsize=1)
def _umask() -> int:
    """The process umask (read from ``/proc`` on Linux, else set and restored once)."""
    with contextlib.suppress(OSError, ValueError):
        with open("/proc/self/status", encoding="ascii", errors="replace") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _new_file_mode(path: Path) -> int:
    """Permission bits for ``path``: those of the file it replaces, else ``0o666 & ~umask``.

    :func:`tempfile.mkstemp` creates files readable by their owner only (``0o600``); a file
    written by babyemo gets the permissions :func:`open` would have given it.
    """
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except OSError:
        return 0o666 & ~_umask()


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path``.

    Args:
        path: Final file name. Its parent folder is created if missing.
        mode: ``"w"`` (text) or ``"wb"`` (binary).
        **kwargs: Passed to :func:`open` (e.g. ``encoding``, ``newline``).

    Yields:
        The open temporary file (named ``.<name>.<random>.tmp``, with the permissions the
        final file gets: those of the file it replaces, else ``0o666 & ~umask``). When
        the block ends, the file is flushed, fsynced and renamed to ``path``. If the block
        raises (also ``KeyboardInterrupt``), the temporary file is removed and ``path`` is
        left as it was; a process killed outright (``SIGKILL``) may leave the temporary
        file behind, never a partial ``path`` (see :func:`remove_stale_temps`).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with contextlib.suppress(OSError):
            os.chmod(tmp, _new_file_mode(path))
        with os.fdopen(fd, mode, **kwargs) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically."""
    with atomic_open(path, "wb") as f:
        f.write(data)


LOCK_TIMEOUT_S = 120.0
"""Seconds :func:`file_lock` waits for another process before giving up."""


@contextlib.contextmanager
def file_lock(path: str | os.PathLike[str], timeout: float = LOCK_TIMEOUT_S) -> Iterator[None]:
    """Hold an exclusive lock between processes (and threads) on ``<path>.lock``.

    Uses the ``filelock`` package (``fcntl.flock`` on POSIX, ``msvcrt.locking`` on
    Windows): the lock is released when the block ends or the process dies, so a killed
    holder never blocks the others.

    Args:
        path: The file the lock protects; the lock file is ``<path>.lock`` beside it (its
            folder is created if missing).
        timeout: Seconds to wait for another holder.

    Raises:
        StateError: Another process held the lock for more than ``timeout`` seconds.
    """
    import filelock

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lock = filelock.FileLock(str(path) + ".lock", timeout=timeout)
    try:
        lock.acquire()
    except filelock.Timeout:
        raise StateError(f"Another babyemo process has held {path}.lock for over "
                         f"{timeout:.0f} s.", "wait for it to finish, then try again") from None
    try:
        yield
    finally:
        lock.release()


def read_json_object(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a JSON object file of babyemo's own state (``{}`` when the file is missing).

    Raises:
        StateError: The file exists but is not a readable JSON object; it is never
            treated as empty, so no caller rewrites it from a failed read. The hint names
            the backup that :func:`update_json_object` keeps.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return {}
    except OSError as e:
        raise StateError(f"Cannot read {path}: {e.strerror or e}.",
                         "check its permissions") from None
    try:
        data = json.loads(text)
    except ValueError as e:
        raise StateError(f"{path} is not valid JSON ({e}).", _restore_hint(path)) from None
    if not isinstance(data, dict):
        raise StateError(f"{path} does not hold a JSON object.", _restore_hint(path))
    return data


def _backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


def _restore_hint(path: Path) -> str:
    backup = _backup_path(path)
    if backup.is_file():
        return f"fix it by hand, or restore the previous version: cp '{backup}' '{path}'"
    return "fix it by hand, or move it away to start afresh"


def update_json_object(path: str | os.PathLike[str],
                       change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    """Read-modify-write a JSON object file, atomically and under :func:`file_lock`.

    Concurrent babyemo processes updating the same file take turns, and each sees the
    others' changes: no entry written by another process is lost. The previous version
    is kept as ``<path>.bak``.

    Args:
        path: The JSON file (created when missing).
        change: Called with the current object (``{}`` for a new file), changes it in
            place.

    Returns:
        The object as written.

    Raises:
        StateError: The current file is not a readable JSON object (nothing is written),
            or the lock could not be taken.
    """
    path = Path(path)
    with file_lock(path):
        data = read_json_object(path)
        change(data)
        if path.is_file():
            with atomic_open(_backup_path(path), "wb") as f, open(path, "rb") as src:
                shutil.copyfileobj(src, f)
        atomic_write_text(path, json.dumps(data, indent=2))
    return data


def sha256_file(path: str | os.PathLike[str], chunk_bytes: int = 1 << 20) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks of ``chunk_bytes``."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(chunk_bytes):
            digest.update(chunk)
    return digest.hexdigest()


def remove_stale_temps(folder: str | os.PathLike[str]) -> list[Path]:
    """Delete the temporary files that killed writers left in ``folder`` (not recursive).

    Only names of :func:`atomic_open`'s form (``.<final name>.<8 random>.tmp``) are
    removed. Call it only on a folder no other process is writing into (e.g. a training
    run folder being resumed).

    Args:
        folder: The folder to clean; a missing folder is fine.

    Returns:
        The files removed.
    """
    removed: list[Path] = []
    with contextlib.suppress(OSError), os.scandir(folder) as entries:
        for entry in entries:
            if _TEMP_NAME.match(entry.name) and entry.is_file(follow_symlinks=False):
                with contextlib.suppress(OSError):
                    os.unlink(entry.path)
                    removed.append(Path(entry.path))
    return removed
