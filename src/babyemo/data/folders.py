"""Folder conventions shared by scanning, fetching and predicting (stdlib only).

Hidden entries (names starting with ``.`` and macOS's ``__MACOSX``) are never data; split
folders are ``train/``, ``val/`` or ``validation/`` and ``test/`` (case-insensitive); an
archive often wraps its whole content in one top-level folder. :func:`find_input_files`
lists the files to predict on, accounting for every entry it does not return; a file is an
image when its name ends in one of :data:`IMAGE_SUFFIXES` (the bytes then decide the format).
"""

from __future__ import annotations

import errno
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from babyemo.data.file_errors import FileErrorCode
from babyemo.errors import ConfigError, DataError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff",
     ".heic", ".heif", ".avif", ".jxl"}
)
"""File name endings (lower-cased) of images, the one list used when scanning folders. The
bytes decide the format (a WebP named ``.jpg`` is read as WebP); formats that cannot be
decoded here (HEIC without ``pillow-heif``, JPEG XL) are listed so they are reported as
``unsupported_format`` rather than skipped as non-images."""

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


def os_error_code(error: OSError) -> FileErrorCode:
    """The :class:`~babyemo.data.file_errors.FileErrorCode` of an :class:`OSError` met
    reading a file or folder: ``link_loop`` for a symlink loop, else ``unreadable``."""
    return FileErrorCode.LINK_LOOP if error.errno == errno.ELOOP else FileErrorCode.UNREADABLE


def is_image_name(name: str | os.PathLike[str]) -> bool:
    """True when the file name ends like an image (:data:`IMAGE_SUFFIXES`, any case)."""
    return os.path.splitext(os.fspath(name))[1].lower() in IMAGE_SUFFIXES


class EntryError(NamedTuple):
    """An entry that gives an error row instead of being read (see :class:`FoundFiles`).

    Attributes:
        path: The entry as found.
        code: Why, as a :class:`~babyemo.data.file_errors.FileErrorCode`.
        detail: The human reason, without the path (e.g. ``"permission denied"``).
    """

    path: Path
    code: FileErrorCode
    detail: str


@dataclass
class FoundFiles:
    """What :func:`find_input_files` found.

    Attributes:
        files: Files to read, in order (named files first where given, folders walked
            sorted, a folder's files before its sub-folders).
        hidden: Hidden files and folders skipped inside folders.
        skipped: :class:`EntryError` of entries that are not files to read (a FIFO or other
            special file, a broken link, a symlink loop, a folder that cannot be listed);
            reported as error rows, never silently dropped.
        non_images: Files inside folders whose names do not end like an image (a
            ``readme.txt``), skipped and counted (empty with ``all_files``).
    """

    files: list[Path] = field(default_factory=list)
    hidden: int = 0
    skipped: list[EntryError] = field(default_factory=list)
    non_images: list[Path] = field(default_factory=list)


def entry_error(path: str | os.PathLike[str]) -> tuple[FileErrorCode, str] | None:
    """Why ``path`` is not a regular file or folder one can open, or ``None`` when it is.

    Returns:
        ``(code, reason)``, the reason short and without the path: ``broken_link``,
        ``link_loop``, ``not_a_file`` (a pipe, socket or device), ``unreadable``
        (permission denied, ...); ``None`` for a file or folder.
    """
    try:
        mode = os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ENOENT and os.path.islink(path):
            return FileErrorCode.BROKEN_LINK, "broken symbolic link (its target does not exist)"
        return os_error_code(e), os_error_reason(e)
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return FileErrorCode.NOT_A_FILE, "not a regular file (a pipe, socket or device)"


def entry_problem(path: str | os.PathLike[str]) -> str | None:
    """The reason of :func:`entry_error` alone (``None`` for a file or folder)."""
    problem = entry_error(path)
    return None if problem is None else problem[1]


