"""Make datasets available locally: catalogue installs and archives from any URL.

Standard library only except the two optional fetchers, ``kagglehub``
(``babyemo[kaggle]``) and ``gdown`` (``babyemo[gdrive]``), which are imported only when a
Kaggle or Google Drive dataset is fetched. A dataset is built in a temporary folder beside
its final folder and renamed into place, so a crash never leaves a half-installed dataset;
the install holds a lock beside that folder, so the temporary folders a killed install left
are deleted by the next one (:mod:`babyemo.leftovers`). A downloaded archive is kept
only once verified (its SHA-256, else :func:`~babyemo.data.sources.archives.check_archive`), and
``refresh=True`` downloads and installs again, replacing what was there.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import re
import shutil
import tarfile
import tempfile
import urllib.parse
import zipfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from babyemo import leftovers, paths
from babyemo.data.loading.folders import is_nonempty_dir, single_top_folder, visible_subdirs
from babyemo.data.sources import catalog
from babyemo.data.sources.archives import (
    ARCHIVE_SUFFIXES,
    CorruptArchiveError,
    check_archive,
    extract_archive,
    extract_with_record,
    previous_extraction,
    split_archive_name,
)
from babyemo.data.sources.arrange import arrange, count_images, find_dataset_root
from babyemo.data.sources.catalog import DatasetEntry
from babyemo.download import check_scheme, download_url, normalize_sha256
from babyemo.errors import (
    BabyEmoError,
    ConfigError,
    DataError,
    DownloadError,
    MissingDependencyError,
)
from babyemo.fs import sha256_file
from babyemo.progress import enabled as progress_enabled

logger = logging.getLogger(__name__)

_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")
_SOURCE_MARKER = ".babyemo-source.json"


@contextlib.contextmanager
def _staging(final: Path) -> Iterator[Path]:
    """A temporary folder beside ``final`` (same file system, so renames are atomic)."""
    final.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{final.name}.", suffix=".tmp",
                                     dir=final.parent, ignore_cleanup_errors=True) as work:
        yield Path(work)


def _publish(out: Path, final: Path) -> Path:
    """Rename the finished folder ``out`` to ``final``.

    An existing ``final`` (a refresh) is first moved into ``out``'s parent, the staging
    folder, which deletes it with itself; if the rename fails it is moved back.
    """
    previous = out.parent / ".previous"
    try:
        if final.is_dir() and not any(final.iterdir()):
            final.rmdir()
        elif final.is_dir():
            os.replace(final, previous)
        try:
            os.replace(out, final)
        except BaseException:
            if previous.is_dir() and not final.exists():
                os.replace(previous, final)
            raise
    except OSError as e:
        raise DownloadError(f"Cannot move the dataset into {final}: {e}.",
                            "delete the folder if it is a leftover and try again") from e
    return final


def _redo_hint(archive: Path, command: str) -> str:
    return (f"the cached download {archive} may be corrupt: run `{command} --refresh` to "
            "download it again (or delete that file)")


def _safe_filename(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._-")[:120]


def _require_https(url: str) -> None:
    parsed = urllib.parse.urlparse(url)
    loopback = parsed.scheme == "http" and parsed.hostname in _LOOPBACK_HOSTS
    if parsed.scheme != "https" and not loopback:
        raise DownloadError(f"Catalogue URL {url!r} is not https.",
                            "catalogue datasets are only downloaded over https")


def _download_entry_archive(entry: DatasetEntry, refresh: bool = False) -> Path:
    if not entry.url:
        raise DownloadError(f"Dataset '{entry.name}' has no download URL.")
    _require_https(entry.url)
    base = PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(entry.url).path)).name
    archive = paths.downloads_dir() / _safe_filename(f"{entry.name}-{base}")
    return download_url(entry.url, archive, sha256=entry.sha256, max_bytes=entry.max_bytes,
                        verify=check_archive, refresh=refresh)


def _install_archive(entry: DatasetEntry, archive: Path, final: Path,
                     redo_hint: str | None = None) -> Path:
    with _staging(final) as work:
        try:
            extracted = extract_archive(archive, work / "extracted")
        except CorruptArchiveError as e:
            if redo_hint is None:
                raise
            raise CorruptArchiveError(e.message, redo_hint) from e
        out = work / "out"
        arrange(entry, extracted, out)
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
    root = find_dataset_root(downloaded)
    with _staging(final) as work:
        # A copy, so kagglehub's own cache stays complete.
        shutil.copytree(root, work / "out")
        logger.info("%s: %d images from Kaggle", entry.name, count_images(work / "out"))
        return _publish(work / "out", final)


def _expand_archives(folder: Path) -> None:
    """Extract (safely) archives found in a folder that holds no images itself."""
    if count_images(folder):
        return
    for item in sorted(folder.rglob("*")):
        if item.is_file() and (zipfile.is_zipfile(item) or tarfile.is_tarfile(item)):
            name, suffix = split_archive_name(item.name)
            if not suffix and item.name.lower() in ARCHIVE_SUFFIXES:  # e.g. ".zip" alone
                name = ""
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
        os.replace(find_dataset_root(download), out)
        logger.info("%s: %d images from Google Drive", entry.name, count_images(out))
        return _publish(out, final)


def _install(entry: DatasetEntry, final: Path, refresh: bool = False) -> Path:
    if entry.kind == "kaggle":
        return _install_kaggle(entry, final)
    if entry.kind == "gdrive":
        return _install_gdrive(entry, final)
    try:
        archive = _download_entry_archive(entry, refresh)
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
    return _install_archive(entry, archive, final,
                            _redo_hint(archive, f"babyemo data download {entry.name}"))


def _from_source(entry: DatasetEntry, source: Path, final: Path) -> Path:
    if source.is_dir():
        if not visible_subdirs(source):
            raise DataError(f"--source {source} has no class or split folders.",
                            "expected <class>/<image> or train/ val/ test/ of class folders")
        logger.info("Using %s in place (--source)", source)
        return source
    if source.is_file():  # a hand-downloaded archive of the dataset
        if is_nonempty_dir(final):
            logger.info("%s is already installed in %s", entry.name, final)
            return final
        with leftovers.writing(final):
            if is_nonempty_dir(final):  # installed meanwhile by another process
                return final
            return _install_archive(entry, source, final)
    raise DataError(f"--source {source} does not exist.",
                    "give a folder of class folders or the dataset's archive")


def fetch_dataset(name: str, *, dest: Path | None = None, source: Path | None = None,
                  refresh: bool = False) -> Path:
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
       built in a temporary folder beside ``<dest>/<name>`` and renamed into place,
       under a lock (``.<name>.lock``) that lets the next install delete the temporary
       folders of a killed one. The downloaded archive (kept in
       :func:`babyemo.paths.downloads_dir`) is checked against the entry's SHA-256, or
       when it has none read whole (:func:`~babyemo.data.sources.archives.check_archive`), after
       the download and before it is used again.

    Args:
        name: Catalogue name (see :func:`babyemo.data.sources.catalog.list_datasets`).
        dest: Parent folder of installed datasets (default ``datasets_dir()``).
        source: A local copy folder or archive (``--source PATH``).
        refresh: Download the archive again (not resuming a ``.part``) and reinstall,
            replacing ``<dest>/<name>`` once the new copy is complete (3. is skipped).

    Returns:
        The dataset folder.

    Raises:
        RegistryError: Unknown ``name`` (with close-match suggestions).
        ConfigError: ``refresh`` with ``source``, or with a copy in ``BABYEMO_DATASETS``
            (those are used in place, never downloaded).
        DataError: ``source`` missing or without class/split folders.
        MissingDependencyError: kagglehub or gdown is needed but not installed.
        DownloadError: Download, checksum or archive-layout failure; the hint mentions
            ``BABYEMO_DATASETS`` when it is set but lacks ``<name>``; when the cached
            archive cannot be extracted, the hint names it and ``--refresh``.
        UnsafeArchiveError: The archive has an entry that could escape its folder.
    """
    entry = catalog.get_dataset(name)
    final = (Path(dest).expanduser() if dest is not None else paths.datasets_dir()) / name
    if source is not None:
        if refresh:
            raise ConfigError("--refresh downloads the dataset again; it does not go with "
                              f"--source {source}.", "drop --refresh or --source")
        return _from_source(entry, Path(source).expanduser(), final)
    local = paths.local_datasets_dir()
    if local is not None:
        if (local / name).is_dir():
            if refresh:
                raise ConfigError(
                    f"{name} is used in place from BABYEMO_DATASETS={local}; --refresh "
                    "does not apply to it.", "unset BABYEMO_DATASETS to download into the "
                    "babyemo home, or update that copy yourself")
            logger.info("Using %s in place (BABYEMO_DATASETS)", local / name)
            return local / name
        logger.info("BABYEMO_DATASETS=%s has no %s folder; using the cache or downloading",
                    local, name)
    if is_nonempty_dir(final) and not refresh:
        logger.info("%s is already installed in %s", name, final)
        return final
    try:
        with leftovers.writing(final):
            if is_nonempty_dir(final) and not refresh:
                logger.info("%s was installed meanwhile by another process", name)
                return final
            return _install(entry, final, refresh)
    except DownloadError as e:
        if local is None:
            raise
        raise type(e)(e.message, f"{e.hint + '; ' if e.hint else ''}BABYEMO_DATASETS={local} "
                                 f"has no '{name}' folder") from e


