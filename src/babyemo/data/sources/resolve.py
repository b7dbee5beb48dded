"""Turn what the user names as a dataset into a local folder.

A catalogue name, a folder, a ``.zip``/``.tar*`` archive or an ``http(s)://`` URL; archives
are extracted once into :func:`babyemo.paths.datasets_dir`.
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

from babyemo import paths
from babyemo.data.loading.folders import single_top_folder
from babyemo.data.sources.archives import (
    extract_with_record,
    previous_extraction,
    split_archive_name,
)
from babyemo.errors import DataError

logger = logging.getLogger(__name__)

DEFAULT_SOURCE = "infant-emotions"
"""The dataset ``prepare()`` uses when no source is given."""

_ARCHIVE_MARKER = ".babyemo-archive.json"


def _safe_name(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip(".-_") or "dataset"


def _extract(archive: Path, name: str) -> Path:
    """Extract ``archive`` once into ``datasets_dir() / name`` (reused while it matches)."""
    target = paths.datasets_dir() / name
    stat = archive.stat()
    record = {"archive": str(archive.resolve()), "size": stat.st_size}
    previous = previous_extraction(target, _ARCHIVE_MARKER)
    if previous is not None:
        if previous != record:
            raise DataError(f"{target} already exists and was not extracted from {archive}.",
                            "delete that folder, or prepare the extracted folder directly")
        logger.info("Using %s (already extracted from %s)", target, archive)
        return single_top_folder(target)
    return extract_with_record(archive, target, _ARCHIVE_MARKER, record)


def resolve_source(source: str | os.PathLike[str] | None) -> tuple[Path, str, str]:
    """Turn what the user gave into a local folder.

    Order: ``None`` → :data:`DEFAULT_SOURCE`; an ``http(s)://`` (or ``file://``) URL →
    :func:`babyemo.data.sources.fetch.fetch_url_dataset`; an existing folder → used in place; an
    existing ``.zip``/``.tar*`` file → extracted into ``datasets_dir()/<stem>``; otherwise a
    catalogue name → :func:`babyemo.data.sources.fetch.fetch_dataset`. An archive whose only
    top-level entry is a folder yields that folder.

    Returns:
        ``(folder, default_name, source_text)``.

    Raises:
        DataError: Neither an existing path, a URL nor a catalogue name.
        DownloadError: Fetching or extracting failed.
    """
    text = DEFAULT_SOURCE if source is None else str(source)
    if re.match(r"^(https?|file)://", text, flags=re.IGNORECASE):
        from babyemo.data.sources import fetch

        folder = fetch.fetch_url_dataset(text)
        return folder, _safe_name(folder.name), text
    path = Path(text).expanduser()
    if path.is_dir():
        return path, _safe_name(path.resolve().name), str(path.resolve())
    if path.is_file():
        stem, suffix = split_archive_name(path.name)
        if not suffix:
            raise DataError(f"{path} is a file but not a .zip or .tar archive.",
                            "give a folder of class folders, an archive, a URL or a "
                            "catalogue name")
        name = _safe_name(stem)
        return _extract(path, name), name, str(path.resolve())
    if os.sep in text or "/" in text or text.startswith((".", "~")):
        raise DataError(f"No such file or folder: {path}.",
                        "give a folder of class folders, a .zip/.tar archive, an http(s) URL "
                        "or a catalogue name")
    from babyemo.data.sources import catalog

    if text in catalog.CATALOG:
        from babyemo.data.sources import fetch

        return fetch.fetch_dataset(text), text, text
    import difflib

    close = difflib.get_close_matches(text, list(catalog.CATALOG), n=2, cutoff=0.6)
    hint = (f"did you mean {' or '.join(close)}?" if close else
            "give an existing folder, a .zip/.tar archive, an http(s) URL or a catalogue "
            f"name ({', '.join(catalog.CATALOG)})")
    raise DataError(f"Dataset source not found: {text!r}.", hint)


__all__ = ["DEFAULT_SOURCE", "resolve_source"]
