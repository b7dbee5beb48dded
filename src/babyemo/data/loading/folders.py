"""Folder conventions shared by scanning, fetching and predicting (stdlib only).

Hidden entries (names starting with ``.`` and macOS's ``__MACOSX``) are never data; split
folders are ``train/``, ``val/`` or ``validation/`` and ``test/`` (case-insensitive); an
archive often wraps its whole content in one top-level folder. :func:`find_input_files`
lists the files to predict on, accounting for every entry it does not return; a file is an
image when its name ends in one of :data:`IMAGE_SUFFIXES` (the bytes then decide the format).
:func:`check_outputs` is every command's one check of its output paths against its inputs.
"""

from __future__ import annotations

import contextlib
import errno
import os
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from babyemo.data.loading.file_errors import FileErrorCode
from babyemo.errors import ConfigError, DataError
from babyemo.fs import special_kind

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
    """The :class:`~babyemo.data.loading.file_errors.FileErrorCode` of an :class:`OSError` met
    reading a file or folder: ``link_loop`` for a symlink loop, else ``unreadable``."""
    return FileErrorCode.LINK_LOOP if error.errno == errno.ELOOP else FileErrorCode.UNREADABLE


def is_image_name(name: str | os.PathLike[str]) -> bool:
    """True when the file name ends like an image (:data:`IMAGE_SUFFIXES`, any case)."""
    return os.path.splitext(os.fspath(name))[1].lower() in IMAGE_SUFFIXES