def _extraction_matches(url: str, target: Path, archive: Path, expected: str | None,
                        log: bool = True) -> dict | None:
    """Whether the folder that an earlier call extracted from ``url`` can be reused.

    Returns:
        ``None`` when nothing was extracted into ``target`` yet; ``{}`` when ``expected``
        is given and the stored archive (hashed every time) or the archive the folder was
        extracted from does not match it (the archive is then downloaded again and the
        folder replaced); otherwise the record (reuse the folder).

    Raises:
        DownloadError: ``target`` was made from another URL.
    """
    recorded = previous_extraction(target, _SOURCE_MARKER)
    if recorded is None:
        return None
    if recorded.get("url") != url:
        raise DownloadError(f"{target} already exists and was not made from {url}.",
                            "delete that folder or pass another --dest")
    if expected is None:
        return recorded
    extracted_from = recorded.get("archive_sha256") or recorded.get("sha256")
    stored = sha256_file(archive) if archive.is_file() else None
    if stored is None and extracted_from == expected:
        return recorded  # the archive was deleted to save space; the folder is right
    if stored == expected and extracted_from in (None, expected):
        return recorded
    if log:
        logger.warning("%s does not match --sha256 %s (the stored archive's sha256 is %s, "
                       "the folder was extracted from %s); downloading %s again", target,
                       expected, stored or "unknown: it was deleted",
                       extracted_from or "an unknown one", url)
    return {}


