"""Sources: where datasets come from (:mod:`~.catalog` of known datasets, :mod:`~.resolve`
of what a user names, :mod:`~.fetch` and :mod:`~.archives` to get and unpack them,
:mod:`~.arrange` to lay them out). The documented entry points are re-exported here,
imported on first use (importing :mod:`~.catalog` stays light):

- :func:`download_url`: resumable downloads, kept only once verified (checksum, or a check
  such as :func:`babyemo.data.sources.archives.check_archive`), with a minimum rate
  (:mod:`babyemo.download`).
- :func:`extract_archive`: safe zip/tar extraction with zip-bomb limits
  (:mod:`babyemo.data.sources.archives`).
- :func:`fetch_dataset` and :func:`fetch_url_dataset`: catalogue datasets and archives
  from any URL, made available as local dataset folders (:mod:`babyemo.data.sources.fetch`).
"""

from __future__ import annotations

import importlib
from typing import Any

_WHERE = {"download_url": "babyemo.download",
          "extract_archive": "babyemo.data.sources.archives",
          "fetch_dataset": "babyemo.data.sources.fetch",
          "fetch_url_dataset": "babyemo.data.sources.fetch"}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        return getattr(importlib.import_module(_WHERE[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["download_url", "extract_archive", "fetch_dataset", "fetch_url_dataset"]
