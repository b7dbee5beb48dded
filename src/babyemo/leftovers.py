"""Locks between writers of one target, and the sweep of what killed writers left.

Downloads and extractions write under temporary names beside their target (``<name>.part``
for a download; ``.<name>.<8 random>.tmp`` and ``.<name>.<8 random>.extracting`` folders
for an install or an extraction) and hold an exclusive lock (see :func:`lock_file_for`)
for as long as those temporaries exist. The operating system releases a lock when its holder dies,
SIGKILL included, so whoever takes the lock next knows that every temporary of that target
is a leftover of a dead writer and deletes it (:func:`writing`). A temporary that a live
process is still writing is never touched: its writer holds the lock, and the newcomer
waits for it.

The lock is :func:`babyemo.fs.file_lock` (the ``filelock`` package, POSIX and Windows),
re-entrant within a thread; its lock files are kept in the babyemo home's ``locks/``
folder (:func:`lock_file_for`).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path

from babyemo import paths
from babyemo.errors import DownloadError
from babyemo.fs import file_lock, lock_held

logger = logging.getLogger(__name__)

LEFTOVER_SUFFIXES = (".tmp", ".extracting")
"""Endings of the temporary folders of an install (``.tmp``) and an extraction."""


def lock_file_for(target: Path, purpose: str) -> Path:
    """The lock file of writing ``target`` for ``purpose`` (``"download"``, ``"write"``).

    Kept in the babyemo home's ``locks/`` folder, named by the target's name and a hash of
    its absolute path, so that no lock file is left among the user's files (lock files
    outlive their holders: deleting one while another process waits on it would let two
    writers in). Processes with different babyemo homes do not exclude each other.
    """
    target = Path(target)
    key = hashlib.sha256(f"{purpose}:{target.resolve()}".encode()).hexdigest()[:16]
    return paths.home() / "locks" / f"{target.name}.{purpose}.{key}.lock"


@contextlib.contextmanager
def exclusive(lock: Path, what: str) -> Iterator[None]:
    """Hold the lock file ``lock`` (see :func:`babyemo.fs.file_lock`) for as long as it
    takes another writer of ``what`` to finish.

    Raises:
        StateError: The lock file cannot be created (e.g. a read-only folder).
    """
    with file_lock(lock, timeout=None, lock_file=lock, what=what):
        yield


def leftover_pattern(name: str) -> re.Pattern[str]:
    """Names of the temporary folders of target ``name``: ``.<name>.<8 random>.tmp`` or
    ``.extracting`` (the random part as :mod:`tempfile` makes it)."""
    endings = "|".join(re.escape(s) for s in LEFTOVER_SUFFIXES)
    return re.compile(rf"^\.{re.escape(name)}\.[a-z0-9_]{{8}}(?:{endings})$")


def sweep(target: Path) -> list[Path]:
    """Delete the temporaries of ``target`` in its folder; call it only holding its lock.

    Returns:
        What was deleted.
    """
    pattern = leftover_pattern(target.name)
    removed: list[Path] = []
    with contextlib.suppress(OSError), os.scandir(target.parent) as entries:
        for entry in entries:
            if not pattern.match(entry.name):
                continue
            path = Path(entry.path)
            try:
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(path)
                else:
                    path.unlink()
            except OSError as e:
                logger.warning("Cannot remove %s, left by an interrupted run: %s", path, e)
                continue
            removed.append(path)
    if removed:
        logger.info("Removed %d leftover(s) of an interrupted run: %s", len(removed),
                    ", ".join(p.name for p in removed))
    return removed


@contextlib.contextmanager
def writing(target: Path) -> Iterator[None]:
    """Hold the lock of ``target`` (``.<name>.lock`` beside it) and sweep its leftovers.

    Every install or extraction into ``target`` runs inside this block, so the temporary
    folders of ``target`` that exist when the lock is taken belong to dead writers. The
    parent folder is created if missing.

    Raises:
        DownloadError: The parent folder or the lock file cannot be created.
    """
    target = Path(target)
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DownloadError(f"Cannot create the folder {target.parent}: {e}.",
                            "check the path and its permissions") from e
    lock = lock_file_for(target, "write")
    again = lock_held(lock)  # re-entered by this thread: swept already
    with exclusive(lock, str(target)):
        if not again:
            sweep(target)
        yield


__all__ = ["LEFTOVER_SUFFIXES", "exclusive", "leftover_pattern", "lock_file_for", "sweep",
           "writing"]
