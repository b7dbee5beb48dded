"""Fetch datasets: resumable checked downloads, safe archive extraction, catalogue installs.

Everything here is standard library (``urllib``, ``zipfile``, ``tarfile``) except the two
optional fetchers, ``kagglehub`` (``babyemo[kaggle]``) and ``gdown`` (``babyemo[gdrive]``),
which are imported only when a Kaggle or Google Drive dataset is fetched.

Nothing appears under a final name until it is complete: downloads stream into
``<name>.part`` (kept for resuming after a network error) and are renamed when done and
verified; archives are extracted into a temporary folder beside the target and renamed
into place, so a crash never leaves a half-extracted dataset.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import re
import shutil
import stat
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path, PurePosixPath
from typing import IO, Any

from babyemo import __version__, paths
from babyemo.data import catalog
from babyemo.data.catalog import DatasetEntry
from babyemo.data.images import is_candidate
from babyemo.errors import (
    BabyEmoError,
    ConfigError,
    DataError,
    DownloadError,
    MissingDependencyError,
    UnsafeArchiveError,
)
from babyemo.io import atomic_write_text
from babyemo.progress import enabled as progress_enabled
from babyemo.progress import progress_bar

__all__ = ["download_url", "extract_archive", "fetch_dataset", "fetch_url_dataset",
           "DEFAULT_MAX_BYTES", "SPLIT_NAMES"]

logger = logging.getLogger(__name__)

DEFAULT_MAX_BYTES = 20 * 2**30
"""Default limit (20 GiB) for one download and for the unpacked size of one archive."""

SPLIT_NAMES = ("train", "val", "validation", "test")
"""Folder names recognised as splits inside a dataset folder."""

_CHUNK = 1 << 20
_SCHEMES = ("http", "https", "file")
_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
_ARCHIVE_SUFFIXES = (".tar.gz", ".tar.bz2", ".tar.xz", ".tgz", ".tbz2", ".txz", ".tar", ".zip")
_SOURCE_MARKER = ".babyemo-source.json"
_OFFLINE_HINT = ("check the network connection and try again (a partial download resumes); "
                 "offline? put a local copy under BABYEMO_DATASETS=DIR/<name> or pass "
                 "--source PATH")


# --------------------------------------------------------------------------- download


def _check_scheme(url: str) -> str:
    scheme = urllib.parse.urlparse(url).scheme.lower()
    if scheme not in _SCHEMES:
        raise DownloadError(
            f"Unsupported URL scheme '{scheme or '(none)'}' in {url!r}.",
            "use an https://, http:// or file:// URL, or a local folder with --source PATH",
        )
    return scheme


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


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
                while chunk := response.read(_CHUNK):
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
    is renamed to ``dest`` only when complete and verified.

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
    scheme = _check_scheme(url)
    expected = sha256.strip().lower() if sha256 else None
    if expected is not None and not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ConfigError(f"Invalid sha256 {sha256!r}.", "give 64 hexadecimal digits")
    if dest.is_file():
        if expected is None or _sha256_file(dest) == expected:
            logger.info("Using already downloaded %s", dest)
            return dest
        logger.warning("%s does not match the expected SHA-256; downloading it again", dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    _stream_to_part(url, part, scheme, max_bytes, timeout, f"Downloading {dest.name}")
    if expected is not None:
        got = _sha256_file(part)
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


# --------------------------------------------------------------------------- extraction


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
                    while chunk := src.read(_CHUNK):
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


# --------------------------------------------------------------------------- layouts


def _visible_dirs(folder: Path) -> list[Path]:
    return sorted(d for d in folder.iterdir()
                  if d.is_dir() and not d.name.startswith(".") and d.name != "__MACOSX")


def _find_dataset_root(folder: Path) -> Path:
    """Descend through single wrapper folders until split or class folders appear."""
    current = folder
    while True:
        subdirs = _visible_dirs(current)
        if any(d.name.lower() in SPLIT_NAMES for d in subdirs):
            return current
        has_images = any(f.is_file() and is_candidate(f) for f in current.iterdir())
        if len(subdirs) == 1 and not has_images:
            current = subdirs[0]
            continue
        return current


def _find_in_archive(extracted: Path, relative: str) -> Path:
    """``relative`` at the top of the archive or inside its single top-level folder."""
    for base in [extracted, *_visible_dirs(extracted)]:
        if (base / relative).exists():
            return base / relative
    raise DownloadError(f"The archive has no {relative} (its layout changed?).",
                        "download it by hand and pass a folder of class folders with --source")


def _count_images(folder: Path) -> int:
    return sum(1 for p in folder.rglob("*") if p.is_file() and is_candidate(p))


def _layout_infant_emotions(entry: DatasetEntry, extracted: Path, out: Path) -> None:
    """``data/baby_emotion_samples/`` + JSON labels -> ``out/<class>/<image>``."""
    labels_file = _find_in_archive(extracted, "data/baby_emotion_samples.json")
    images_dir = labels_file.parent / "baby_emotion_samples"
    try:
        rows = json.loads(labels_file.read_text(encoding="utf-8"))["labels"]
        if not isinstance(rows, list):
            raise TypeError("'labels' is not a list")
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DownloadError(f"Cannot read the labels file {labels_file.name}: {e!r}.",
                            "the archive layout changed; use --source with class folders") from e
    classes = entry.classes
    for cls in classes:
        (out / cls).mkdir(parents=True, exist_ok=True)
    placed: dict[str, str] = {}
    counts: Counter[str] = Counter()
    missing: list[str] = []
    bad_rows = conflicts = 0
    for row in rows:
        ok = (isinstance(row, (list, tuple)) and len(row) == 2 and isinstance(row[0], str)
              and isinstance(row[1], int) and not isinstance(row[1], bool)
              and 0 <= row[1] < len(classes))
        file_name = PurePosixPath(row[0].replace("\\", "/")).name if ok else ""
        if not file_name or file_name in (".", ".."):
            bad_rows += 1
            continue
        cls = classes[row[1]]
        if file_name in placed:
            if placed[file_name] != cls:
                conflicts += 1
                logger.warning("%s is listed as %s and as %s; kept as %s",
                               file_name, placed[file_name], cls, placed[file_name])
            continue
        source = images_dir / file_name
        if not source.is_file():
            missing.append(file_name)
            continue
        os.replace(source, out / cls / file_name)
        placed[file_name] = cls
        counts[cls] += 1
    unlisted = sorted(p.name for p in images_dir.iterdir() if p.is_file() and is_candidate(p)) \
        if images_dir.is_dir() else []
    if missing:
        logger.warning("%d images listed in %s are missing from the archive, e.g. %s",
                       len(missing), labels_file.name, ", ".join(missing[:3]))
    if unlisted:
        logger.warning("%d images in the archive are not in %s and were left out, e.g. %s",
                       len(unlisted), labels_file.name, ", ".join(unlisted[:3]))
    if bad_rows:
        logger.warning("%d malformed rows in %s were skipped", bad_rows, labels_file.name)
    if not counts:
        raise DownloadError(f"No labelled images found in the {entry.name} archive.",
                            "the archive layout changed; use --source with class folders")
    logger.info("%s: %d images (%s); %d listed but missing, %d unlisted, %d conflicting",
                entry.name, sum(counts.values()),
                ", ".join(f"{c} {counts[c]}" for c in classes),
                len(missing), len(unlisted), conflicts)


def _layout_fer2013(entry: DatasetEntry, extracted: Path, out: Path) -> None:
    """``data/train`` and ``data/test`` of the archive -> ``out/train``, ``out/test``."""
    data = _find_in_archive(extracted, "data")
    train, test = data / "train", data / "test"
    if not (train.is_dir() and test.is_dir()):
        raise DownloadError(f"The {entry.name} archive has no data/train and data/test.",
                            "the archive layout changed; use --source with train/ and test/")
    out.mkdir(parents=True, exist_ok=True)
    os.replace(train, out / "train")
    os.replace(test, out / "test")
    found = tuple(d.name for d in _visible_dirs(out / "train"))
    if set(found) != set(entry.classes):
        logger.warning("%s: expected classes %s, found %s", entry.name, entry.classes, found)
    logger.info("%s: %d train and %d test images", entry.name,
                _count_images(out / "train"), _count_images(out / "test"))


def _layout_generic(entry: DatasetEntry, extracted: Path, out: Path) -> None:
    os.replace(_find_dataset_root(extracted), out)


_LAYOUTS: dict[str, Callable[[DatasetEntry, Path, Path], None]] = {
    "infant-emotions": _layout_infant_emotions,
    "fer2013": _layout_fer2013,
}


# --------------------------------------------------------------------------- installers


@contextlib.contextmanager
def _staging(final: Path) -> Iterator[Path]:
    """A temporary folder beside ``final`` (same file system, so renames are atomic)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{final.name}.", suffix=".tmp",
                                     dir=final.parent, ignore_cleanup_errors=True) as work:
        yield Path(work)


