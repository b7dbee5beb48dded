"""The trained-model registry: names of trained checkpoints, kept in ``models.json``.

``babyemo train`` records every run (``--name`` or the run folder's name); ``--model NAME``
works wherever ``--checkpoint PATH`` does. Without either, the default model is used: the
one chosen with ``babyemo models default NAME``, else the model packaged with babyemo
(:data:`PACKAGED_MODEL`, see ``docs/model-card.md``), else the most recently trained one.
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

PACKAGED_MODEL = "babyemo-infant"
"""Name of the packaged default model (``babyemo/models/weights/<name>.pt``)."""
PACKAGED_PRETRAINED = "babyemo-fer2013"
"""Name of the packaged adult-face model that ``train --init auto`` fine-tunes from."""


def packaged_models() -> dict[str, dict[str, Any]]:
    """Models shipped inside the installed package, by name (``{"checkpoint", "packaged"}``).

    Every ``babyemo/models/weights/<name>.pt``: the default infant model
    (:data:`PACKAGED_MODEL`) and the FER-2013 model it was fine-tuned from
    (``babyemo-fer2013``). Empty when the files are absent.
    """
    folder = Path(__file__).resolve().parent / "weights"
    return {p.stem: {"checkpoint": str(p), "packaged": True, "created": ""}
            for p in sorted(folder.glob("*.pt"))}


def _file() -> Path:
    return paths.home() / "models.json"


def _read_all() -> dict[str, Any]:
    try:
        data = json.loads(_file().read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _read() -> dict[str, dict[str, Any]]:
    models = _read_all().get("models", {})
    return models if isinstance(models, dict) else {}


def _write(models: dict[str, dict[str, Any]] | None = None, *,
           default: str | None | bool = False) -> None:
    """Rewrite ``models.json``: replace the models (``None``: keep them) and/or the chosen
    default (``False``: keep it; ``None``: clear it)."""
    data = _read_all()
    if models is not None:
        data["models"] = models
    if default is not False:
        data["default"] = default
    atomic_write_text(_file(), json.dumps({k: v for k, v in data.items() if v is not None},
                                          indent=2))


def check_name_free(name: str, checkpoint: str | os.PathLike[str]) -> None:
    """Raise unless ``name`` is unused or already names ``checkpoint``.

    Raises:
        RegistryError: ``name`` names a different checkpoint.
    """
    models = _read()
    path = str(Path(checkpoint).resolve())
    if name in packaged_models():
        raise RegistryError(f"'{name}' is the name of the model packaged with babyemo.",
                            "choose another --name")
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
    """Trained models by name: the packaged model first, then the user's, oldest first."""
    user = dict(sorted(_read().items(), key=lambda kv: kv[1].get("created", "")))
    return {**packaged_models(), **user}


def get_trained(name: str) -> dict[str, Any]:
    """The record of trained model ``name`` (the packaged model included).

    Raises:
        RegistryError: Unknown name (with close matches).
    """
    models = list_trained()
    if name not in models:
        raise unknown_name("trained model", name, models)
    return models[name]


def set_default(name: str | None) -> None:
    """Make trained model ``name`` the default (``None``: back to the packaged model).

    Raises:
        RegistryError: Unknown name.
    """
    if name is not None:
        get_trained(name)
    _write(default=name)


def default_model() -> str | None:
    """Name of the default model, or ``None`` when there is none.

    The one set with :func:`set_default` (if it still exists), else the packaged model,
    else the most recently trained one.
    """
    models = list_trained()
    chosen = _read_all().get("default")
    if isinstance(chosen, str) and chosen in models:
        return chosen
    if PACKAGED_MODEL in models:
        return PACKAGED_MODEL
    user = [n for n, r in models.items() if not r.get("packaged")]
    return user[-1] if user else None


def checkpoint_or_model(value: str | os.PathLike[str]) -> Path:
    """A checkpoint path from a value that is either a file or a trained model's name.

    An existing file wins; otherwise a registered name (the packaged models included) is
    looked up.

    Raises:
        RegistryError: Neither an existing file nor a known model name.
    """
    path = Path(value).expanduser()
    if path.is_file():
        return path
    models = list_trained()
    if str(value) in models:
        return Path(models[str(value)]["checkpoint"])
    raise RegistryError(f"'{value}' is neither a checkpoint file nor a trained model's name.",
                        f"trained models: {', '.join(models) or 'none'}")


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
