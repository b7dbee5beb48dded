"""Safe zip/tar extraction, archive checks, archive file names, records of extractions.

Standard library only (``zipfile``, ``tarfile``). Every entry of an archive is validated
before anything is written: its path (nothing may land outside the target), its kind (no
links or devices), and the archive as a whole against zip-bomb limits (unpacked size,
number of entries, compression ratio). The archive is extracted into a temporary folder
beside the target that is renamed into place at the end, so a crash never leaves a
half-extracted dataset; the extraction holds a lock beside the target, so the temporary
folders a killed extraction left are recognised and deleted by the next one
(:mod:`babyemo.leftovers`). :func:`check_archive` reads a whole archive without
writing anything: downloads are kept only when it passes.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import stat
import struct
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from babyemo import leftovers
from babyemo.data.loading.folders import is_nonempty_dir, single_top_folder
from babyemo.download import CHUNK_BYTES, DEFAULT_MAX_BYTES
from babyemo.errors import CorruptArchiveError, DownloadError, UnsafeArchiveError
from babyemo.fs import atomic_write_text

try:
    from lzma import LZMAError
except ImportError:  # a Python built without lzma (tarfile then cannot read .tar.xz)
    LZMAError = OSError  # type: ignore[misc,assignment]

logger = logging.getLogger(__name__)

DEFAULT_MAX_ENTRIES = 50_000
"""Default limit on the number of entries (files and folders) of one archive: FER-2013, the
largest catalogue dataset, has 35,887 images."""

DEFAULT_MAX_RATIO = 100
"""Default limit on the compression ratio (unpacked bytes per archive byte), for the whole
archive and for each zip entry. Photos barely compress (about 1:1) and CSV or text files
about 3-10:1; deflate reaches about 1000:1 only on repetitive data such as a zip bomb's."""

RATIO_ALLOWANCE_BYTES = 16 * 2**20
"""Unpacked bytes (16 MiB) that may exceed :data:`DEFAULT_MAX_RATIO` before the ratio limit
applies: a few blank images compress far better than 100:1 and are harmless."""


ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".txz", ".tar", ".zip")
"""File name endings recognised as zip/tar archives (checked in this order)."""


def split_archive_name(file_name: str) -> tuple[str, str]:
    """Split an archive file name into ``(stem, suffix)`` by :data:`ARCHIVE_SUFFIXES`.

    E.g. ``"Faces.TAR.GZ"`` -> ``("Faces", ".TAR.GZ")`` (the case is kept). A name that does
    not end in an archive suffix, or is nothing but the suffix, gives ``(file_name, "")``.
    """
    lower = file_name.lower()
    for suffix in ARCHIVE_SUFFIXES:
        if lower.endswith(suffix) and len(file_name) > len(suffix):
            return file_name[: -len(suffix)], file_name[-len(suffix):]
    return file_name, ""


def _member_parts(name: str) -> tuple[str, ...]:
    """The path components of an archive entry, or raise if it could escape the target."""
    raw = name.replace("\\", "/")
    if "\x00" in raw:
        raise UnsafeArchiveError(f"Archive entry {name!r} contains a NUL byte.",
                                 "the archive was refused as a whole; nothing was extracted")
    if raw.startswith("/"):
        raise UnsafeArchiveError(f"Archive entry {name!r} has an absolute path.",
                                 "the archive was refused as a whole; nothing was extracted")
    if re.match(r"[A-Za-z]:", raw):
        raise UnsafeArchiveError(f"Archive entry {name!r} has a drive letter.",
                                 "the archive was refused as a whole; nothing was extracted")
    parts = tuple(p for p in raw.split("/") if p not in ("", "."))
    if ".." in parts:
        raise UnsafeArchiveError(f"Archive entry {name!r} contains a '..' component.",
                                 "the archive was refused as a whole; nothing was extracted")
    if os.name == "nt" and any(":" in p for p in parts):
        raise UnsafeArchiveError(f"Archive entry {name!r} has a ':' in a name.",
                                 "the archive was refused as a whole; nothing was extracted")
    return parts


_Plan = list[tuple[tuple[str, ...], bool, Callable[[], IO[bytes]]]]