def _publish(out: Path, final: Path) -> Path:
    """Rename the finished folder ``out`` to ``final`` (an empty ``final`` is replaced)."""
    try:
        if final.is_dir() and not any(final.iterdir()):
            final.rmdir()
        os.replace(out, final)
    except OSError as e:
        raise DownloadError(f"Cannot move the dataset into {final}: {e}.",
                            "delete the folder if it is a leftover and try again") from e
    return final


def _is_nonempty_dir(path: Path) -> bool:
    return path.is_dir() and any(path.iterdir())


def _safe_filename(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:120]


def _require_https(url: str) -> None:
    parsed = urllib.parse.urlparse(url)
    loopback = parsed.scheme == "http" and parsed.hostname in _LOOPBACK_HOSTS
    if parsed.scheme != "https" and not loopback:
        raise DownloadError(f"Catalogue URL {url!r} is not https.",
                            "catalogue datasets are only downloaded over https")


def _download_entry_archive(entry: DatasetEntry) -> Path:
    if not entry.url:
        raise DownloadError(f"Dataset '{entry.name}' has no download URL.")
    _require_https(entry.url)
    base = PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(entry.url).path)).name
    archive = paths.downloads_dir() / _safe_filename(f"{entry.name}-{base}")
    return download_url(entry.url, archive, sha256=entry.sha256)


