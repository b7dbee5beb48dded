"""Evaluate a model on a manifest split: ``evaluate(...) -> EvalResult``.

Metrics with bootstrap CIs, the confusion matrix (rows = true class, columns = predicted),
calibration (ECE before and after the checkpoint's temperature), slices by a metadata
column, cross-dataset label maps; with ``out``, the report files of
:mod:`babyemo.evaluation.files`. The logits come from
:class:`babyemo.inference.InferenceModel` (probabilities ``softmax(logits / T)``).
"""

from __future__ import annotations

import dataclasses
import datetime as _dt
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from babyemo.calibration import DEFAULT_BINS
from babyemo.checkpoint import check_writable, record_evaluation
from babyemo.config import NoFaceFallback
from babyemo.data.loading.folders import check_outputs
from babyemo.data.preparation.lookup import manifest_for_model, trained_on
from babyemo.data.preparation.manifest import check_split, read_manifest, warn_split_classes
from babyemo.errors import ConfigError
from babyemo.evaluation.calibration import calibration_report
from babyemo.evaluation.files import REPORT_FILES, write_eval_reports
from babyemo.evaluation.label_map import apply_label_map
from babyemo.evaluation.slices import SLICE_COLUMNS, filter_rows, parse_where, slice_metrics
from babyemo.inference import InferenceModel, checkpoint_dataset, probabilities
from babyemo.metrics import bootstrap_ci, classification_metrics
from babyemo.models import store
from babyemo.rows import FACE_DETECTED, FACE_WHOLE_IMAGE, Prediction
from babyemo.runtime import Runtime

log = logging.getLogger(__name__)

