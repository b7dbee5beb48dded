"""Safe zip/tar extraction, archive file names, and records of what was extracted.

Standard library only (``zipfile``, ``tarfile``). Every entry of an archive is validated
before anything is written, and the archive is extracted into a temporary folder beside
the target that is renamed into place at the end, so a crash never leaves a
half-extracted dataset.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from babyemo.data.folders import is_nonempty_dir, single_top_folder
from babyemo.errors import DownloadError, UnsafeArchiveError
from babyemo.io import atomic_write_text

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 20 * 2**30
"""Default limit (20 GiB) for one download and for the unpacked size of one archive."""

CHUNK_BYTES = 1 << 20
"""Bytes read and written at a time when downloading, hashing and extracting (1 MiB)."""

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


def _zip_plan(zf: zipfile.ZipFile) -> tuple[_Plan, int]:
    plan: _Plan = []
    declared = 0
    for info in zf.infolist():
        kind = stat.S_IFMT(info.external_attr >> 16)
        if kind == stat.S_IFLNK:
            raise _unsafe(info.filename, "a symbolic link")
        if kind in (stat.S_IFCHR, stat.S_IFBLK, stat.S_IFIFO, stat.S_IFSOCK):
            raise _unsafe(info.filename, "a device, fifo or socket")
        parts = _member_parts(info.filename)
        if parts:
            declared += info.file_size
            plan.append((parts, info.is_dir(), lambda info=info: zf.open(info)))
    return plan, declared


def _tar_plan(tf: tarfile.TarFile) -> tuple[_Plan, int]:
    plan: _Plan = []
    declared = 0
    for member in tf.getmembers():
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
    return plan, declared


def _bomb(archive: Path, size: int, max_bytes: int) -> DownloadError:
    return DownloadError(
        f"{archive} unpacks to more than the limit ({size:,} > {max_bytes:,} bytes).",
        "raise max_bytes if this size is expected (zip-bomb guard)",
    )


def extract_archive(archive: Path, target: Path, *, max_bytes: int = DEFAULT_MAX_BYTES) -> Path:
    """Safely extract a zip or tar archive into a new folder ``target``.

    The format is detected from the content (:func:`zipfile.is_zipfile`,
    :func:`tarfile.is_tarfile`): zip, tar, tar.gz/tgz, tar.bz2, tar.xz. Every entry is
    validated before anything is written, and the whole archive is refused if one entry
    has an absolute path, a drive letter or a ``..`` component, is a symbolic or hard link
    (tar, or a zip entry whose Unix mode marks a symlink), or is a device, fifo or socket.
    Files are unpacked into a temporary folder beside ``target`` which is renamed to
    ``target`` at the end; permissions, owners and times from the archive are not applied.

    Args:
        archive: The archive file.
        target: Folder to create; it must not exist or be empty.
        max_bytes: Limit on the total unpacked size in bytes, checked against both the
            declared sizes and the bytes actually written (zip-bomb guard).

    Returns:
        ``target``.

    Raises:
        UnsafeArchiveError: An entry could write outside ``target`` (nothing is written).
        DownloadError: Not a zip/tar archive, corrupt, encrypted, over ``max_bytes``, or
            ``target`` exists and is not empty.
    """
    archive, target = Path(archive), Path(target)
    if not archive.is_file():
        raise DownloadError(f"Archive not found: {archive}.")
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise DownloadError(f"Cannot extract into {target}: it exists and is not empty.",
                            "delete it or choose another folder")
    with contextlib.ExitStack() as stack:
        try:
            if zipfile.is_zipfile(archive):
                plan, declared = _zip_plan(stack.enter_context(zipfile.ZipFile(archive)))
            elif tarfile.is_tarfile(archive):
                plan, declared = _tar_plan(stack.enter_context(tarfile.open(archive, "r:*")))
            else:
                raise DownloadError(f"{archive} is not a zip or tar archive.",
                                    "give a .zip, .tar, .tar.gz, .tgz, .tar.bz2 or .tar.xz")
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError) as e:
            raise DownloadError(f"Cannot read archive {archive}: {e}.",
                                "the file is corrupt; delete it and download again") from e
        if declared > max_bytes:
            raise _bomb(archive, declared, max_bytes)
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".extracting",
                                    dir=target.parent))
        try:
            written = 0
            for parts, is_dir, open_member in plan:
                out = tmp.joinpath(*parts)
                if is_dir:
                    out.mkdir(parents=True, exist_ok=True)
                    continue
                out.parent.mkdir(parents=True, exist_ok=True)
                with open_member() as src, open(out, "wb") as dst:
                    while chunk := src.read(CHUNK_BYTES):
                        written += len(chunk)
                        if written > max_bytes:
                            raise _bomb(archive, written, max_bytes)
                        dst.write(chunk)
            if target.exists():
                target.rmdir()
            os.replace(tmp, target)
        except (zipfile.BadZipFile, tarfile.TarError, EOFError, zlib.error, OSError,
                RuntimeError) as e:
            shutil.rmtree(tmp, ignore_errors=True)
            raise DownloadError(f"Cannot extract {archive}: {e}.",
                                "the file is corrupt or encrypted; delete it and retry") from e
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


__all__ = ["ARCHIVE_SUFFIXES", "CHUNK_BYTES", "DEFAULT_MAX_BYTES", "extract_archive",
           "extract_with_record", "previous_extraction", "split_archive_name"]