def _install_archive(entry: DatasetEntry, archive: Path, final: Path) -> Path:
    with _staging(final) as work:
        extracted = extract_archive(archive, work / "extracted")
        out = work / "out"
        _LAYOUTS.get(entry.name, _layout_generic)(entry, extracted, out)
        return _publish(out, final)


def _install_kaggle(entry: DatasetEntry, final: Path) -> Path:
    try:
        import kagglehub
    except ImportError as e:
        raise MissingDependencyError("kagglehub", "kaggle",
                                     f"Downloading '{entry.name}' from Kaggle") from e
    try:
        downloaded = Path(kagglehub.dataset_download(entry.kaggle_handle))
    except Exception as e:  # kagglehub raises many unrelated types (HTTP, auth, IO)
        raise DownloadError(
            f"Kaggle download of {entry.kaggle_handle} failed: {e}.",
            "Kaggle needs your API token (kagglehub.login(), KAGGLE_USERNAME/KAGGLE_KEY or "
            "~/.kaggle/kaggle.json) and a network; offline? use BABYEMO_DATASETS=DIR or "
            "--source PATH",
        ) from e
    root = _find_dataset_root(downloaded)
    with _staging(final) as work:
        # A copy, so kagglehub's own cache stays complete.
        shutil.copytree(root, work / "out")
        logger.info("%s: %d images from Kaggle", entry.name, _count_images(work / "out"))
        return _publish(work / "out", final)


def _expand_archives(folder: Path) -> None:
    """Extract (safely) archives found in a folder that holds no images itself."""
    if _count_images(folder):
        return
    for item in sorted(folder.rglob("*")):
        if item.is_file() and (zipfile.is_zipfile(item) or tarfile.is_tarfile(item)):
            name = item.name
            for suffix in _ARCHIVE_SUFFIXES:
                if name.lower().endswith(suffix):
                    name = name[: -len(suffix)]
                    break
            extract_archive(item, item.with_name(name or "extracted"))
            item.unlink()