def _unsafe(name: str, what: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(f"Archive entry {name!r} is {what}.",
                              "the archive was refused as a whole; nothing was extracted")


_BOMB_HINT = ("zip-bomb guard; if the archive is trusted, extract it yourself and give the "
              "folder, or raise the limit (extract_archive's max_bytes, max_entries, max_ratio)")


def _too_many(archive: Path, count: int | str, max_entries: int) -> DownloadError:
    return DownloadError(f"{archive} has more than {max_entries:,} entries ({count}).",
                         _BOMB_HINT)


def _zip_entry_count(archive: Path) -> int | None:
    """The number of entries a zip declares in its end records, read before parsing its
    central directory (which for millions of entries takes minutes); ``None`` if not found."""
    with open(archive, "rb") as f:
        size = f.seek(0, os.SEEK_END)
        start = max(0, size - (22 + 65_535 + 20))
        f.seek(start)
        tail = f.read()
    at = tail.rfind(b"PK\x05\x06")
    if at < 0 or len(tail) < at + 22:
        return None
    count = struct.unpack_from("<H", tail, at + 10)[0]
    if count != 0xFFFF:
        return count
    locator = at - 20  # zip64: the locator points to the zip64 end record
    if locator < 0 or tail[locator:locator + 4] != b"PK\x06\x07":
        return None
    offset = struct.unpack_from("<Q", tail, locator + 8)[0]
    with open(archive, "rb") as f:
        f.seek(offset)
        record = f.read(56)
    if len(record) < 56 or record[:4] != b"PK\x06\x06":
        return None
    return struct.unpack_from("<Q", record, 32)[0]


def _zip_plan(zf: zipfile.ZipFile, max_entries: int = DEFAULT_MAX_ENTRIES,
              max_ratio: float = DEFAULT_MAX_RATIO) -> tuple[_Plan, int]:
    """The entries to write and their declared unpacked size; raises on an unsafe entry, on
    more than ``max_entries`` entries or on too many bytes at over ``max_ratio``:1."""
    infos = zf.infolist()
    if len(infos) > max_entries:
        raise _too_many(Path(zf.filename or "the zip"), f"{len(infos):,}", max_entries)
    plan: _Plan = []
    declared = dense = 0
    densest: tuple[float, str] = (0.0, "")
    for info in infos:
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise _unsafe(info.filename, "a symbolic link")
        if kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
            raise _unsafe(info.filename, "a device, fifo or socket")
        parts = _member_parts(info.filename)
        if parts:
            declared += info.file_size
            ratio = info.file_size / max(info.compress_size, 1)
            if ratio > max_ratio:
                dense += info.file_size
                densest = max(densest, (ratio, info.filename))
            plan.append((parts, info.is_dir(), lambda info=info: zf.open(info)))
    if dense > RATIO_ALLOWANCE_BYTES:
        raise DownloadError(
            f"{zf.filename} has {dense:,} bytes in entries compressed more than "
            f"{max_ratio:g}:1 (e.g. {densest[1]!r} at {densest[0]:,.0f}:1).", _BOMB_HINT)
    return plan, declared


def _tar_plan(tf: tarfile.TarFile,
              max_entries: int = DEFAULT_MAX_ENTRIES) -> tuple[_Plan, int]:
    plan: _Plan = []
    declared = count = 0
    for member in tf:  # read one header at a time: a huge count stops early
        count += 1
        if count > max_entries:
            raise _too_many(Path(tf.name or "the tar"), "or more", max_entries)
        if member.issym() or member.islnk():
            raise _unsafe(member.name, f"a link (to {member.linkname!r})")
        if member.ischr() or member.isblk() or member.isfifo():
            raise _unsafe(member.name, "a device or fifo")
        if not (member.isreg() or member.isdir()):
            raise _unsafe(member.name, "not a regular file or folder")
        parts = _member_parts(member.name)
        if parts:
            declared += member.size if member.isreg() else 0
            plan.append((parts, member.isdir(),
                         lambda member=member: tf.extractfile(member)))  # type: ignore[misc]
    # tarfile takes a missing or garbled header for the end of the archive: a tar cut short
    # at a header would read as a smaller, whole one. Require the end marker (a zero
    # block) and, for a compressed tar, an intact end of the stream (read to its end).
    assert tf.fileobj is not None
    tf.fileobj.seek(tf.offset)
    if tf.fileobj.read(tarfile.BLOCKSIZE) != bytes(tarfile.BLOCKSIZE):
        raise tarfile.ReadError(f"no end-of-archive marker after {count} entries (cut short "
                                "or corrupt)")
    while tf.fileobj.read(CHUNK_BYTES):
        pass
    return plan, declared


def _bomb(archive: Path, size: int, max_bytes: int) -> DownloadError:
    return DownloadError(
        f"{archive} unpacks to more than the limit ({size:,} > {max_bytes:,} bytes).",
        "raise max_bytes if this size is expected (zip-bomb guard)",
    )


def _not_an_archive(archive: Path) -> DownloadError:
    with open(archive, "rb") as f:
        head = f.read(512)
    looks = head.lstrip().lower()
    if looks.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        what = "it is an HTML page, e.g. an error or login page sent instead of the file"
    elif head.startswith(b"PK\x03\x04"):
        what = "it begins like a zip but its end record is missing: cut short?"
    elif not head:
        what = "it is empty"
    else:
        what = f"it starts with {head[:16]!r}"
    return CorruptArchiveError(f"{archive} is not a zip or tar archive ({what}).",
                               "give a .zip, .tar, .tar.gz, .tgz, .tar.bz2 or .tar.xz")


_READ_ERRORS = (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError,
                LZMAError, RuntimeError, ValueError)
"""What zipfile/tarfile raise on a corrupt, truncated or encrypted archive (bz2 raises
OSError or ValueError, an encrypted zip entry RuntimeError)."""


def _open_plan(archive: Path, stack: contextlib.ExitStack, *, max_bytes: int,
               max_entries: int, max_ratio: float) -> _Plan:
    """Open ``archive`` in ``stack`` and validate every entry and the zip-bomb limits."""
    if not archive.is_file():
        raise DownloadError(f"Archive not found: {archive}.")
    try:
        if zipfile.is_zipfile(archive):
            count = _zip_entry_count(archive)
            if count is not None and count > max_entries:
                raise _too_many(archive, f"{count:,}", max_entries)
            plan, declared = _zip_plan(stack.enter_context(zipfile.ZipFile(archive)),
                                       max_entries, max_ratio)
        elif tarfile.is_tarfile(archive):
            plan, declared = _tar_plan(stack.enter_context(tarfile.open(archive, "r:*")),
                                       max_entries)
        else:
            raise _not_an_archive(archive)
    except _READ_ERRORS as e:
        raise CorruptArchiveError(f"Cannot read archive {archive}: {e}.",
                                  "the file is corrupt; delete it and download again") from e
    if declared > max_bytes:
        raise _bomb(archive, declared, max_bytes)
    size = archive.stat().st_size
    if declared > RATIO_ALLOWANCE_BYTES and declared > max_ratio * size:
        raise DownloadError(
            f"{archive} unpacks at more than {max_ratio:g}:1 ({declared:,} bytes from "
            f"{size:,}).", _BOMB_HINT)
    return plan


class _WriteFailed(Exception):
    """An ``OSError`` on the writing side of an extraction (e.g. a full disk), kept apart
    from the read errors that mean a corrupt archive; the ``OSError`` is its cause."""


def _copy_member(open_member: Callable[[], IO[bytes]], out: IO[bytes] | None,
                 written: int, archive: Path, max_bytes: int) -> int:
    """Copy one member into ``out`` (or only read it, when ``None``); the new total."""
    with open_member() as src:
        while chunk := src.read(CHUNK_BYTES):
            written += len(chunk)
            if written > max_bytes:
                raise _bomb(archive, written, max_bytes)
            if out is not None:
                try:
                    out.write(chunk)
                except OSError as e:
                    raise _WriteFailed() from e
    return written


def check_archive(archive: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                  max_entries: int = DEFAULT_MAX_ENTRIES,
                  max_ratio: float = DEFAULT_MAX_RATIO) -> None:
    """Check that ``archive`` is a whole, readable, safe zip or tar archive; write nothing.

    Every entry is validated as by :func:`extract_archive` and every file entry is read to
    its end (zip: its CRC-32 is checked; tar: its declared length must be there), so an
    HTML page saved under an archive's name, a download cut short or spliced from two
    versions of a file, and a corrupt archive are all refused. It costs one pass of
    decompression.

    Args:
        archive: The archive file.
        max_bytes: As :func:`extract_archive`.
        max_entries: As :func:`extract_archive`.
        max_ratio: As :func:`extract_archive`.

    Raises:
        UnsafeArchiveError: An entry could write outside its folder.
        CorruptArchiveError: Not a zip/tar archive (an HTML page is named as such),
            truncated, corrupt or encrypted.
        DownloadError: Over one of the limits.
    """
    archive = Path(archive)
    with contextlib.ExitStack() as stack:
        plan = _open_plan(archive, stack, max_bytes=max_bytes, max_entries=max_entries,
                          max_ratio=max_ratio)
        try:
            written = 0
            for _parts, is_dir, open_member in plan:
                if not is_dir:
                    written = _copy_member(open_member, None, written, archive, max_bytes)
        except _READ_ERRORS as e:
            raise CorruptArchiveError(f"Cannot read archive {archive}: {e}.",
                                      "the file is corrupt, cut short or encrypted") from e


def extract_archive(archive: Path, target: Path, *, max_bytes: int = DEFAULT_MAX_BYTES,
                    max_entries: int = DEFAULT_MAX_ENTRIES,
                    max_ratio: float = DEFAULT_MAX_RATIO) -> Path:
    """Safely extract a zip or tar archive into a new folder ``target``.

    The format is detected from the content (:func:`zipfile.is_zipfile`,
    :func:`tarfile.is_tarfile`): zip, tar, tar.gz/tgz, tar.bz2, tar.xz. Every entry is
    validated before anything is written, and the whole archive is refused if one entry
    has an absolute path, a drive letter or a ``..`` component, is a symbolic or hard link
    (tar, or a zip entry whose Unix mode marks a symlink), or is a device, fifo or socket;
    or if the archive trips a zip-bomb limit: more than ``max_entries`` entries (a zip's
    count is read from its end record, before its directory is parsed), more than
    ``max_bytes`` unpacked, or more than :data:`RATIO_ALLOWANCE_BYTES` unpacked at over
    ``max_ratio``:1 (the whole archive; for a zip also the entries compressed that much,
    together).

    Files are unpacked into a temporary folder ``.<target name>.<random>.extracting``
    beside ``target``, renamed to ``target`` at the end, while a lock
    ``.<target name>.lock`` is held beside it: temporary folders of ``target`` left by a
    killed extraction are deleted when the next one starts; one that a live process is
    writing is not (this call waits for that process). On an error or
    ``KeyboardInterrupt`` the temporary folder is removed. Permissions, owners and times
    from the archive are not applied.

    Args:
        archive: The archive file.
        target: Folder to create; it must not exist or be empty.
        max_bytes: Limit on the total unpacked size in bytes, checked against both the
            declared sizes and the bytes actually written.
        max_entries: Limit on the number of entries (files and folders).
        max_ratio: Limit on the compression ratio (unpacked bytes per archive byte).

    Returns:
        ``target``.

    Raises:
        UnsafeArchiveError: An entry could write outside ``target`` (nothing is written).
        CorruptArchiveError: Not a zip/tar archive, truncated, corrupt or encrypted
            (the temporary folder is removed).
        DownloadError: Over a limit, or ``target`` exists and is not empty (nothing is
            written); or writing failed, e.g. a full disk (the temporary folder is
            removed).
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise DownloadError(f"Archive not found: {archive}.")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DownloadError(f"Cannot extract into {target}: it exists and is not empty.",
                            "delete it or choose another folder")
    with contextlib.ExitStack() as stack:
        plan = _open_plan(archive, stack, max_bytes=max_bytes, max_entries=max_entries,
                          max_ratio=max_ratio)
        stack.enter_context(leftovers.writing(target))
        if target.exists() and (not target.is_dir() or any(target.iterdir())):
            raise DownloadError(f"Cannot extract into {target}: it exists and is not empty "
                                "(another process extracted into it meanwhile).",
                                "delete it or choose another folder")
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".extracting",
                                    dir=target.parent))
        try:
            written = 0
            for parts, is_dir, open_member in plan:
                out = tmp.joinpath(*parts)
                try:
                    if is_dir:
                        out.mkdir(parents=True, exist_ok=True)
                        continue
                    out.parent.mkdir(parents=True, exist_ok=True)
                    dst = open(out, "wb")  # noqa: SIM115 - closed just below
                except OSError as e:
                    raise _WriteFailed() from e
                with dst:
                    written = _copy_member(open_member, dst, written, archive, max_bytes)
            try:
                if target.exists():
                    target.rmdir()
                os.replace(tmp, target)
            except OSError as e:
                raise _WriteFailed() from e
        except _WriteFailed as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DownloadError(f"Cannot write the extraction of {archive} into "
                                f"{target.parent}: {e.__cause__}.",
                                "check the free space and the permissions there") from e.__cause__
        except _READ_ERRORS as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise CorruptArchiveError(f"Cannot extract {archive}: {e}.",
                                      "the file is corrupt or encrypted; delete it and "
                                      "retry") from e
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
    logger.info("Extracted %s into %s", archive, target)
    return target


def previous_extraction(target: Path, marker: str) -> Any:
    """What an earlier extraction into ``target`` recorded in its JSON file ``marker``.

    Args:
        target: The extraction folder.
        marker: File name of the record inside ``target``.

    Returns:
        ``None`` when ``target`` is missing or empty (nothing extracted yet); otherwise the
        parsed record, or ``{}`` when it is missing or unreadable.
    """
    if not is_nonempty_dir(target):
        return None
    try:
        return json.loads((target / marker).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def extract_with_record(archive: Path, target: Path, marker: str,
                        record: dict[str, Any]) -> Path:
    """:func:`extract_archive`, then save ``record`` as JSON in ``target / marker``.

    Returns:
        The extracted folder, or its single top-level folder if the archive has one.

    Raises:
        UnsafeArchiveError: An entry could write outside ``target`` (nothing is written).
        DownloadError: As :func:`extract_archive`.
    """
    extract_archive(archive, target)
    atomic_write_text(target / marker, json.dumps(record, indent=2))
    return single_top_folder(target)


__all__ = ["ARCHIVE_SUFFIXES", "CHUNK_BYTES", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_ENTRIES",
           "DEFAULT_MAX_RATIO", "RATIO_ALLOWANCE_BYTES", "CorruptArchiveError", "check_archive",
           "extract_archive", "extract_with_record", "previous_extraction",
           "split_archive_name"]