def fetch_url_dataset(url: str, *, sha256: str | None = None, dest: Path | None = None,
                      refresh: bool = False) -> Path:
    """Download a zip or tar archive from any URL and extract it as a dataset.

    The archive is saved in :func:`babyemo.paths.downloads_dir` as
    ``<stem>-<8 hex of the URL's SHA-256><suffix>`` (the stem is the URL's sanitised file
    name without archive suffix), kept only once verified (its SHA-256 when ``sha256`` is
    given, else :func:`~babyemo.data.sources.archives.check_archive`: a whole, readable archive,
    not an error page), and extracted with :func:`~babyemo.data.sources.archives.extract_archive`
    into ``<dest>/<stem>``. A hidden ``.babyemo-source.json`` beside the contents records
    the URL and the archive's SHA-256. A second call with the same URL reuses the folder
    without network access; with ``sha256``, only after checking the stored archive (and
    the record) against it, every time: on a mismatch the archive is downloaded again
    and the folder replaced.

    Args:
        url: ``https://``, ``http://`` or ``file://`` URL of a zip/tar archive.
        sha256: Expected SHA-256 of the archive (64 hex digits, any case), or ``None``.
        dest: Parent folder (default :func:`babyemo.paths.datasets_dir`).
        refresh: Download the archive again (not resuming a ``.part``) and extract it
            anew, replacing the folder once the new copy is complete.

    Returns:
        The extracted folder, or its single top-level folder if the archive has one.

    Raises:
        ConfigError: ``sha256`` is not 64 hex digits (before any network or disk access).
        DownloadError: Download, checksum or format failure, or ``<dest>/<stem>`` exists
            but was made from another URL; when the cached archive cannot be extracted,
            the hint names it and ``--refresh``.
        UnsafeArchiveError: An entry could escape the extraction folder.
    """
    expected = normalize_sha256(sha256)
    check_scheme(url)
    stem, suffix = split_archive_name(
        PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name)
    stem, suffix = _safe_filename(stem) or "download", suffix.lower()
    url_id = hashlib.sha256(url.encode("utf-8")).hexdigest()[:8]
    target = (Path(dest).expanduser() if dest is not None else paths.datasets_dir()) / stem
    archive = paths.downloads_dir() / f"{stem}-{url_id}{suffix}"
    if not refresh and _extraction_matches(url, target, archive, expected, log=False):
        logger.info("Using %s (already extracted from %s)", target, url)
        return single_top_folder(target)
    with leftovers.writing(target):
        recorded = _extraction_matches(url, target, archive, expected)  # again, locked
        if recorded and not refresh:  # extracted meanwhile by another process
            return single_top_folder(target)
        got = download_url(url, archive, sha256=expected, verify=check_archive,
                           refresh=refresh)
        record = {"url": url, "sha256": expected, "archive": got.name,
                  "archive_sha256": expected or sha256_file(got)}
        try:
            if recorded is None:
                return extract_with_record(got, target, _SOURCE_MARKER, record)
            with _staging(target) as work:
                extract_with_record(got, work / "new", _SOURCE_MARKER, record)
                _publish(work / "new", target)
            return single_top_folder(target)
        except CorruptArchiveError as e:
            raise CorruptArchiveError(e.message, _redo_hint(
                got, f"babyemo data download --url {url}")) from e


__all__ = ["fetch_dataset", "fetch_url_dataset"]
