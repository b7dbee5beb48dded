"""The trained-model registry: names of trained checkpoints, kept in ``models.json``.

``babyemo train`` records every run (``--name`` or the run folder's name); ``--model NAME``
works wherever ``--checkpoint PATH`` does. Without either, the default model is used: the
one chosen with ``babyemo models default NAME``, else the model packaged with babyemo
(:data:`PACKAGED_MODEL`, see ``docs/model-card.md``), else the most recently trained one.
"""

from __future__ import annotations

import datetime as _dt
import functools
import logging
import os
import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from babyemo import paths
from babyemo.errors import BabyEmoError, ConfigError, RegistryError, unknown_name
from babyemo.fs import atomic_open, read_json_object, sha256_file, update_json_object
from babyemo.models.packaged import (
    PACKAGED_INIT,
    PACKAGED_MODEL,
    is_packaged,
    packaged_models,
)

if TYPE_CHECKING:
    from babyemo.checkpoint import Checkpoint

log = logging.getLogger(__name__)

PACKAGED_PRETRAINED = PACKAGED_INIT
"""Old name of :data:`babyemo.models.packaged.PACKAGED_INIT` (kept for one release)."""


def writable_copy(checkpoint: str | os.PathLike[str]) -> tuple[Path, str]:
    """A copy of a packaged model in the babyemo home, registered, for commands that change
    a checkpoint (``calibrate``): packaged files are never rewritten.

    The copy is ``<home>/models/<name>-calibrated.pt``, registered as
    ``<name>-calibrated`` (replaced by a later copy of the same model).

    Returns:
        ``(path of the copy, its registered name)``.

    Raises:
        RegistryError: ``checkpoint`` is not a packaged model.
        StateError: ``models.json`` is corrupt.
    """
    source = Path(checkpoint).expanduser().resolve()
    if not is_packaged(source):
        raise RegistryError(f"{source} is not a model packaged with babyemo.")
    name = f"{source.stem}-calibrated"
    target = model_file(name)
    with atomic_open(target, "wb") as f, open(source, "rb") as src:
        shutil.copyfileobj(src, f)
    register_trained(name, target, copied_from=source.stem)
    return target, name


_FILE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")


def model_file(name: str) -> Path:
    """Where the store keeps a model file that babyemo writes itself rather than a training
    run: ``<home>/models/<name>.pt`` (an ensemble of ``babyemo models ensemble``, the
    calibrated copy of a packaged model).

    Raises:
        ConfigError: ``name`` is not letters, digits, ``.``, ``_`` and ``-``, starting with
            a letter or digit (it names a file).
    """
    if not _FILE_NAME.fullmatch(name or ""):
        raise ConfigError(f"Invalid model name {name!r}.",
                          "use letters, digits, '.', '_' and '-', e.g. infant-cv5")
    return paths.models_cache_dir() / f"{name}.pt"


def _file() -> Path:
    return paths.home() / "models.json"


def _read_all() -> dict[str, Any]:
    """``models.json`` as read (``{}`` when missing).

    Raises:
        StateError: The file is corrupt: never read as empty, so that nothing rewrites
            the store from a failed read and loses the models in it.
    """
    return read_json_object(_file())


def _models(data: dict[str, Any]) -> dict[str, dict[str, Any]]:
    models = data.get("models", {})
    return models if isinstance(models, dict) else {}


def _read() -> dict[str, dict[str, Any]]:
    return _models(_read_all())


def _update(change: Callable[[dict[str, dict[str, Any]], dict[str, Any]], None]) -> None:
    """Change the store under its lock: ``change(models, data)`` edits the models dict
    and/or the whole file's object in place; other processes' entries are kept."""

    def apply(data: dict[str, Any]) -> None:
        models = _models(data)
        change(models, data)
        data["models"] = models
        if data.get("default") is None:
            data.pop("default", None)

    update_json_object(_file(), apply)


def _name_conflict(name: str, path: str, models: dict[str, dict[str, Any]]) -> RegistryError | None:
    """The error for registering ``path`` as ``name``, or ``None`` when it is allowed.

    A name is free when unused, when it already names ``path``, or when the checkpoint
    it names no longer exists (a dangling entry is replaced, see :func:`register_trained`).
    """
    if name in packaged_models():
        return RegistryError(f"'{name}' is the name of the model packaged with babyemo.",
                             "choose another --name")
    old = models.get(name, {}).get("checkpoint")
    if old is not None and old != path and Path(old).is_file():
        return RegistryError(f"A trained model named '{name}' already exists ({old}).",
                             "choose another --name")
    return None


def check_name_free(name: str, checkpoint: str | os.PathLike[str]) -> None:
    """Raise unless ``name`` is unused, already names ``checkpoint``, or names a deleted one.

    Raises:
        RegistryError: ``name`` names a different, existing checkpoint.
        StateError: ``models.json`` is corrupt.
    """
    error = _name_conflict(name, str(Path(checkpoint).resolve()), _read())
    if error is not None:
        raise error