def _install_gdrive(entry: DatasetEntry, final: Path) -> Path:
    try:
        import gdown
    except ImportError as e:
        raise MissingDependencyError("gdown", "gdrive",
                                     f"Downloading '{entry.name}' from Google Drive") from e
    hint = ("gdown fetches at most 50 files per Drive folder and Drive has daily quotas; "
            "download the folder in a browser and pass it with --source PATH")
    with _staging(final) as work:
        download = work / "download"
        try:
            files = gdown.download_folder(id=entry.gdrive_folder, output=str(download),
                                          quiet=not progress_enabled())
        except Exception as e:  # gdown raises its own and requests' exception types
            raise DownloadError(f"Google Drive download of '{entry.name}' failed: {e}.",
                                hint) from e
        if not files or not download.is_dir():
            raise DownloadError(f"Google Drive download of '{entry.name}' returned no files.",
                                hint)
        _expand_archives(download)
        out = work / "out"
        os.replace(_find_dataset_root(download), out)
        logger.info("%s: %d images from Google Drive", entry.name, _count_images(out))
        return _publish(out, final)


def _install(entry: DatasetEntry, final: Path) -> Path:
    if entry.kind == "kaggle":
        return _install_kaggle(entry, final)
    if entry.kind == "gdrive":
        return _install_gdrive(entry, final)
    try:
        archive = _download_entry_archive(entry)
    except DownloadError as error:
        if not entry.kaggle_handle:
            raise
        try:
            import kagglehub  # noqa: F401
        except ImportError:
            raise error from None
        logger.warning("Download from %s failed (%s); trying Kaggle %s",
                       entry.url, error.message, entry.kaggle_handle)
        try:
            return _install_kaggle(entry, final)
        except BabyEmoError as kaggle_error:
            raise DownloadError(error.message,
                                f"{error.hint}; the Kaggle alternative failed too: "
                                f"{kaggle_error.message}") from kaggle_error
    return _install_archive(entry, archive, final)


def _from_source(entry: DatasetEntry, source: Path, final: Path) -> Path:
    if source.is_dir():
        if not _visible_dirs(source):
            raise DataError(f"--source {source} has no class or split folders.",
                            "expected <class>/<image> or train/ val/ test/ of class folders")
        logger.info("Using %s in place (--source)", source)
        return source
    if source.is_file():  # a hand-downloaded archive of the dataset
        if _is_nonempty_dir(final):
            logger.info("%s is already installed in %s", entry.name, final)
            return final
        return _install_archive(entry, source, final)
    raise DataError(f"--source {source} does not exist.",
                    "give a folder of class folders or the dataset's archive")