def find_input_files(inputs: Iterable[str | os.PathLike[str]], recursive: bool = True,
                     all_files: bool = False) -> FoundFiles:
    """Expand files and folders into the files to predict on, accounting for every entry.

    Files named directly are always kept, whatever their names. Inside folders every
    visible regular file whose name ends like an image (:data:`IMAGE_SUFFIXES`) is kept,
    and with ``all_files`` every visible regular file; the others (a ``readme.txt``) are
    counted in :attr:`FoundFiles.non_images`. Hidden files and folders (``.*``,
    ``__MACOSX``) are counted in :attr:`FoundFiles.hidden`. Symbolic links to folders are
    followed, each real folder once (a link back to a folder already searched is
    reported as skipped). Special files (FIFOs, sockets, devices, which would block or
    make no sense to read), broken links, symlink loops and folders that cannot be listed
    are returned in :attr:`FoundFiles.skipped` with their error code and reason (an entry
    of those kinds whose name does not end like an image counts as a non-image instead).

    Args:
        inputs: Files and folders.
        recursive: Search sub-folders.
        all_files: Inside folders, keep files whatever their names end with.

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
            found.skipped.append(EntryError(folder, FileErrorCode.LINK_LOOP,
                                            "link to a folder already searched (symlink loop?)"))
            return
        seen.add(real)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            found.skipped.append(EntryError(folder, os_error_code(e),
                                            f"cannot list folder ({os_error_reason(e)})"))
            return
        subdirs: list[Path] = []
        for entry in entries:
            path = Path(entry.path)
            if is_hidden(entry.name):
                found.hidden += 1
                continue
            problem = entry_error(path)
            if problem is None and os.path.isdir(path):
                if recursive:
                    subdirs.append(path)
            elif not all_files and not is_image_name(entry.name):
                found.non_images.append(path)
            elif problem is not None:
                found.skipped.append(EntryError(path, *problem))
            else:
                found.files.append(path)
        for sub in subdirs:
            walk(sub)

    for item in inputs:
        path = Path(item)
        if not os.path.lexists(path):
            raise FileNotFoundError(errno.ENOENT, "No such file or folder", str(path))
        problem = entry_error(path)
        if problem is not None:
            found.skipped.append(EntryError(path, *problem))
        elif os.path.isdir(path):
            walk(path)
        else:
            found.files.append(path)
    return found


def collect_input_files(inputs: Iterable[str | os.PathLike[str]], *, recursive: bool = True,
                        all_files: bool = False) -> FoundFiles:
    """:func:`find_input_files` for a command: its inputs must exist and hold something.

    Cheap (no image is opened), so a command can check its inputs before loading a model.

    Args:
        inputs: Files and folders.
        recursive: Search sub-folders.
        all_files: Inside folders, keep files whatever their names end with.

    Returns:
        The :class:`FoundFiles`; it holds at least one file or error entry.

    Raises:
        DataError: An input does not exist, or the inputs hold no file to read (an empty
            folder, or one holding only hidden and non-image files).
    """
    inputs = list(inputs)
    try:
        found = find_input_files(inputs, recursive=recursive, all_files=all_files)
    except FileNotFoundError as e:
        raise DataError(f"No such file or folder: {printable_name(str(e.filename))}",
                        "check the path") from None
    if not found.files and not found.skipped:
        where = ", ".join(printable_name(str(p)) for p in inputs) or "(no input)"
        skipped = []
        if found.non_images:
            n = len(found.non_images)
            skipped.append(f"{n} non-image file{'s' if n != 1 else ''}")
        if found.hidden:
            skipped.append(f"{found.hidden} hidden entr{'ies' if found.hidden != 1 else 'y'}")
        raise DataError(f"No files to predict on in {where}"
                        + (f" ({' and '.join(skipped)} skipped)." if skipped else "."),
                        "give image files or folders that hold some"
                        + ("; --all-files tries files of any name" if found.non_images
                           else ""))
    return found


def _unwritable(folder: Path) -> str | None:
    """Why files cannot be created in ``folder`` (created with its missing parents when
    writing), or ``None``: judged on its nearest existing ancestor."""
    existing = folder
    while not os.path.lexists(existing) and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        return f"{printable_name(str(existing))} is a file, not a folder"
    if not os.access(existing, os.W_OK | os.X_OK):
        return f"permission denied in {printable_name(str(existing))}"
    return None


def check_output_file(path: str | os.PathLike[str], what: str = "output file") -> Path:
    """Check, before any work, that a file can be written at ``path``.

    The file itself need not exist; missing parent folders are fine (they are created
    when writing) as long as the nearest existing one is a folder one may write to.

    Args:
        path: The file to write.
        what: How the user gave it, for the message (e.g. ``"--csv"``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: ``path`` is a folder, lies under a file, or its folder is not writable.
    """
    path = Path(path)
    shown = printable_name(str(path))
    if path.is_dir():
        raise ConfigError(f"{what} {shown} is a folder, not a file.",
                          f"give a file name, e.g. {printable_name(str(path / 'out.csv'))}")
    problem = _unwritable(path.parent)
    if problem is not None:
        raise ConfigError(f"{what} {shown} cannot be written: {problem}.",
                          "give a path in a folder you may write to")
    return path


def check_output_files(outputs: Mapping[str, str | os.PathLike[str] | None]) -> list[Path]:
    """:func:`check_output_file` for each output a command writes, and no two the same.

    Args:
        outputs: How the user gave each output (e.g. ``"--csv"``) -> its path, or ``None``
            when not written.

    Returns:
        The paths given, in order.

    Raises:
        ConfigError: See :func:`check_output_file`; or two outputs are the same file.
    """
    seen: dict[str, str] = {}
    paths = []
    for what, path in outputs.items():
        if path is None:
            continue
        paths.append(check_output_file(path, what))
        key = os.path.abspath(path)
        if key in seen:
            raise ConfigError(f"{seen[key]} and {what} are the same file "
                              f"({printable_name(str(path))}).", "give two file names")
        seen[key] = what
    return paths


def check_output_folder(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Check, before any work, that files can be written into the folder ``path`` (created
    with its missing parents when writing).

    Args:
        path: The folder.
        what: How the user gave it, for the message (e.g. ``"--save-crops"``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: ``path`` is a file, lies under a file, or is not writable.
    """
    path = Path(path)
    shown = printable_name(str(path))
    if os.path.lexists(path) and not path.is_dir():
        raise ConfigError(f"{what} {shown} is a file, not a folder.",
                          "give a folder; it is created if missing")
    problem = _unwritable(path)
    if problem is not None:
        raise ConfigError(f"{what} {shown} cannot be written: {problem}.",
                          "give a folder you may write to")
    return path
