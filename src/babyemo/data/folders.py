"""Folder conventions shared by scanning, fetching and predicting (stdlib only).

Hidden entries (names starting with ``.`` and macOS's ``__MACOSX``) are never data; split
folders are ``train/``, ``val/`` or ``validation/`` and ``test/`` (case-insensitive); an
archive often wraps its whole content in one top-level folder. :func:`find_input_files`
lists the files to predict on, accounting for every entry it does not return.
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val", "test": "test"}
"""Folder names (case-insensitive) recognised as splits, and the split each one means."""


def is_hidden(name: str) -> bool:
    """True for a file or folder name that is never data (``.*`` or ``__MACOSX``)."""
    return name.startswith(".") or name == "__MACOSX"


def is_nonempty_dir(path: Path) -> bool:
    """True when ``path`` is a folder with at least one entry (hidden ones count)."""
    return path.is_dir() and any(path.iterdir())


def visible_subdirs(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` that are not hidden, sorted by path.

    Raises:
        OSError: ``folder`` cannot be listed.
    """
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name))


def single_top_folder(folder: Path) -> Path:
    """The only visible entry of ``folder`` when it is a folder, else ``folder`` itself.

    Archives often wrap everything in one top-level folder; this unwraps one level.
    """
    entries = [p for p in folder.iterdir() if not is_hidden(p.name)]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder


def is_utf8(name: str) -> bool:
    """True when ``name`` (a file name or relative path as Python decoded it from the file
    system) is valid UTF-8, i.e. holds no undecodable bytes (``surrogateescape``) and can
    be written to a UTF-8 manifest or CSV."""
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def printable_name(name: str) -> str:
    """``name`` with undecodable file-system bytes shown as ``\\xNN`` (UTF-8-safe).

    A name read from a Linux file system may hold bytes that are not UTF-8; Python keeps
    them as lone surrogates, which cannot be written to a UTF-8 file. Valid names are
    returned unchanged.
    """
    if is_utf8(name):
        return name
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


_ERRNO_REASONS = {
    errno.ELOOP: "symbolic link loop (too many levels of symbolic links)",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
    errno.ENOENT: "file not found (deleted or moved while running?)",
    errno.ENOTDIR: "file not found (deleted or moved while running?)",
    errno.EISDIR: "is a folder, not a file",
    errno.ENAMETOOLONG: "file name too long",
    errno.EIO: "input/output error (failing disk or network share?)",
}


def os_error_reason(error: OSError) -> str:
    """A short reason for an :class:`OSError` met reading a file or folder, without the
    path (callers name the file): e.g. ``"permission denied"``."""
    reason = _ERRNO_REASONS.get(error.errno or -1)
    return reason or str(error.strerror or error).rstrip(".")


@dataclass
class FoundFiles:
    """What :func:`find_input_files` found.

    Attributes:
        files: Files to read, in order (named files first where given, folders walked
            sorted, a folder's files before its sub-folders).
        hidden: Hidden files and folders skipped inside folders.
        skipped: ``(path, reason)`` of entries that are not files to read (a FIFO or other
            special file, a broken link, a symlink loop, a folder that cannot be listed);
            reported as error rows, never silently dropped.
    """

    files: list[Path] = field(default_factory=list)
    hidden: int = 0
    skipped: list[tuple[Path, str]] = field(default_factory=list)


def entry_problem(path: str | os.PathLike[str]) -> str | None:
    """Why ``path`` is not a regular file or folder one can open, or ``None`` when it is.

    Returns:
        A short reason without the path: a broken symbolic link, a symlink loop, a pipe,
        socket or device, permission denied, ...; ``None`` for a file or folder.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ENOENT and os.path.islink(path):
            return "broken symbolic link (its target does not exist)"
        return os_error_reason(e)
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return "not a regular file (a pipe, socket or device)"


def find_input_files(inputs: Iterable[str | os.PathLike[str]], recursive: bool = True
                     ) -> FoundFiles:
    """Expand files and folders into the files to predict on, accounting for every entry.

    Files named directly are always kept. Inside folders every visible regular file is kept
    (non-images become error rows later); hidden files and folders (``.*``,
    ``__MACOSX``) are counted in :attr:`FoundFiles.hidden`. Symbolic links to folders are
    followed, each real folder once (a link back to a folder already searched is
    reported as skipped). Special files (FIFOs, sockets, devices, which would block or
    make no sense to read), broken links, symlink loops and folders that cannot be listed
    are returned in :attr:`FoundFiles.skipped` with their reason.

    Args:
        inputs: Files and folders.
        recursive: Search sub-folders.

    Returns:
        The :class:`FoundFiles`.

    Raises:
        FileNotFoundError: An input path does not exist (not even as a broken link).
    """
    found = FoundFiles()
    seen: set[str] = set()

    def walk(folder: Path) -> None:
        real = os.path.realpath(folder)
        if real in seen:
            found.skipped.append((folder, "link to a folder already searched (symlink loop?)"))
            return
        seen.add(real)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            found.skipped.append((folder, f"cannot list folder ({os_error_reason(e)})"))
            return
        subdirs: list[Path] = []
        for entry in entries:
            path = Path(entry.path)
            if is_hidden(entry.name):
                found.hidden += 1
                continue
            problem = entry_problem(path)
            if problem is not None:
                found.skipped.append((path, problem))
            elif os.path.isdir(path):
                if recursive:
                    subdirs.append(path)
            else:
                found.files.append(path)
        for sub in subdirs:
            walk(sub)

    for item in inputs:
        path = Path(item)
        if not os.path.lexists(path):
            raise FileNotFoundError(errno.ENOENT, "No such file or folder", str(path))
        problem = entry_problem(path)
        if problem is not None:
            found.skipped.append((path, problem))
        elif os.path.isdir(path):
            walk(path)
        else:
            found.files.append(path)
    return found