def fetch_dataset(name: str, *, dest: Path | None = None, source: Path | None = None) -> Path:
    """Make the catalogue dataset ``name`` available locally and return its folder.

    The folder is laid out as a babyemo dataset: ``<class>/<image>`` (ImageFolder), or
    ``train/``, ``val/`` or ``validation/``, ``test/`` each holding class folders.

    Order of precedence:

    1. ``source``: a local copy folder, used in place; or the dataset's archive file,
       installed into ``<dest>/<name>``.
    2. ``$BABYEMO_DATASETS/<name>`` when that variable is set and the folder exists,
       used in place (never copied).
    3. An existing non-empty ``<dest>/<name>`` (default ``dest``:
       :func:`babyemo.paths.datasets_dir`).
    4. A download: the GitHub archive (``infant-emotions`` is rearranged from its JSON
       labels into class folders; ``fer2013`` takes ``data/train`` and ``data/test``,
       falling back to Kaggle when the download fails and kagglehub is installed),
       kagglehub for Kaggle entries, gdown for Google Drive entries. The result is
       built in a temporary folder beside ``<dest>/<name>`` and renamed into place.

    Args:
        name: Catalogue name (see :func:`babyemo.data.catalog.list_datasets`).
        dest: Parent folder of installed datasets (default ``datasets_dir()``).
        source: A local copy folder or archive (``--source PATH``).

    Returns:
        The dataset folder.

    Raises:
        RegistryError: Unknown ``name`` (with close-match suggestions).
        DataError: ``source`` missing or without class/split folders.
        MissingDependencyError: kagglehub or gdown is needed but not installed.
        DownloadError: Download, checksum or archive-layout failure; the hint mentions
            ``BABYEMO_DATASETS`` when it is set but lacks ``<name>``.
        UnsafeArchiveError: The archive has an entry that could escape its folder.
    """
    entry = catalog.get_dataset(name)
    final = (Path(dest).expanduser() if dest is not None else paths.datasets_dir()) / name
    if source is not None:
        return _from_source(entry, Path(source).expanduser(), final)
    local = paths.local_datasets_dir()
    if local is not None:
        if (local / name).is_dir():
            logger.info("Using %s in place (BABYEMO_DATASETS)", local / name)
            return local / name
        logger.info("BABYEMO_DATASETS=%s has no %s folder; using the cache or downloading",
                    local, name)
    if _is_nonempty_dir(final):
        logger.info("%s is already installed in %s", name, final)
        return final
    try:
        return _install(entry, final)
    except DownloadError as e:
        if local is None:
            raise
        raise type(e)(e.message, f"{e.hint + '; ' if e.hint else ''}BABYEMO_DATASETS={local} "
                                 f"has no '{name}' folder") from e


# --------------------------------------------------------------------------- any URL


def _archive_stem(file_name: str) -> tuple[str, str]:
    lower = file_name.lower()
    for suffix in _ARCHIVE_SUFFIXES:
        if lower.endswith(suffix) and len(file_name) > len(suffix):
            return file_name[: -len(suffix)], file_name[-len(suffix):]
    return file_name, ""


def _single_top_folder(target: Path) -> Path:
    entries = [p for p in target.iterdir() if not p.name.startswith(".") and p.name != "__MACOSX"]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return target


def fetch_url_dataset(url: str, *, sha256: str | None = None, dest: Path | None = None) -> Path:
    """Download a zip or tar archive from any URL and extract it as a dataset.

    The archive is saved in :func:`babyemo.paths.downloads_dir` as
    ``<stem>-<8 hex of the URL's SHA-256><suffix>`` (the stem is the URL's sanitised file
    name without archive suffix) and extracted with :func:`extract_archive` into
    ``<dest>/<stem>``. A hidden ``.babyemo-source.json`` beside the contents records the URL,
    so a second call with the same URL reuses the folder without network access.

    Args:
        url: ``https://``, ``http://`` or ``file://`` URL of a zip/tar archive.
        sha256: Expected SHA-256 of the archive, or ``None``.
        dest: Parent folder (default :func:`babyemo.paths.datasets_dir`).

    Returns:
        The extracted folder, or its single top-level folder if the archive has one.

    Raises:
        DownloadError: Download, checksum or format failure, or ``<dest>/<stem>`` exists
            but was made from another URL.
        UnsafeArchiveError: An entry could escape the extraction folder.
    """
    _check_scheme(url)
    stem, suffix = _archive_stem(
        PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name)
    stem, suffix = _safe_filename(stem) or "download", suffix.lower()
    url_id = hashlib.sha256(url.encode("utf-8")).hexdigest()[:8]
    target = (Path(dest).expanduser() if dest is not None else paths.datasets_dir()) / stem
    marker = target / _SOURCE_MARKER
    if _is_nonempty_dir(target):
        try:
            recorded = json.loads(marker.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            recorded = {}
        if recorded.get("url") != url:
            raise DownloadError(f"{target} already exists and was not made from {url}.",
                                "delete that folder or pass another --dest")
        logger.info("Using %s (already extracted from %s)", target, url)
        return _single_top_folder(target)
    archive = download_url(url, paths.downloads_dir() / f"{stem}-{url_id}{suffix}",
                           sha256=sha256)
    extract_archive(archive, target)
    atomic_write_text(marker, json.dumps({"url": url, "sha256": sha256,
                                          "archive": archive.name}, indent=2))
    return _single_top_folder(target)
