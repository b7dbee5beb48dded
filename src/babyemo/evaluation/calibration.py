"""Calibration as a workflow: the calibration part of an evaluation report, and fitting or
copying a trained model's temperature into its file (``babyemo calibrate``).

The math (temperature fitting, ECE, reliability bins) is :mod:`babyemo.calibration`; the
logits come from :class:`babyemo.inference.InferenceModel`.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from babyemo.calibration import (
    DEFAULT_BINS,
    OUT_OF_FOLD,
    CalibrationResult,
    calibrate_logits,
    calibration_warnings,
    ece_if_calibrated,
    nll,
    reliability_bins,
    softmax,
)
from babyemo.checkpoint import Checkpoint, load_checkpoint, write_calibration
from babyemo.data.preparation.lookup import manifest_for_model, trained_on
from babyemo.data.preparation.manifest import check_split, read_manifest
from babyemo.errors import CheckpointError, ConfigError
from babyemo.fs import sha256_file
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
        :func:`babyemo.calibration.calibration_warnings`); ``ece_if_calibrated`` is the
        ECE a perfectly calibrated model with the scaled confidences would show on these
        images (median and 95% interval, :func:`babyemo.calibration.ece_if_calibrated`):
        the noise floor of ``ece_after``.
    """
    t = ckpt.temperature
    before = reliability_bins(softmax(logits), y_true, n_bins)
    scaled = softmax(logits, t)
    after = reliability_bins(scaled, y_true, n_bins)
    stored = ckpt.calibration or {}
    return {"temperature": t, "calibrated": bool(stored), "fitted_on": stored.get("fitted_on"),
            "n_bins": n_bins, "ece_before": before.ece, "ece_after": after.ece,
            "ece_if_calibrated": ece_if_calibrated(scaled, n_bins),
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


def calibrate_from_oof(run_dir: str | os.PathLike[str], checkpoint: str | os.PathLike[str]
                       | None = None, *, model: str | None = None, n_bins: int = DEFAULT_BINS,
                       write: bool = True) -> CalibrationResult:
    """Fit a model's temperature on the out-of-fold logits of a cross-validation of its recipe.

    A model trained on all non-test images (``--train-on train,val``) has no held-out
    images left. The raw logits of ``babyemo train --folds K`` with the same recipe hold one
    prediction per non-test image, each from a fold model that did not see it (866 on
    infant-emotions, against 154 of one val split), so the temperature of "this recipe on
    unseen images" is fitted on several times more images than ``--copy-from`` gives. The fold
    models' own temperatures are not used: one ``T`` is fitted on all the raw logits
    (Guo et al. 2017, temperature scaling; cross-validated calibration as in
    scikit-learn's ``CalibratedClassifierCV(ensemble=False)``).

    Args:
        run_dir: A finished ``babyemo train --folds K`` run folder (its ``oof_logits.npz``).
        checkpoint: The ``.pt`` file to calibrate; or give ``model``; neither = the
            default model.
        model: Name of a trained model in the registry.
        n_bins: Number of ECE bins.
        write: Write the temperature into the checkpoint (``False``: only report it); a
            packaged model is never rewritten: its calibrated copy is written and
            registered instead (``copy_name``).

    Returns:
        The :class:`CalibrationResult` (``fitted_on`` ``"out-of-fold"``, ``n`` the run's
        out-of-fold rows; ``warnings`` also says when the run's architecture or manifest
        is not the model's). The checkpoint's entry records ``oof_run`` and the SHA-256 of
        its ``oof_logits.npz``.

    Raises:
        RegistryError: No model given and none registered, or an unknown name.
        CheckpointError: Unusable checkpoint, or the run's classes are not the model's.
        DataError: ``run_dir`` has no readable ``oof_logits.npz``.
    """
    from babyemo.evaluation.crossval import read_oof_logits

    ckpt = store.load(checkpoint, model)
    oof = read_oof_logits(run_dir)
    if sorted(oof.class_names) != sorted(ckpt.class_names):
        raise CheckpointError(
            f"The cross-validation run {run_dir} has classes {oof.class_names}, the model "
            f"{ckpt.name or ckpt.path} has {ckpt.class_names}: its logits cannot calibrate "
            "this model.", "pass a folds run of the same recipe on the same classes")
    order = [oof.class_names.index(c) for c in ckpt.class_names]  # the model's logit order
    targets = np.array([ckpt.class_names.index(oof.class_names[t]) for t in oof.targets],
                       dtype=np.int64)
    result = calibrate_logits(oof.logits[:, order], targets, fitted_on=OUT_OF_FOLD,
                              n_bins=n_bins)
    mismatch = _recipe_mismatch(Path(run_dir), ckpt)
    for warning in mismatch:
        log.warning("Calibration: %s.", warning)
    result.warnings += mismatch
    if write:
        entry = {**result.to_dict(), "oof_run": str(Path(run_dir).resolve()),
                 "oof_sha256": sha256_file(oof.path)}
        result.checkpoint, result.copy_name = _write_calibration_somewhere(ckpt.path, entry)
    return result


def _recipe_mismatch(run_dir: Path, ckpt: Checkpoint) -> list[str]:
    """Why the folds run in ``run_dir`` may not be the model's recipe (from its ``cv.json``:
    another architecture or another manifest than the checkpoint records); ``[]`` when it
    has no ``cv.json`` or nothing differs."""
    cv = run_dir / "cv.json"
    try:
        record = json.loads(cv.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    notes = []
    arch = (record.get("config") or {}).get("arch")
    if arch and arch != ckpt.arch:
        notes.append(f"the cross-validation trained {arch} models, this model is a {ckpt.arch}")
    sha = record.get("manifest_sha256")
    if sha and ckpt.train.get("manifest_sha256") and sha != ckpt.train["manifest_sha256"]:
        notes.append("the cross-validation ran on another manifest than the one this model "
                     "was trained on (SHA-256 differs)")
    return notes


def _write_calibration_somewhere(target: Path, entry: dict[str, Any]) -> tuple[Path, str | None]:
    """Write ``entry`` into ``target``, or into a registered copy of it when ``target`` is
    a packaged model (read-only). Returns ``(file written, name of the copy or None)``."""
    if store.is_packaged(target):
        copy, name = store.writable_copy(target)
        log.info("%s is packaged with babyemo (read-only): calibrated copy %s, registered "
                 "as '%s'.", target.name, copy, name)
        return write_calibration(copy, entry), name
    return write_calibration(target, entry), None


__all__ = ["calibrate_checkpoint", "calibrate_from_oof", "calibration_report",
           "copy_calibration"]