def register_trained(name: str, checkpoint: str | os.PathLike[str], **info: Any) -> None:
    """Record a trained checkpoint under ``name``.

    The check and the write happen under the store's lock, so two processes registering
    at once both keep their entries. An entry whose checkpoint file was deleted is
    replaced (with a warning in the log).

    Args:
        name: Unique model name.
        checkpoint: Path of its ``best.pt`` (stored absolute).
        **info: Plain-type facts shown by ``models list`` (arch, class_names, metrics...).

    Raises:
        RegistryError: ``name`` already names a different, existing checkpoint.
        StateError: ``models.json`` is corrupt (left as it is) or locked too long.
    """
    path = str(Path(checkpoint).resolve())
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")

    def add(models: dict[str, dict[str, Any]], data: dict[str, Any]) -> None:
        error = _name_conflict(name, path, models)
        if error is not None:
            raise error
        old = models.get(name, {}).get("checkpoint")
        if old is not None and old != path:
            log.warning("The model name '%s' named %s, which no longer exists; it now names "
                        "%s.", name, old, path)
        models[name] = {"checkpoint": path, "created": created, **info}

    _update(add)


def list_trained() -> dict[str, dict[str, Any]]:
    """Trained models by name: the packaged model first, then the user's, oldest first."""
    user = dict(sorted(_read().items(), key=lambda kv: kv[1].get("created", "")))
    return {**packaged_models(), **user}


def registered_name(checkpoint: str | os.PathLike[str]) -> str | None:
    """The name under which a checkpoint file is registered (packaged models included).

    Args:
        checkpoint: A ``.pt`` file.

    Returns:
        The first registered name whose checkpoint is that file (compared as resolved
        paths), or ``None``.

    Raises:
        StateError: The registry file (``models.json``) is corrupt.
    """
    target = Path(checkpoint).expanduser().resolve()
    for name, rec in list_trained().items():
        path = rec.get("checkpoint") if isinstance(rec, dict) else None
        if path and Path(path).resolve() == target:
            return name
    return None


def model_label(checkpoint: str | os.PathLike[str]) -> str:
    """A short name of a checkpoint for titles (plots, cards), never a full path.

    Its registered name when it has one; else, for a run folder's ``best.pt`` or
    ``last.pt``, the folder's name (``runs/main-job/best.pt`` -> ``main-job``); else the
    file's stem.

    Args:
        checkpoint: A ``.pt`` file.

    Raises:
        StateError: The registry file (``models.json``) is corrupt.
    """
    name = registered_name(checkpoint)
    if name is not None:
        return name
    path = Path(checkpoint).expanduser().resolve()
    if path.stem in ("best", "last") and path.parent.name:
        return path.parent.name
    return path.stem


def packaged_name_of(sha256: str | None = None, *, weights_sha256: str | None = None
                     ) -> str | None:
    """The name of the packaged model whose weights or file have these digests.

    Lets a checkpoint fine-tuned from a copy of a packaged file name its donor. The weights
    digest (:func:`babyemo.checkpoint.weights_sha256`, ``train["init"]["weights_sha256"]``) still
    matches after a copy of the file was rewritten without changing its weights
    (``evaluate --record``, ``calibrate``); older checkpoints recorded only the file digest.

    Args:
        sha256: SHA-256 of the donor file, or ``None``.
        weights_sha256: Digest of the donor's ``state_dict``, or ``None``.

    Returns:
        The packaged model's name, or ``None`` when none matches (or both are ``None``).
    """
    if not sha256 and not weights_sha256:
        return None
    for name, rec in packaged_models().items():
        try:
            if sha256 and sha256_file(rec["checkpoint"]) == sha256:
                return name
            if weights_sha256 and _packaged_weights_sha256(rec["checkpoint"]) == weights_sha256:
                return name
        except (OSError, BabyEmoError):
            continue
    return None


@functools.lru_cache(maxsize=8)
def _packaged_weights_sha256(path: str) -> str:
    """:func:`~babyemo.checkpoint.weights_sha256` of a packaged checkpoint (read-only
    files inside the package, so the digest is computed once per process)."""
    from babyemo.checkpoint import load_checkpoint, weights_sha256

    return weights_sha256(load_checkpoint(path).state_dict)


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
    _update(lambda models, data: data.update(default=name))


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


def load(checkpoint: str | os.PathLike[str] | None = None,
         model: str | None = None) -> Checkpoint:
    """The one resolver: the model of ``--checkpoint`` / ``--model`` / the default, loaded.

    Every command that runs, evaluates, calibrates or describes a model goes through here
    (and :func:`babyemo.checkpoint.load_checkpoint`'s checks).

    Args:
        checkpoint: A ``.pt`` file; or give ``model``; neither: the default model (see
            :func:`default_model`).
        model: A registered model name (the packaged models included).

    Returns:
        The :class:`~babyemo.checkpoint.Checkpoint`, its ``name`` set: the model name
        given or chosen by default, else the file's registered name, else its
        :func:`model_label`.

    Raises:
        RegistryError: Both given, an unknown name, or no model at all.
        CheckpointError: The file is missing or unusable.
        StateError: ``models.json`` is corrupt.
    """
    from babyemo.checkpoint import load_checkpoint  # torch: not for `babyemo --help`

    if model is None and checkpoint is None:
        model = default_model()
    path = resolve_checkpoint(checkpoint, model)
    ckpt = load_checkpoint(path)
    ckpt.name = model or registered_name(path) or model_label(path)
    return ckpt
