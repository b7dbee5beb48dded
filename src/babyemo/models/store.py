"""The trained-model registry: names of trained checkpoints, kept in ``models.json``.

``babyemo train`` records every run (``--name`` or the run folder's name); ``--model NAME``
works wherever ``--checkpoint PATH`` does. Without either, the default model is used:
the most recently trained one.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import Any

from babyemo import paths
from babyemo.errors import RegistryError, unknown_name
from babyemo.io import atomic_write_text


def _file() -> Path:
    return paths.home() / "models.json"


def _read() -> dict[str, dict[str, Any]]:
    try:
        data = json.loads(_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data.get("models", {}) if isinstance(data, dict) else {}


def _write(models: dict[str, dict[str, Any]]) -> None:
    atomic_write_text(_file(), json.dumps({"models": models}, indent=2))


def check_name_free(name: str, checkpoint: str | os.PathLike[str]) -> None:
    """Raise unless ``name`` is unused or already names ``checkpoint``.

    Raises:
        RegistryError: ``name`` names a different checkpoint.
    """
    models = _read()
    path = str(Path(checkpoint).resolve())
    if name in models and models[name]["checkpoint"] != path:
        raise RegistryError(f"A trained model named '{name}' already exists "
                            f"({models[name]['checkpoint']}).", "choose another --name")


def register_trained(name: str, checkpoint: str | os.PathLike[str], **info: Any) -> None:
    """Record a trained checkpoint under ``name``.

    Args:
        name: Unique model name.
        checkpoint: Path of its ``best.pt`` (stored absolute).
        **info: Plain-type facts shown by ``models list`` (arch, class_names, metrics...).

    Raises:
        RegistryError: ``name`` already names a different checkpoint.
    """
    check_name_free(name, checkpoint)
    models = _read()
    path = str(Path(checkpoint).resolve())
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    models[name] = {"checkpoint": path, "created": created, **info}
    _write(models)


def list_trained() -> dict[str, dict[str, Any]]:
    """Trained models by name, oldest first."""
    return dict(sorted(_read().items(), key=lambda kv: kv[1].get("created", "")))


def get_trained(name: str) -> dict[str, Any]:
    """The record of trained model ``name``.

    Raises:
        RegistryError: Unknown name (with close matches).
    """
    models = _read()
    if name not in models:
        raise unknown_name("trained model", name, models)
    return models[name]


def default_model() -> str | None:
    """Name of the default model (the most recently trained), or ``None``."""
    models = list_trained()
    return next(reversed(models)) if models else None


def resolve_checkpoint(checkpoint: str | os.PathLike[str] | None = None,
                       model: str | None = None) -> Path:
    """Path of the checkpoint to use from ``--checkpoint`` / ``--model`` / the default.

    Raises:
        RegistryError: Both given, an unknown model name, or no trained model at all.
    """
    if checkpoint is not None and model is not None:
        raise RegistryError("Give either a checkpoint or a model name, not both.")
    if checkpoint is not None:
        return Path(checkpoint)
    if model is None:
        model = default_model()
        if model is None:
            raise RegistryError("No model given and no trained model is registered.",
                                "train one with `babyemo train` or pass --checkpoint PATH")
    return Path(get_trained(model)["checkpoint"])