@dataclass
class EvalResult:
    """Result of :func:`evaluate`.

    Attributes:
        checkpoint: Checkpoint file evaluated.
        manifest: Manifest file evaluated on.
        split: Split name.
        class_names: Class names in logit order (rows/columns of the confusion matrix).
        metrics: :func:`babyemo.metrics.classification_metrics` output.
        paths: Relative image paths, ``(N,)``.
        y_true: True class indices, ``(N,) int64``.
        y_pred: Predicted class indices, ``(N,) int64``.
        probs: Softmax probabilities of ``logits / temperature``, ``(N, num_classes)
            float32``.
        files: Report files written (empty without ``out``).
        calibration: ``temperature``, ``calibrated`` (whether the checkpoint has one),
            ``fitted_on``, ``n_bins``, ``ece_before`` / ``ece_after`` (ECE at ``T = 1`` /
            at ``T``), ``ece_if_calibrated`` (the ECE a perfectly calibrated model would
            show on these images: ``median``, ``low``, ``high``, see
            :func:`babyemo.calibration.ece_if_calibrated`), ``nll_before`` / ``nll_after``
            (nats) and ``reliability`` (``before`` / ``after`` bins, see
            :meth:`babyemo.calibration.ReliabilityBins.to_dict`).
        slices: With ``slice_by``: ``{"column", "metadata", "groups": [{"value", "n",
            "accuracy", "balanced_accuracy", "macro_f1", "ece", "ci95"?}, ...]}``.
        label_map: With ``label_map``: see :func:`apply_label_map` plus
            ``n_pred_outside`` (predictions of model classes outside the dataset's labels).
        engine: What computed the logits: ``backend`` (``torch`` / ``onnxruntime``),
            ``precision`` (``fp32``, ``bf16``, ``fp16`` or ``int8``), ``device`` and, for
            onnxruntime, ``onnx`` (the file) and, for an int8 file, ``int8_eval`` (its
            comparison with fp32 at export, see :class:`babyemo.export.ExportResult`),
            ``tta`` (flip test-time augmentation) and ``whole_images`` (a face-crop model
            given whole images, ``faces="none"``).
        where: The metadata conditions the evaluated rows met (``{column: value}``; empty:
            the whole split).
        manifest_source: Why that manifest: given (``data``), recorded in the checkpoint,
            or found with the recorded bytes (see :mod:`babyemo.data.preparation.lookup`).
        with_face: For a model of face crops, ``(N,) bool``: the row has a face box in the
            manifest (cropped to it); ``None`` for a model of whole images.
        no_face: For a model of face crops: ``fallback`` (``whole_image``: the rows without
            a face box were classified whole; ``error``: they have no answer and count as
            wrong in every metric), ``n`` (those rows) and ``per_class`` (``{class: n}`` by
            true class); ``None`` otherwise.
    """

    checkpoint: Path
    manifest: Path
    split: str
    class_names: list[str]
    metrics: dict[str, Any]
    paths: list[str]
    y_true: np.ndarray
    y_pred: np.ndarray
    probs: np.ndarray
    files: dict[str, Path] = field(default_factory=dict)
    calibration: dict[str, Any] = field(default_factory=dict)
    slices: dict[str, Any] | None = None
    label_map: dict[str, Any] | None = None
    engine: dict[str, Any] = field(default_factory=dict)
    where: dict[str, str] = field(default_factory=dict)
    manifest_source: str = ""
    with_face: np.ndarray | None = None
    no_face: dict[str, Any] | None = None

    @property
    def answered(self) -> np.ndarray:
        """``(N,) bool``: the rows with an answer (all, unless rows without a face box are
        left without one by ``no_face_fallback="error"``)."""
        if self.with_face is None or (self.no_face or {}).get("fallback") != "error":
            return np.ones(len(self.y_true), dtype=bool)
        return np.asarray(self.with_face, dtype=bool)

    @property
    def confusion(self) -> np.ndarray:
        """Confusion matrix ``(K, K) int64``; rows = true class, columns = predicted."""
        return np.asarray(self.metrics["confusion_matrix"], dtype=np.int64)

    def summary(self, dataset: str) -> dict[str, Any]:
        """A compact, plain-type record of this evaluation for the checkpoint's
        ``evaluations`` list (:func:`babyemo.checkpoint.record_evaluation`) and the model
        card: metrics with CIs, per class and per slice, calibration, what was evaluated.

        Args:
            dataset: The dataset's name (e.g. ``infant-emotions``).
        """
        m = self.metrics
        where = ",".join(f"{c}={v}" for c, v in sorted(self.where.items()))
        pairs = ",".join(f"{a}={b}" for a, b in sorted(
            (self.label_map or {}).get("pairs", {}).items()))
        engine = f"{self.engine.get('backend', 'torch')}-{self.engine.get('precision', '')}"
        tta = ("+tta" if self.engine.get("tta") else "") + (
            "+whole" if self.engine.get("whole_images") else "") + (
            "+noface_error" if (self.no_face or {}).get("fallback") == "error" else "")
        key = f"{dataset}|{self.split}|{where}|{pairs}|{engine}{tta}"
        cal = self.calibration
        out: dict[str, Any] = {
            "key": key, "dataset": dataset, "manifest": str(self.manifest), "split": self.split,
            "where": dict(self.where), "label_map": pairs, "engine": dict(self.engine),
            "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            "n": m["n"], "accuracy": m["accuracy"],
            "balanced_accuracy": m["balanced_accuracy"], "macro_f1": m["macro_f1"],
            "per_class": m["per_class"], "ci95": m.get("ci95"),
            "bootstrap_resamples": m.get("bootstrap_resamples", 0),
            "confusion_matrix": m["confusion_matrix"],
            "calibration": {k: cal.get(k) for k in ("temperature", "fitted_on", "n_bins",
                                                     "ece_before", "ece_after",
                                                     "ece_if_calibrated")},
        }
        if self.no_face is not None:
            out["no_face"] = dict(self.no_face)
        if self.slices is not None:
            out["slices"] = {"column": self.slices["column"],
                             "groups": [{k: g.get(k) for k in (*SLICE_COLUMNS, "value", "ci95")}
                                        for g in self.slices["groups"]]}
        return out

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (what ``report.json`` holds)."""
        out = {"checkpoint": str(self.checkpoint), "manifest": str(self.manifest),
               "manifest_source": self.manifest_source, "split": self.split,
               "class_names": self.class_names, **self.metrics,
               "calibration": self.calibration, "engine": self.engine}
        if self.where:
            out["where"] = self.where
        if self.label_map is not None:
            out["label_map"] = self.label_map
        if self.slices is not None:
            out["slices"] = self.slices
        if self.no_face is not None:
            out["no_face"] = self.no_face
        return out

    def rows(self) -> list[tuple[Prediction, str]]:
        """One ``(row, true class name)`` per evaluated image, for ``predictions.csv``
        (:class:`~babyemo.rows.PredictionWriter` with ``with_true``): a row without an
        answer is an ``error=no_face`` row; ``face`` says ``detected`` or ``whole_image``
        for a model of face crops (empty for one of whole images)."""
        names = self.class_names
        answered = self.answered
        out = []
        for i, (p, t, q, pr) in enumerate(zip(self.paths, self.y_true, self.y_pred, self.probs,
                                              strict=True)):
            face = None
            if self.with_face is not None:
                face = FACE_DETECTED if self.with_face[i] else FACE_WHOLE_IMAGE
            if not answered[i]:
                row = Prediction(p, "", float("nan"), (), "no_face",
                                 error_detail="no face box in the manifest "
                                 "(--no-face-fallback error)")
            else:
                row = Prediction(p, names[q], float(pr[q]), tuple(float(v) for v in pr),
                                 top_class=names[q], face=face)
            out.append((row, names[t]))
        return out



def evaluate(checkpoint: str | os.PathLike[str] | None = None, *, model: str | None = None,
             data: str | os.PathLike[str] | None = None, split: str = "test",
             out: str | os.PathLike[str] | None = None, runtime: Runtime | None = None,
             bootstrap: int = 0,
             label_map: str | Sequence[str] | Mapping[str, str] | None = None,
             slice_by: str | None = None, metadata: str | os.PathLike[str] | None = None,
             n_bins: int = DEFAULT_BINS,
             where: Mapping[str, str] | Sequence[str] | str | None = None,
             record: bool = False, faces: str = "auto",
             no_face_fallback: str = "whole_image") -> EvalResult:
    """Evaluate a trained model on one split of a prepared dataset.

    Class names and preprocessing come from the checkpoint; the manifest's labels are
    matched to them by name, so a renamed or reordered folder cannot swap labels.

    Args:
        checkpoint: A ``.pt`` file; or give ``model``; neither = the default model.
        model: Name of a trained model in the registry.
        data: Manifest (CSV or its folder); default: the one the model was trained on
            (recorded in the checkpoint; see
            :func:`babyemo.data.preparation.lookup.manifest_for_model`),
            never the home's mutable "last prepared" pointer.
        split: ``train``, ``val``, ``test``, or ``all``.
        out: Folder for the report files (none written when ``None``).
        runtime: How the model runs: device, precision, backend (torch, or onnxruntime for
            the checkpoint's ONNX export), batch size, workers, parallel readers, flip TTA
            (:class:`~babyemo.runtime.Runtime`; default: ``Runtime()``).
        bootstrap: Number of bootstrap resamples for 95% confidence intervals of accuracy,
            balanced accuracy and macro-F1 (``metrics["ci95"]``, and per slice); 0 = none.
        label_map: Cross-dataset evaluation: ``"crying=sad"`` pairs (a string, a comma
            list, a list of them, or a ``{model_class: data_label}`` dict; see
            :func:`parse_label_map`). Given (even empty), rows whose label matches no model
            class are dropped and counted instead of raising. ``None``: every label must
            be a model class.
        slice_by: A metadata column; metrics are also computed per value of it.
        metadata: Metadata CSV with a ``path`` column (default: the manifest's
            ``metadata.csv``).
        n_bins: Number of equal-width bins of the ECE and the reliability diagram.
        where: Evaluate only the rows whose metadata matches: ``{"column": "value"}`` or
            ``"column=value"`` strings, all of which must hold (e.g. FER-2013's PrivateTest
            half: ``fer_subset=PrivateTest``; see :func:`filter_rows`).
        record: Also store :meth:`EvalResult.summary` in the checkpoint's ``evaluations``
            (:func:`babyemo.checkpoint.record_evaluation`), for its model card; refused
            for a packaged model (read-only) before anything runs.
        faces: ``"auto"``: crop faces as the model was trained (from the manifest's boxes);
            ``"none"``: whole images (for datasets of face crops such as FER-2013).
        no_face_fallback: For a model of face crops, the rows whose image has no face box
            in the manifest: ``"whole_image"`` (default): classified whole, as ``babyemo
            predict`` does by default; ``"error"``: no answer, counted as wrong in every
            metric (accuracy, balanced accuracy, macro-F1, per class, confidence
            intervals, slices; the confusion matrix leaves them out and
            :attr:`EvalResult.no_face` counts them), as ``babyemo predict
            --no-face-fallback error`` would leave them; calibration (ECE, NLL) is then
            measured on the answered rows. ``"full"``: old name of ``"whole_image"``.

    Returns:
        The :class:`EvalResult`.

    Raises:
        RegistryError: No model to evaluate.
        CheckpointError: Unusable checkpoint, or ``record`` on a packaged model.
        ManifestError: Without ``data``: the model's manifest changed since training or
            is not on this machine.
        ExportError: No exported ONNX file, or one that does not match the checkpoint.
        MissingDependencyError: onnxruntime is not installed (backend ``onnxruntime``).
        ConfigError: A label-map entry that names no model class / dataset label, an
            unknown ``faces``, ``no_face_fallback`` or split name; ``out`` is not a folder
            one can write, or lies inside the dataset's image root (see
            :func:`~babyemo.data.loading.folders.check_outputs`), checked before any image is read.
        DataError: Empty split, labels not among the checkpoint's class names (without
            ``label_map``), no row left after mapping or ``where``, or no metadata / column
            for ``slice_by`` or ``where``.
    """
    if faces not in ("auto", "none"):
        raise ConfigError(f"Unknown --faces '{faces}'.", "use auto or none")
    try:
        fallback = NoFaceFallback(no_face_fallback)
    except ValueError:
        raise ConfigError(f"Unknown no-face fallback '{no_face_fallback}'.",
                          "use whole_image or error") from None
    check_split(split)
    ckpt = store.load(checkpoint, model)
    ckpt_path = ckpt.path
    if record:  # before the work: a packaged model's file is read-only
        check_writable(ckpt_path)
    runtime = runtime or Runtime()
    choice = manifest_for_model(data, ckpt.train, ckpt.name or str(ckpt_path))
    if trained_on(choice.path, ckpt.train, split):
        log.warning("%s was trained on the '%s' split of %s: these metrics are not held-out "
                    "estimates.", ckpt.name or ckpt_path, split, choice.path)
    manifest = read_manifest(choice.path)
    warn_split_classes(manifest, split)  # logged: a class absent from the evaluated split
    check_outputs(folders={"output folder": out}, folder_files={"output folder": REPORT_FILES},
                  inputs=[ckpt_path, manifest.path, metadata, runtime.onnx],
                  scanned=[manifest.root])
    conditions = parse_where(where)
    if conditions:
        manifest = filter_rows(manifest, split, conditions, metadata=metadata)
    mapping = None
    if label_map is not None:
        manifest, mapping = apply_label_map(manifest, split, ckpt.class_names, label_map)
    dataset = checkpoint_dataset(manifest, split, ckpt, whole_images=faces == "none")
    inference = InferenceModel(ckpt, runtime)
    logits = inference.dataset_logits(dataset)
    probs = probabilities(logits, inference.temperature)
    y_true = np.asarray(dataset.targets, dtype=np.int64)
    y_pred = probs.argmax(1).astype(np.int64)
    macro = mapping["evaluated_indices"] if mapping else None
    with_face = (np.asarray([f is not None for f in dataset.faces], dtype=bool)
                 if dataset.crop is not None else None)
    no_face = None
    if with_face is not None:
        no_face = {"fallback": fallback.value, "n": int((~with_face).sum()),
                   "per_class": {c: int(((y_true == i) & ~with_face).sum())
                                 for i, c in enumerate(ckpt.class_names)}}
    answered = (with_face if with_face is not None and fallback is NoFaceFallback.error
                else np.ones(len(y_true), dtype=bool))
    names, scored, scored_macro = _with_no_answer(ckpt.class_names, y_pred, answered, macro)
    metrics = _drop_no_answer(classification_metrics(y_true, scored, names,
                                                     macro_labels=scored_macro),
                              len(ckpt.class_names))
    if bootstrap:
        metrics["ci95"] = _drop_no_answer(bootstrap_ci(y_true, scored, names, n=bootstrap,
                                                       macro_labels=scored_macro),
                                          len(ckpt.class_names))
        metrics["bootstrap_resamples"] = bootstrap
    cal_rows = answered if answered.any() else np.ones(len(y_true), dtype=bool)
    report = EvalResult(checkpoint=ckpt_path, manifest=manifest.path,
                        manifest_source=choice.source, split=split,
                        class_names=ckpt.class_names, metrics=metrics, paths=dataset.rel_paths,
                        y_true=y_true, y_pred=y_pred, probs=probs,
                        calibration=calibration_report(ckpt, logits[cal_rows],
                                                       y_true[cal_rows], n_bins),
                        engine={**inference.describe(),
                                "whole_images": faces == "none" and ckpt.faces is not None},
                        with_face=with_face, no_face=no_face)
    if conditions:
        report.where = conditions
    if mapping is not None:
        mapping["n_pred_outside"] = int((~np.isin(y_pred[answered], macro)).sum())
        report.label_map = mapping
    if slice_by:  # rows without an answer: the extra class, wrong like in the metrics
        view = dataclasses.replace(report, class_names=names, y_pred=scored)
        report.slices = slice_metrics(view, manifest, slice_by, metadata=metadata,
                                      bootstrap=bootstrap, macro_labels=scored_macro,
                                      n_bins=n_bins)
    if out is not None:
        report.files = write_eval_reports(report, Path(out), dataset)
    if record:
        record_evaluation(ckpt_path, report.summary(manifest.name))
    return report



_NO_ANSWER = "\x00no answer"
"""The extra class of the rows without an answer while metrics are computed (a name no
label can have: manifests refuse NUL characters); never in a result."""


def _with_no_answer(class_names: list[str], y_pred: np.ndarray, answered: np.ndarray,
                    macro: Sequence[int] | None
                    ) -> tuple[list[str], np.ndarray, Sequence[int] | None]:
    """``(class names, predictions, macro labels)`` to score ``y_pred`` with, the rows
    without an answer counted wrong.

    Every row answered: the inputs unchanged. Else those rows predict an extra class ``K``
    (:data:`_NO_ANSWER`) that no row is: they lower accuracy and their true class's
    recall, raise no class's false positives, and, left out of the macro labels, add no
    F1 term of their own (as the model classes of a label map that no dataset label maps
    to, see :func:`babyemo.metrics.classification_metrics`).
    """
    if answered.all():
        return class_names, y_pred, macro
    k = len(class_names)
    scored = np.where(answered, y_pred, k).astype(np.int64)
    return [*class_names, _NO_ANSWER], scored, list(macro if macro is not None else range(k))


def _drop_no_answer(metrics: dict[str, Any], k: int) -> dict[str, Any]:
    """``metrics`` without the extra class of :func:`_with_no_answer` (its per-class entry,
    its row and column of the confusion matrix: the rows without an answer are counted
    in :attr:`EvalResult.no_face` instead)."""
    (metrics.get("per_class") or {}).pop(_NO_ANSWER, None)
    cm = metrics.get("confusion_matrix")
    if cm is not None and len(cm) > k:
        metrics["confusion_matrix"] = [row[:k] for row in cm[:k]]
    return metrics


EvalReport = EvalResult
"""Old name of :class:`EvalResult` (kept for one release)."""

__all__ = ["EvalReport", "EvalResult", "evaluate"]
