"""Self-describing checkpoints: save, load safely (``weights_only=True``), rebuild the model.

A checkpoint is a dict of plain types and tensors::

    format            "babyemo-checkpoint"
    format_version    1
    babyemo_version   e.g. "0.1.0"
    arch, arch_kwargs the registry name and the builder's extra keyword arguments
    class_names       list[str], in logit order
    input             InputSpec.to_dict(): size, channels, mean, std
    state_dict        model weights
    train             TrainConfig.to_dict() + seed, manifest path and sha256, epoch
    metrics           validation metrics of this epoch (and test metrics when known)
    created           ISO-8601 UTC time
    faces             None (whole images) or {"detector", "margin", "align"}: how training
                      cropped faces, so prediction crops the same way
    resume            (last.pt only) optimizer / scheduler / scaler state, history
    calibration       optional (absent = uncalibrated, temperature 1): temperature scaling
                      fitted by `babyemo train` / `babyemo calibrate`, a dict
                      {"temperature": float > 0, "fitted_on": split name, "n": int,
                      "ece_before", "ece_after": float (15 bins), "nll_before",
                      "nll_after": float (nats), "n_bins": int}; prediction and
                      evaluation use softmax(logits / temperature)
    evaluations       optional list of evaluation summaries recorded by `babyemo evaluate
                      --record` (dataset, split, metrics with CIs, slices, calibration),
                      one per dataset/split/conditions; the model card reports them
    card              optional dict of model-card text (intended use, training data,
                      known biases), written by whoever publishes the model

Evaluation and prediction rebuild everything from it, never from the data folder.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import os
import pickle
import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from babyemo import __version__
from babyemo.config import InputSpec
from babyemo.errors import CheckpointError, ConfigError
from babyemo.fs import atomic_open
from babyemo.models.packaged import is_packaged

FORMAT = "babyemo-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "arch", "arch_kwargs", "class_names", "input",
                 "state_dict")


@dataclass
class Checkpoint:
    """A loaded checkpoint.

    Attributes:
        path: File it was read from.
        arch: Registry architecture name.
        arch_kwargs: Extra builder keyword arguments.
        class_names: Class names in logit order.
        input_spec: Preprocessing of the model input.
        state_dict: Model weights.
        train: Training configuration and provenance.
        metrics: Metrics recorded with it.
        raw: The whole dict as stored.
        name: The model's name when loaded through :func:`babyemo.models.store.load` (the
            registered name, else the file's label); ``None`` otherwise.
    """

    path: Path
    arch: str
    arch_kwargs: dict[str, Any]
    class_names: list[str]
    input_spec: InputSpec
    state_dict: dict[str, torch.Tensor]
    train: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    faces: dict[str, Any] | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    name: str | None = None

    @property
    def crop_spec(self) -> Any:
        """The :class:`babyemo.faces.CropSpec` used in training, or ``None``."""
        if not self.faces:
            return None
        from babyemo.faces import CropSpec

        return CropSpec(margin=float(self.faces["margin"]), align=bool(self.faces["align"]))

    @property
    def calibration(self) -> dict[str, Any] | None:
        """The ``calibration`` entry (see the module doc), or ``None`` when absent."""
        return self.raw.get("calibration") or None

    @property
    def temperature(self) -> float:
        """Temperature ``T`` of temperature scaling (1.0 when the checkpoint has none).

        Raises:
            CheckpointError: The stored temperature is not a finite number > 0.
        """
        cal = self.calibration
        if not cal:
            return 1.0
        t = cal.get("temperature") if isinstance(cal, dict) else None
        if not _valid_temperature(t):
            raise CheckpointError(f"{self.path}: bad calibration temperature {t!r}.",
                                  "refit it with `babyemo calibrate`")
        return float(t)

    @property
    def evaluations(self) -> list[dict[str, Any]]:
        """Evaluation summaries recorded with ``evaluate --record`` (oldest first)."""
        ev = self.raw.get("evaluations")
        return list(ev) if isinstance(ev, list) else []

    @property
    def num_classes(self) -> int:
        """Number of logits."""
        return len(self.class_names)

    def build_model(self, device: torch.device | str = "cpu") -> torch.nn.Module:
        """Rebuild the architecture, load the weights, move to ``device``, set eval mode.

        Raises:
            CheckpointError: The weights do not fit the architecture.
        """
        from babyemo.models.registry import create_model

        model = create_model(self.arch, num_classes=self.num_classes, **self.arch_kwargs)
        try:
            model.load_state_dict(self.state_dict)
        except RuntimeError as e:
            raise CheckpointError(f"{self.path}: weights do not match arch '{self.arch}' ({e}).",
                                  "the file may come from another babyemo version") from e
        return model.to(device).eval()


def cpu_state_dict(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """``module``'s state dict with every tensor copied to the CPU, detached and contiguous
    (what a checkpoint or a resume record stores)."""
    return {k: v.detach().to("cpu", copy=True).contiguous()
            for k, v in module.state_dict().items()}


def weights_sha256(state_dict: dict[str, torch.Tensor]) -> str:
    """SHA-256 (hex) over a state dict's names, dtypes, shapes and raw bytes, in key order.

    Identifies a model's weights independently of the other checkpoint entries, so it
    survives what rewrites a checkpoint file without touching its weights
    (``evaluate --record``, ``calibrate``, a model card's text).

    Args:
        state_dict: Tensor name -> tensor (any dtype, device or layout).

    Returns:
        64 lower-case hex digits.
    """
    digest = hashlib.sha256()
    for name in sorted(state_dict):
        t = state_dict[name].detach().to("cpu").contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def save_checkpoint(path: str | os.PathLike[str], *, model: torch.nn.Module, arch: str,
                    arch_kwargs: dict[str, Any], class_names: list[str], input_spec: InputSpec,
                    train: dict[str, Any], metrics: dict[str, Any],
                    faces: dict[str, Any] | None = None,
                    resume: dict[str, Any] | None = None,
                    calibration: dict[str, Any] | None = None) -> Path:
    """Write a checkpoint atomically (temporary name in the same folder, then rename).

    Args:
        path: Destination ``.pt`` file.
        model: The model; its ``state_dict`` is saved as contiguous CPU tensors.
        arch: Registry name of the architecture.
        arch_kwargs: Extra builder keyword arguments (plain types only).
        class_names: Class names in logit order.
        input_spec: Preprocessing of the input.
        train: Plain-type training configuration and provenance.
        metrics: Plain-type metrics.
        faces: Face-crop settings (``detector``, ``margin``, ``align``) or ``None``.
        resume: Optional resume state (optimizer etc.); only ``last.pt`` carries it.
        calibration: Optional ``calibration`` entry (see the module doc), written in the
            same atomic write (e.g. an ensemble's temperature, fitted before it is saved).

    Returns:
        The path written.

    Raises:
        ConfigError: ``calibration`` has no finite ``temperature`` > 0.
    """
    path = Path(path)
    state = cpu_state_dict(model)
    payload: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "babyemo_version": __version__,
        "arch": arch,
        "arch_kwargs": dict(arch_kwargs),
        "class_names": list(class_names),
        "input": input_spec.to_dict(),
        "state_dict": state,
        "train": train,
        "metrics": metrics,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "faces": faces,
    }
    if resume is not None:
        payload["resume"] = resume
    if calibration is not None:
        if not _valid_temperature(calibration.get("temperature")):
            raise ConfigError("A calibration needs a finite temperature > 0, got "
                              f"{calibration.get('temperature')!r}.")
        payload["calibration"] = dict(calibration)
    with atomic_open(path, "wb") as f:
        torch.save(payload, f)
    return path


def read_checkpoint_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Load a checkpoint file as a dict with ``torch.load(weights_only=True)``.

    Raises:
        CheckpointError: Missing, truncated or corrupt file, a pickled object that is not
            plain data (refused, never executed: the message says "refused to load"), or
            not a babyemo checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint not found: {path}",
                              "pass a .pt file written by `babyemo train`")
    try:
        with warnings.catch_warnings():  # e.g. "Detected pickle protocol 4" of foreign files
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(
            f"{path}: refused to load: it contains objects other than plain data and tensors "
            f"({_unpickling_detail(e)}); nothing in it was run.",
            "only checkpoints written by babyemo are accepted (loaded with weights_only=True)",
        ) from e
    except MemoryError:
        raise
    except Exception as e:  # a corrupt file makes the unpickler fail in many ways
        raise CheckpointError(f"{path}: not a readable checkpoint ({_first_line(e)}).",
                              "the file is truncated or corrupt; use another copy") from e
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not a babyemo checkpoint.",
                              "pass a .pt file written by `babyemo train`")
    version = data.get("format_version")
    if version != FORMAT_VERSION:
        raise CheckpointError(f"{path}: unknown checkpoint format_version {version!r}.",
                              f"this babyemo reads version {FORMAT_VERSION}; upgrade babyemo")
    missing = [k for k in REQUIRED_KEYS if k not in data]
    if missing:
        raise CheckpointError(f"{path}: checkpoint lacks key(s) {missing}.")
    return data


_CORRUPT_HINT = "the file is corrupt or was not written by babyemo; use another copy"


def _check_class_names(path: str | os.PathLike[str], names: Any) -> None:
    """Raise unless ``names`` is a list of >= 2 unique, non-empty strings."""
    ok = (isinstance(names, (list, tuple)) and len(names) >= 2
          and all(isinstance(n, str) and n.strip() for n in names))
    if not ok:
        raise CheckpointError(f"{path}: 'class_names' must be two or more non-empty "
                              f"names, got {names!r:.200}.", _CORRUPT_HINT)
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise CheckpointError(f"{path}: class names {repeated} appear more than once.",
                              _CORRUPT_HINT)


def _check_finite(path: str | os.PathLike[str], state_dict: Any) -> None:
    """Raise when ``state_dict`` is not a dict of tensors, or a float tensor of it holds a
    NaN or an infinity (naming the first such tensor and how many values are bad)."""
    if not isinstance(state_dict, dict):
        raise CheckpointError(f"{path}: 'state_dict' is not a dict of tensors.", _CORRUPT_HINT)
    for name, tensor in state_dict.items():
        if not isinstance(tensor, torch.Tensor):
            raise CheckpointError(f"{path}: weight {name!r} is not a tensor.", _CORRUPT_HINT)
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            bad = int((~torch.isfinite(tensor)).sum())
            raise CheckpointError(
                f"{path}: weight {name!r} holds {bad} NaN or infinite value(s) of "
                f"{tensor.numel()}.",
                "the training diverged or the file is corrupt; use another checkpoint "
                "(e.g. best.pt of an earlier epoch)")


def _first_line(error: BaseException) -> str:
    """The first line of an exception's message (torch's are long), or its type name."""
    text = str(error).strip().splitlines()
    return text[0][:300] if text else type(error).__name__


def _unpickling_detail(error: BaseException) -> str:
    """What torch's weights-only unpickler refused, without its advice to load unsafely."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(error))
    found = re.search(r"Unsupported global: GLOBAL (\S+)", text)
    if found:
        return f"it refers to {found.group(1)}"
    found = re.search(r"WeightsUnpickler error: ([^\n]+?)(?:\.\s|$)", text)
    return found.group(1)[:300] if found else _first_line(error)


def _valid_temperature(t: Any) -> bool:
    """True for a finite number > 0 (not a bool)."""
    return not isinstance(t, bool) and isinstance(t, (int, float)) and 0 < t < float("inf")


def write_calibration(path: str | os.PathLike[str], calibration: dict[str, Any]) -> Path:
    """Store a ``calibration`` entry in an existing checkpoint file (atomically).

    Every other key is kept as it was. The file is read with ``weights_only=True`` (see
    :func:`read_checkpoint_dict`), so only a valid babyemo checkpoint is rewritten.

    Args:
        path: The ``.pt`` file.
        calibration: Plain-type dict with at least ``temperature`` (a finite float > 0),
            e.g. :meth:`babyemo.calibration.CalibrationResult.to_dict`.

    Returns:
        The path written.

    Raises:
        CheckpointError: See :func:`read_checkpoint_dict`.
        ConfigError: ``calibration`` has no finite ``temperature`` > 0.
    """
    t = calibration.get("temperature")
    if not _valid_temperature(t):
        raise ConfigError(f"A calibration needs a finite temperature > 0, got {t!r}.")
    return _rewrite_entry(path, "calibration", lambda _: dict(calibration))


def record_evaluation(path: str | os.PathLike[str], summary: dict[str, Any]) -> Path:
    """Add an evaluation summary to a checkpoint's ``evaluations`` list (atomically).

    An earlier summary with the same ``key`` (dataset, split, conditions, engine) is
    replaced, so re-running an evaluation does not pile up entries.

    Args:
        path: The ``.pt`` file.
        summary: Plain-type dict with a ``key`` string (see
            :meth:`babyemo.evaluation.EvalResult.summary`).

    Returns:
        The path written.

    Raises:
        CheckpointError: See :func:`read_checkpoint_dict`.
        ConfigError: ``summary`` has no ``key``.
    """
    if not isinstance(summary.get("key"), str):
        raise ConfigError("An evaluation summary needs a 'key' string.")
    def add(old: Any) -> list[dict[str, Any]]:
        return [*[e for e in old or [] if e.get("key") != summary["key"]], dict(summary)]

    return _rewrite_entry(path, "evaluations", add)


def check_writable(path: str | os.PathLike[str]) -> None:
    """Raise when ``path`` is a model packaged with babyemo: packaged files are read-only
    to every command (``calibrate`` works on a copy, see
    :func:`babyemo.models.store.writable_copy`).

    Raises:
        CheckpointError: A packaged model's file.
    """
    if is_packaged(path):
        raise CheckpointError(f"{path} is a model packaged with babyemo; packaged files are "
                              "read-only.", "copy it and pass the copy with --checkpoint")


def _rewrite_entry(path: str | os.PathLike[str], key: str,
                   update: Callable[[Any], Any]) -> Path:
    """Replace one top-level entry of a checkpoint file (atomically) with
    ``update(old value or None)``; every other key is kept as it was.

    Raises:
        CheckpointError: See :func:`read_checkpoint_dict`; or ``path`` is a model packaged
            with babyemo (read-only).
    """
    check_writable(path)
    data = read_checkpoint_dict(path)
    data[key] = update(data.get(key))
    with atomic_open(path, "wb") as f:
        torch.save(data, f)
    return Path(path)


MAX_INPUT_SIZE = 2048
"""Largest input side (pixels) a checkpoint may ask for: a larger one is corrupt or
hostile (a 100,000 px input would make every image a 30 GB tensor)."""


def load_checkpoint(path: str | os.PathLike[str]) -> Checkpoint:
    """Load and validate a babyemo checkpoint.

    Every command that uses a model goes through here, so every one of them gets the
    same checks: the input spec is sane (size 8 to :data:`MAX_INPUT_SIZE` pixels, 1 or 3
    channels), the class names are at least two unique non-empty strings, and every
    floating-point tensor of the weights is finite (a NaN weight makes every prediction
    ``nan``; it was labelled with the first class and confidence ``nan``).

    Raises:
        CheckpointError: See :func:`read_checkpoint_dict`, a malformed ``input``, bad class
            names, or weights that are not finite.
    """
    data = read_checkpoint_dict(path)
    try:
        spec = InputSpec.from_dict(data["input"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{path}: malformed 'input' entry ({e}).") from e
    if spec.size > MAX_INPUT_SIZE:
        raise CheckpointError(f"{path}: input size {spec.size} px is over the "
                              f"{MAX_INPUT_SIZE} px limit.", _CORRUPT_HINT)
    _check_class_names(path, data["class_names"])
    _check_finite(path, data["state_dict"])
    return Checkpoint(path=Path(path), arch=data["arch"], arch_kwargs=dict(data["arch_kwargs"]),
                      class_names=list(data["class_names"]), input_spec=spec,
                      state_dict=data["state_dict"], train=data.get("train", {}),
                      metrics=data.get("metrics", {}), faces=data.get("faces"), raw=data)
