"""Atomic file writing: write to a temporary name in the same folder, then rename.

A crash or Ctrl-C therefore never leaves a truncated file under the final name. What an
existing target becomes depends on its kind (:func:`output_target`): a symbolic link is
followed and its target replaced (the link stays a link); a character device or FIFO
(``/dev/null``, a named pipe) is written through, never replaced by a regular file; a
folder, socket or block device is refused.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import json
import logging
import os
import re
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

from babyemo.errors import ConfigError, StateError

_log = logging.getLogger(__name__)

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


FILE = "file"
"""Kind of output target: a regular file (or none yet), written to a temporary file and
renamed over it."""
STREAM = "stream"
"""Kind of output target: a character device or FIFO, written through (opened as is)."""

_SPECIAL_KINDS = {stat.S_IFSOCK: "a socket", stat.S_IFBLK: "a block device (a disk)",
                  stat.S_IFCHR: "a character device", stat.S_IFIFO: "a FIFO (named pipe)"}


def special_kind(mode: int) -> str:
    """``"a socket"``, ``"a FIFO (named pipe)"``... for a file mode that is neither a
    regular file nor a folder (``st_mode`` of :func:`os.stat`)."""
    return _SPECIAL_KINDS.get(stat.S_IFMT(mode), "not a regular file")


def output_target(path: str | os.PathLike[str]) -> tuple[str, Path]:
    """What writing to ``path`` would write: its kind (:data:`FILE` or :data:`STREAM`)
    and the path actually written.

    - missing, or a regular file: ``(FILE, path)``;
    - a symbolic link (also a dangling one, whose target is then created) to a regular
      file: ``(FILE, the link's resolved target)``, so the link stays a link;
    - a character device or FIFO, also through a link (``/dev/null``, ``/dev/stdout``, a
      named pipe, ``/dev/fd/N`` of a shell's ``>(...)``): ``(STREAM, path)``.

    Args:
        path: The output file.

    Returns:
        ``(kind, path to write)``.

    Raises:
        ConfigError: ``path`` is a folder, a socket, a block device, a symbolic link loop,
            or cannot be looked at (e.g. a parent that is a file).
    """
    path = Path(path)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ConfigError(f"{path} is a symbolic link loop.",
                              "remove the link or give another path") from None
        if e.errno == errno.ENOTDIR:
            raise ConfigError(f"{path} cannot be written: a part of it is a file, not a "
                              "folder.", "give a path in a folder") from None
        raise ConfigError(f"{path} cannot be written: {e.strerror or e}.",
                          "give another path") from None
    if mode is not None:
        if stat.S_ISCHR(mode) or stat.S_ISFIFO(mode):
            return STREAM, path
        if stat.S_ISDIR(mode):
            raise ConfigError(f"{path} is a folder, not a file.", "give a file name")
        if not stat.S_ISREG(mode):
            raise ConfigError(f"{path} is {special_kind(mode)}; babyemo writes regular files, "
                              "character devices (such as /dev/null) and FIFOs only.",
                              "give a file name")
    if os.path.islink(path):
        return FILE, Path(os.path.realpath(path))
    return FILE, path


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike[str], mode: str = "w", **kwargs) -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success it replaces ``path``.

    What is written depends on what ``path`` is now (:func:`output_target`):

    - missing or a regular file: a temporary file beside it, renamed over it (atomic);
    - a symbolic link: the same, at the link's resolved target; the link stays a link;
    - a character device or FIFO (``/dev/null``, a named pipe): written through, opened
      as is, with no temporary file and no rename, so the device or pipe stays what it
      is. Opening a FIFO waits for a reader, as any writer's does. Nothing is atomic
      then: what was written before an error has been written.
    - a folder, socket, block device or symlink loop: refused (:class:`ConfigError`).

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
        file behind, never a partial ``path`` (see :func:`remove_stale_temps`). For a
        device or FIFO: the device or pipe itself, opened (its ``write`` raises
        :class:`ConfigError` instead of :class:`OSError`).

    Raises:
        ConfigError: ``path`` is of a kind that is refused (see above); or writing to a
            device or FIFO failed (``/dev/full``: no space left; a pipe whose reader
            closed it).
    """
    kind, path = output_target(path)
    if "b" not in mode:
        kwargs.setdefault("encoding", "utf-8")
    if kind == STREAM:
        with _stream_errors(path):
            f = open(path, mode, **kwargs)  # noqa: SIM115 (closed below, errors converted)
        try:
            yield _Stream(f, path)
        except BaseException:
            with contextlib.suppress(OSError):
                f.close()
            raise
        with _stream_errors(path):
            f.close()
        return
    path.parent.mkdir(parents=True, exist_ok=True)
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


@contextlib.contextmanager
def _stream_errors(path: Path) -> Iterator[None]:
    """Turn an :class:`OSError` of opening or writing the device or FIFO ``path`` into
    :class:`ConfigError`."""
    try:
        yield
    except OSError as e:
        raise ConfigError(f"Cannot write {path}: {e.strerror or e}.",
                          "give another output file") from None


class _Stream:
    """A file opened on a device or FIFO whose write errors (``/dev/full``: no space left;
    a pipe whose reader went away) are :class:`ConfigError` naming it; anything else is
    the file's own."""

    def __init__(self, file: IO, path: Path) -> None:
        self._file = file
        self._path = path

    def write(self, data: Any) -> int:
        with _stream_errors(self._path):
            return self._file.write(data)

    def writelines(self, lines: Any) -> None:
        with _stream_errors(self._path):
            self._file.writelines(lines)

    def flush(self) -> None:
        with _stream_errors(self._path):
            self._file.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._file, name)


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
def file_lock(path: str | os.PathLike[str], timeout: float | None = LOCK_TIMEOUT_S, *,
              lock_file: str | os.PathLike[str] | None = None,
              what: str | None = None) -> Iterator[None]:
    """Hold an exclusive lock between processes (and threads) while changing ``path``.

    The one lock of babyemo (the model store, the state file, downloads, installs and
    extractions), on the ``filelock`` package: ``fcntl.flock`` on POSIX,
    ``msvcrt.locking`` on Windows. The operating system releases it when its holder ends
    or dies (SIGKILL included), so a killed holder never blocks the others, and whoever
    holds it knows that no live process of babyemo is writing ``path``. It is re-entrant
    within a thread (one lock object per lock file, ``is_singleton``).

    Args:
        path: What the lock protects (its folder is created if missing).
        timeout: Seconds to wait for another holder; ``None`` waits as long as it takes
            (e.g. for another download of the same file to finish).
        lock_file: The lock file (default: ``<path>.lock`` beside ``path``).
        what: What the holder is writing, for the log line shown while waiting.

    Raises:
        StateError: Another process held the lock for more than ``timeout`` seconds, or
            the lock file cannot be created (e.g. a read-only folder).
    """
    import filelock

    path = Path(path)
    lock_path = Path(lock_file) if lock_file is not None else Path(f"{path}.lock")
    try:
        lock_path.parent.mkdir(parents=True, exist_ok=True)
        lock = filelock.FileLock(str(lock_path), is_singleton=True)
        try:
            lock.acquire(timeout=0)
        except filelock.Timeout:
            _log.info("Waiting for another babyemo process writing %s to finish", what or path)
            lock.acquire(timeout=-1 if timeout is None else timeout)
    except filelock.Timeout:
        raise StateError(f"Another babyemo process has held {lock_path} for over "
                         f"{timeout:.0f} s.", "wait for it to finish, then try again") from None
    except OSError as e:
        raise StateError(f"Cannot create the lock file {lock_path}: {e.strerror or e}.",
                         "check that the folder is writable") from None
    try:
        yield
    finally:
        lock.release()


def lock_held(lock_file: str | os.PathLike[str]) -> bool:
    """Whether this thread holds the :func:`file_lock` of ``lock_file`` already."""
    import filelock

    return filelock.FileLock(str(lock_file), is_singleton=True).is_locked


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
