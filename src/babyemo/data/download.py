"""Fetch datasets: the documented entry points, re-exported from where they live.

- :func:`download_url`: resumable downloads, kept only once verified (checksum, or a check
  such as :func:`babyemo.data.archives.check_archive`), with a minimum rate
  (:mod:`babyemo.data.http_download`).
- :func:`extract_archive`: safe zip/tar extraction with zip-bomb limits
  (:mod:`babyemo.data.archives`).
- :func:`fetch_dataset` and :func:`fetch_url_dataset`: catalogue datasets and archives
  from any URL, made available as local dataset folders (:mod:`babyemo.data.fetch`).
"""

from __future__ import annotations

from babyemo.data.archives import extract_archive
from babyemo.data.fetch import fetch_dataset, fetch_url_dataset
from babyemo.data.http_download import download_url

__all__ = ["download_url", "extract_archive", "fetch_dataset", "fetch_url_dataset"]
