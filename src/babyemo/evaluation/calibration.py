"""Calibration as a workflow: the calibration part of an evaluation report, and fitting or
copying a trained model's temperature into its file (``babyemo calibrate``).

The math (temperature fitting, ECE, reliability bins) is :mod:`babyemo.calibration`; the
logits come from :class:`babyemo.inference.InferenceModel`.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from babyemo.calibration import (
    DEFAULT_BINS,
    CalibrationResult,
    calibration_warnings,
    nll,
    reliability_bins,
    softmax,
)
from babyemo.checkpoint import Checkpoint, load_checkpoint, write_calibration
from babyemo.data.preparation.lookup import manifest_for_model, trained_on
from babyemo.data.preparation.manifest import check_split, read_manifest
from babyemo.errors import CheckpointError, ConfigError
from babyemo.inference import InferenceModel, calibrate_on_dataset, checkpoint_dataset
from babyemo.models import store
from babyemo.runtime import Runtime

log = logging.getLogger(__name__)


def calibration_report(ckpt: Checkpoint, logits: np.ndarray, y_true: np.ndarray,
                       n_bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """ECE and NLL of ``logits`` before (``T = 1``) and after the checkpoint's temperature.

    Args:
        ckpt: The checkpoint (its :attr:`~babyemo.checkpoint.Checkpoint.temperature`).
        logits: ``(N, K) float32`` logits.
        y_true: ``(N,) int64`` true class indices.
        n_bins: Number of equal-width confidence bins.

    Returns:
        The ``calibration`` entry of :class:`EvalResult` (JSON-safe); its ``warnings``
        say when the ECE after scaling should not be trusted (see
        :func:`babyemo.calibration.calibration_warnings`).
    """
    t = ckpt.temperature
    before = reliability_bins(softmax(logits), y_true, n_bins)
    after = reliability_bins(softmax(logits, t), y_true, n_bins)
    stored = ckpt.calibration or {}
    return {"temperature": t, "calibrated": bool(stored), "fitted_on": stored.get("fitted_on"),
            "n_bins": n_bins, "ece_before": before.ece, "ece_after": after.ece,
            "nll_before": nll(logits, y_true, 1.0), "nll_after": nll(logits, y_true, t),
            "reliability": {"before": before.to_dict(), "after": after.to_dict()},
            "warnings": calibration_warnings(logits, y_true, t, "the evaluated images")}




def calibrate_checkpoint(checkpoint: str | os.PathLike[str] | None = None, *,
                         model: str | None = None, data: str | os.PathLike[str] | None = None,
                         split: str = "val", runtime: Runtime | None = None,
                         n_bins: int = DEFAULT_BINS, write: bool = True) -> CalibrationResult:
    """(Re)fit temperature scaling of a trained model on a split and store it in its file.

    Use it on checkpoints trained before calibration existed, or to fit on other data.
    Fit on data the model was not trained on (``val``); never on the split you report.

    Args:
        checkpoint: A ``.pt`` file; or give ``model``; neither = the default model.
        model: Name of a trained model in the registry.
        data: Manifest (CSV or its folder); default: the one the model was trained on
            (see :func:`babyemo.data.preparation.lookup.manifest_for_model`).
        split: ``val`` (or ``train`` / ``test``: one split, never ``all``, which holds
            the training images).
        runtime: How the model runs (:class:`~babyemo.runtime.Runtime`).
        n_bins: Number of ECE bins.
        write: Write the result into the checkpoint (``False``: only report it); a
            packaged model is never rewritten: its calibrated copy is written and
            registered instead (``copy_name``).

    Returns:
        The :class:`CalibrationResult`.

    Raises:
        RegistryError: No model given and none registered.
        CheckpointError: Unusable checkpoint.
        ManifestError: No or unreadable manifest; without ``data``, the model's own
            manifest changed or is not on this machine.
        DataError: Empty split, or labels not among the checkpoint's class names.
        ConfigError: ``split`` is not one split name, or the model was trained on that
            split of that manifest (e.g. ``val`` for a model trained on train+val).
    """
    check_split(split, allow_all=False)
    ckpt = store.load(checkpoint, model)
    path = ckpt.path
    choice = manifest_for_model(data, ckpt.train, ckpt.name or str(path))
    if trained_on(choice.path, ckpt.train, split):
        raise ConfigError(
            f"{ckpt.name or path} was trained on the '{split}' split of {choice.path}: a "
            "temperature fitted on images the model has seen sharpens it wrongly.",
            "fit it on held-out data (--data, --split), or copy the temperature of the same "
            "recipe trained on train only (--copy-from)")
    manifest = read_manifest(choice.path)
    dataset = checkpoint_dataset(manifest, split, ckpt)
    result = calibrate_on_dataset(InferenceModel(ckpt, runtime), dataset, fitted_on=split,
                                  n_bins=n_bins)
    if write:
        result.checkpoint, result.copy_name = _write_calibration_somewhere(
            path, result.to_dict())
    result.manifest, result.manifest_source = manifest.path, choice.source
    return result


def copy_calibration(source: str | os.PathLike[str], checkpoint: str | os.PathLike[str]
                     | None = None, *, model: str | None = None) -> dict[str, Any]:
    """Give a model the temperature fitted for ``source`` (its file atomically rewritten).

    For a final model trained on train+val, no held-out data is left to fit on; the
    temperature fitted on val for the same recipe trained on train only is the closest
    honest estimate. The entry records where it came from (``copied_from``).

    Args:
        source: A calibrated checkpoint (same recipe, trained on train only).
        checkpoint: The ``.pt`` file to calibrate; or give ``model``; neither = the
            default model.
        model: Name of a trained model in the registry.

    Returns:
        The calibration entry written, with ``written_to``: the file written (the target,
        or for a packaged model its copy in the babyemo home, registered as
        ``copy_name``; see :func:`babyemo.models.store.writable_copy`).

    Raises:
        RegistryError: No model given and none registered, or an unknown name.
        CheckpointError: Unusable files, ``source`` has no calibration, or its class names
            differ from the target's (a temperature belongs to one model's logits: the
            same classes, in the same order, and the same recipe).
    """
    src = load_checkpoint(source)
    if not src.calibration:
        raise CheckpointError(f"{source} has no calibration to copy.",
                              "calibrate it first with `babyemo calibrate`")
    dst = store.load(checkpoint, model)
    if src.class_names != dst.class_names:
        raise CheckpointError(
            f"{source} has class names {src.class_names}, {dst.path} has "
            f"{dst.class_names}: its temperature does not belong to these logits.",
            "copy from the same recipe trained on train only (same classes)")
    if src.arch != dst.arch:
        log.warning("Copying the temperature of a %s model into a %s model: it was fitted "
                    "for another architecture.", src.arch, dst.arch)
    entry = {**src.calibration, "copied_from": str(Path(source).resolve())}
    written, copy_name = _write_calibration_somewhere(dst.path, entry)
    return {**entry, "written_to": str(written), "copy_name": copy_name}


def _write_calibration_somewhere(target: Path, entry: dict[str, Any]) -> tuple[Path, str | None]:
    """Write ``entry`` into ``target``, or into a registered copy of it when ``target`` is
    a packaged model (read-only). Returns ``(file written, name of the copy or None)``."""
    if store.is_packaged(target):
        copy, name = store.writable_copy(target)
        log.info("%s is packaged with babyemo (read-only): calibrated copy %s, registered "
                 "as '%s'.", target.name, copy, name)
        return write_calibration(copy, entry), name
    return write_calibration(target, entry), None


__all__ = ["calibrate_checkpoint", "calibration_report", "copy_calibration"]