class EntryError(NamedTuple):
    """An entry that gives an error row instead of being read (see :class:`FoundFiles`).

    Attributes:
        path: The entry as found.
        code: Why, as a :class:`~babyemo.data.loading.file_errors.FileErrorCode`.
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
        folders: The inputs that are folders (searched): no output may be written in
            them (:func:`check_outputs`'s ``scanned``).
        entries: :attr:`files` and :attr:`skipped` together, in the order they were found
            (prediction writes its rows in this order).
    """

    files: list[Path] = field(default_factory=list)
    hidden: int = 0
    skipped: list[EntryError] = field(default_factory=list)
    non_images: list[Path] = field(default_factory=list)
    folders: list[Path] = field(default_factory=list)
    entries: list[Path | EntryError] = field(default_factory=list)

    def add(self, entry: Path | EntryError) -> None:
        """Record a file to read, or an entry that gives an error row, in order."""
        (self.skipped if isinstance(entry, EntryError) else self.files).append(entry)
        self.entries.append(entry)


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
            found.add(EntryError(folder, FileErrorCode.LINK_LOOP,
                                            "link to a folder already searched (symlink loop?)"))
            return
        seen.add(real)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            found.add(EntryError(folder, os_error_code(e),
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
                found.add(EntryError(path, *problem))
            else:
                found.add(path)
        for sub in subdirs:
            walk(sub)

    for item in inputs:
        path = Path(item)
        if not os.path.lexists(path):
            raise FileNotFoundError(errno.ENOENT, "No such file or folder", str(path))
        problem = entry_error(path)
        if problem is not None:
            found.add(EntryError(path, *problem))
        elif os.path.isdir(path):
            found.folders.append(path)
            walk(path)
        else:
            found.add(path)
    return found


def collect_input_files(inputs: Iterable[str | os.PathLike[str]], *, recursive: bool = True,
                        all_files: bool = False, allow_empty: bool = False) -> FoundFiles:
    """:func:`find_input_files` for a command: its inputs must exist and hold something.

    Cheap (no image is opened), so a command can check its inputs before loading a model.

    Args:
        inputs: Files and folders.
        recursive: Search sub-folders.
        all_files: Inside folders, keep files whatever their names end with.
        allow_empty: Return what was found even when it holds nothing to read (a caller
            that takes some of the other files, e.g. videos, and calls
            :func:`check_found` itself).

    Returns:
        The :class:`FoundFiles`; it holds at least one file or error entry (unless
        ``allow_empty``).

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
    if not allow_empty:
        check_found(found, inputs)
    return found


def check_found(found: FoundFiles, inputs: Iterable[str | os.PathLike[str]]) -> None:
    """Refuse inputs that hold no file to read.

    Raises:
        DataError: ``found`` has no file and no error entry (an empty folder, or one
            holding only hidden and non-image files); the message says what was skipped.
    """
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


StrPath = str | os.PathLike[str]


def check_outputs(files: Mapping[str, StrPath | None] | None = None,
                  folders: Mapping[str, StrPath | None] | None = None, *,
                  folder_files: Mapping[str, Iterable[str]] | None = None,
                  inputs: Iterable[StrPath | None] = (),
                  scanned: Iterable[StrPath | None] = ()) -> None:
    """The one check of a command's output paths, made before any work (stdlib only, no
    file is opened or written): what each output is, where it lies and what it would
    replace.

    Refused, each with a :class:`~babyemo.errors.ConfigError` naming the option:

    - a file output that is a folder, a socket, a block device or a symbolic link loop, or
      lies under a file or in a folder one may not write to; character devices
      (``/dev/null``) and FIFOs are fine: :func:`babyemo.fs.atomic_open` writes through
      to them, and a symbolic link is followed to its target;
    - a folder output that is a file (or a device, a FIFO, a broken link), lies under a
      file or cannot be written; and, in it, a file it would write (``folder_files``)
      that is a folder or a special file;
    - an output that is one of ``inputs`` (the same file, also through a symbolic or hard
      link: same ``st_dev`` and ``st_ino``), such as ``predict photos --csv photos/a.jpg``
      or ``models card X.pt --out X.pt``;
    - an output inside one of ``scanned`` (folders whose files are data: a later scan
      would find the output among them), such as ``evaluate --out`` in a class folder;
    - two file outputs that are the same file (``--csv X --json X``).

    Args:
        files: How the user gave each file output (e.g. ``"--csv"``) -> its path, or
            ``None`` when not written (also for stdout).
        folders: How the user gave each folder output -> its path, or ``None``.
        folder_files: For a key of ``folders``, the names of the files written in it.
        inputs: Files (and folders) the command reads; ``None`` entries are ignored.
        scanned: Folders whose every file is data (``predict``'s input folders,
            ``prepare``'s source folder, a manifest's image root); ``None`` is ignored.

    Raises:
        ConfigError: See above.
    """
    named_files = {what: Path(p) for what, p in (files or {}).items() if p is not None}
    named_folders = {what: Path(p) for what, p in (folders or {}).items() if p is not None}
    roots = [Path(s) for s in scanned if s is not None]
    written: list[tuple[str, Path]] = []
    for what, path in named_files.items():
        _check_file_output(path, what, streams=True)
        written.append((what, path))
    for what, folder in named_folders.items():
        _check_folder_output(folder, what)
        for name in (folder_files or {}).get(what, ()):
            _check_file_output(folder / name, what, streams=False)
            written.append((what, folder / name))
    _check_not_inputs(written, inputs)
    for what, path in [*named_files.items(), *named_folders.items()]:
        _check_outside(path, what, roots)
    seen: dict[tuple, str] = {}
    for what, path in named_files.items():
        key = _file_key(path)
        if key in seen:
            raise ConfigError(f"{seen[key]} and {what} are the same file "
                              f"({printable_name(str(path))}).", "give two file names")
        seen[key] = what


def _file_key(path: Path) -> tuple:
    """What identifies the file ``path`` names: its device and inode when it exists, else
    its resolved absolute path."""
    try:
        st = os.stat(path)
    except OSError:
        return ("path", os.path.realpath(path))
    return ("inode", st.st_dev, st.st_ino)


def _output_mode(path: Path, what: str) -> int | None:
    """``st_mode`` of what ``path`` names (links followed), ``None`` when nothing is there.

    Raises:
        ConfigError: ``path`` is a symbolic link loop.
    """
    try:
        return os.stat(path).st_mode
    except OSError as e:
        if e.errno == errno.ELOOP:
            raise ConfigError(f"{what} {printable_name(str(path))} is a symbolic link loop.",
                              "remove the link or give another path") from None
        return None


def _check_file_output(path: Path, what: str, *, streams: bool) -> None:
    """The kind and place of one file output (see :func:`check_outputs`)."""
    shown = printable_name(str(path))
    mode = _output_mode(path, what)  # None: missing (or under a file): judged by its folder
    if mode is not None and stat.S_ISDIR(mode):
        raise ConfigError(f"{what} {shown} is a folder, not a file.",
                          "give the name of a file to write" if streams
                          else "move it away or give another folder")
    if mode is not None and not stat.S_ISREG(mode):
        if streams and (stat.S_ISCHR(mode) or stat.S_ISFIFO(mode)):
            if not os.access(path, os.W_OK):
                raise ConfigError(f"{what} {shown} cannot be written: permission denied.",
                                  "give a file you may write to")
            return  # written through, never replaced (babyemo.fs.atomic_open)
        raise ConfigError(f"{what} {shown} is {special_kind(mode)}; babyemo writes regular "
                          "files" + (", character devices (such as /dev/null) and FIFOs"
                                     if streams else "") + " only.",
                          "give a file name" if streams else "move it away or give another "
                          "folder")
    target = Path(os.path.realpath(path)) if os.path.islink(path) else path
    problem = _unwritable(target.parent)
    if problem is not None:
        raise ConfigError(f"{what} {shown} cannot be written: {problem}.",
                          "give a path in a folder you may write to")


def _check_folder_output(path: Path, what: str) -> None:
    """The kind and place of one folder output (see :func:`check_outputs`)."""
    shown = printable_name(str(path))
    mode = _output_mode(path, what)
    if mode is None and os.path.islink(path):
        raise ConfigError(f"{what} {shown} is a broken symbolic link, not a folder.",
                          "remove the link or give another folder")
    if mode is not None and not stat.S_ISDIR(mode):
        kind = "a file" if stat.S_ISREG(mode) else special_kind(mode)
        raise ConfigError(f"{what} {shown} is {kind}, not a folder.",
                          "give a folder; it is created if missing")
    problem = _unwritable(path)
    if problem is not None:
        raise ConfigError(f"{what} {shown} cannot be written: {problem}.",
                          "give a folder you may write to")


def _inside(path: str, folder: str) -> bool:
    """True when the absolute path ``path`` is ``folder`` or lies under it."""
    try:
        return os.path.commonpath([path, folder]) == folder
    except ValueError:  # different drives (Windows)
        return False


def _check_outside(path: Path, what: str, roots: list[Path]) -> None:
    """``path`` (resolved, also through links) lies in none of the scanned ``roots``."""
    if not roots:
        return
    real = os.path.realpath(path)
    for root in roots:
        if _inside(real, os.path.realpath(root)):
            shown, folder = printable_name(str(path)), printable_name(str(root))
            raise ConfigError(f"{what} {shown} is inside the input folder {folder}: a later "
                              "scan of that folder would read it as data.",
                              f"write it outside {folder}")


def _check_not_inputs(written: list[tuple[str, Path]],
                      inputs: Iterable[StrPath | None]) -> None:
    """No file of ``written`` is one of ``inputs`` (same device and inode)."""
    existing = []
    for what, path in written:
        with contextlib.suppress(OSError):
            st = os.stat(path)
            existing.append((what, path, (st.st_dev, st.st_ino)))
    if not existing:  # a file that does not exist yet is no input: skip stat-ing the inputs
        return
    keys: dict[tuple[int, int], StrPath] = {}
    for item in inputs:
        if item is None:
            continue
        with contextlib.suppress(OSError):
            st = os.stat(item)
            keys.setdefault((st.st_dev, st.st_ino), item)
    for what, path, key in existing:
        if key in keys:
            shown, source = printable_name(str(path)), printable_name(str(keys[key]))
            same = "" if os.path.abspath(source) == os.path.abspath(shown) else f" ({source})"
            raise ConfigError(f"{what} {shown} is one of the command's inputs{same}: writing "
                              "it would replace it.", "give another output path")


def check_output_file(path: str | os.PathLike[str], what: str = "output file") -> Path:
    """Check, before any work, that a file can be written at ``path``
    (:func:`check_outputs` of this one file).

    The file itself need not exist; missing parent folders are fine (they are created
    when writing) as long as the nearest existing one is a folder one may write to.

    Args:
        path: The file to write.
        what: How the user gave it, for the message (e.g. ``"--csv"``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: ``path`` is a folder or another kind babyemo does not write, lies
            under a file, or its folder is not writable.
    """
    check_outputs({what: path})
    return Path(path)


def check_output_files(outputs: Mapping[str, str | os.PathLike[str] | None]) -> list[Path]:
    """:func:`check_output_file` for each output a command writes, and no two the same
    (:func:`check_outputs` of these files).

    Args:
        outputs: How the user gave each output (e.g. ``"--csv"``) -> its path, or ``None``
            when not written.

    Returns:
        The paths given, in order.

    Raises:
        ConfigError: See :func:`check_output_file`; or two outputs are the same file.
    """
    check_outputs(outputs)
    return [Path(p) for p in outputs.values() if p is not None]


def check_output_folder(path: str | os.PathLike[str], what: str = "output folder") -> Path:
    """Check, before any work, that files can be written into the folder ``path`` (created
    with its missing parents when writing; :func:`check_outputs` of this one folder).

    Args:
        path: The folder.
        what: How the user gave it, for the message (e.g. ``"--save-crops"``).

    Returns:
        ``path`` as a :class:`~pathlib.Path`.

    Raises:
        ConfigError: ``path`` is a file, lies under a file, or is not writable.
    """
    check_outputs(folders={what: path})
    return Path(path)
