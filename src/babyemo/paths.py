"""Where babyemo keeps its files (platformdirs; ``BABYEMO_HOME`` overrides).

Layout under the home folder::

    downloads/     archives as downloaded (``.part`` while in flight)
    datasets/      extracted catalogue datasets, one folder per name
    prepared/      prepared datasets: ``<name>/manifest.csv`` + ``dataset.json``
    models.json    the trained-model registry
    state.json     small state, e.g. the last prepared dataset

Environment variables:
    BABYEMO_HOME: the home folder itself.
    BABYEMO_DATASETS: a folder holding local copies ``<name>/`` of catalogue datasets,
        used instead of downloading them.
    BABYEMO_MODELS: a folder holding model files (e.g. face detectors) used instead of
        downloading them.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from babyemo.fs import read_json_object, update_json_object


def home() -> Path:
    """The babyemo home folder (created if missing)."""
    env = os.environ.get("BABYEMO_HOME")
    if env:
        path = Path(env).expanduser()
    else:
        import platformdirs

        path = Path(platformdirs.user_data_dir("babyemo", appauthor=False))
    path.mkdir(parents=True, exist_ok=True)
    return path


def _sub(name: str) -> Path:
    path = home() / name
    path.mkdir(parents=True, exist_ok=True)
    return path


def downloads_dir() -> Path:
    """Folder of downloaded archives."""
    return _sub("downloads")


def datasets_dir() -> Path:
    """Folder of extracted catalogue datasets."""
    return _sub("datasets")


def prepared_dir() -> Path:
    """Default parent folder of prepared datasets (manifests)."""
    return _sub("prepared")


def models_cache_dir() -> Path:
    """Folder of downloaded model files (weights, face detectors)."""
    return _sub("models")


def image_cache_dir() -> Path:
    """Folder of decoded, resized images cached by ``babyemo train --cache disk``."""
    return _sub("cache") / "images"


def local_datasets_dir() -> Path | None:
    """``BABYEMO_DATASETS`` as a path, or ``None`` when unset."""
    env = os.environ.get("BABYEMO_DATASETS")
    return Path(env).expanduser() if env else None


def local_models_dir() -> Path | None:
    """``BABYEMO_MODELS`` as a path, or ``None`` when unset."""
    env = os.environ.get("BABYEMO_MODELS")
    return Path(env).expanduser() if env else None


def _state_file() -> Path:
    return home() / "state.json"


def read_state() -> dict[str, Any]:
    """The small persistent state of this home (``{}`` when there is none).

    Raises:
        StateError: ``state.json`` exists but is not a JSON object.
    """
    return read_json_object(_state_file())


def update_state(**values: Any) -> None:
    """Merge ``values`` into the persistent state: under a lock, atomically, keeping the
    keys other processes wrote meanwhile (see :func:`babyemo.fs.update_json_object`).

    Raises:
        StateError: ``state.json`` is corrupt (left as it is) or locked too long.
    """
    update_json_object(_state_file(), lambda state: state.update(values))
