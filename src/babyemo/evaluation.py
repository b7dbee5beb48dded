"""Evaluate a checkpoint on a manifest split: metrics, confusion matrix, reports.

``evaluate(...) -> EvalReport``; with ``out`` it writes ``report.json``,
``confusion.csv``, ``confusion.png`` (counts and row-normalised), ``predictions.csv``,
``misclassified.png`` (a grid of wrong predictions, true vs predicted label),
``reliability.png`` (reliability diagrams before and after temperature scaling) and, with
``slice_by``, ``slices.csv`` (metrics per value of a metadata column).

Probabilities are ``softmax(logits / T)`` with the checkpoint's temperature ``T`` (see
:mod:`babyemo.calibration`); the report gives the ECE at ``T = 1`` and at ``T``.

Cross-dataset evaluation (``label_map``): each dataset label is matched to a model class
(by equal name, or by a ``MODEL=DATA`` / ``DATA=MODEL`` pair). Rows whose label matches no
model class are dropped and counted. The model still chooses among all its classes: a
prediction of a class that no dataset label maps to is wrong, and is counted in
``label_map["n_pred_outside"]``; such classes are left out of the macro-F1 mean (see
``macro_labels`` in :func:`babyemo.metrics.classification_metrics`).
"""

from __future__ import annotations

import datetime as _dt
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from babyemo import reports
from babyemo.calibration import (
    DEFAULT_BINS,
    calibration_warnings,
    nll,
    reliability_bins,
    softmax,
)
from babyemo.checkpoint import Checkpoint, load_checkpoint
from babyemo.config import Precision
from babyemo.data.dataset import ManifestDataset, checkpoint_dataset
from babyemo.data.folders import check_outputs
from babyemo.data.lookup import manifest_for_model, trained_on
from babyemo.data.manifest import Manifest, check_split, read_manifest, warn_split_classes
from babyemo.devices import default_num_workers, default_streams, stream_batches
from babyemo.engines import Engine, FlipTTA, TorchEngine, create_engine
from babyemo.errors import ConfigError, DataError
from babyemo.metrics import bootstrap_ci, classification_metrics
from babyemo.models.store import resolve_checkpoint
from babyemo.progress import progress_bar

log = logging.getLogger(__name__)

MAX_GRID = 36
"""Most misclassified examples drawn in ``misclassified.png``."""

REPORT_FILES = ("report.json", "confusion.csv", "confusion.png", "predictions.csv",
                "misclassified.png", "reliability.png", "slices.csv")
"""The files :func:`write_eval_reports` may write into ``out``."""


@dataclass
class EvalReport:
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
            at ``T``), ``nll_before`` / ``nll_after`` (nats) and ``reliability``
            (``before`` / ``after`` bins, see
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
            or found with the recorded bytes (see :mod:`babyemo.data.lookup`).
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
            "+whole" if self.engine.get("whole_images") else "")
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
                                                     "ece_before", "ece_after")},
        }
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
        return out


def predict_logits(ckpt: Checkpoint, dataset: ManifestDataset, *, device: str = "auto",
                   precision: Precision | str = Precision.auto, batch_size: int = 64,
                   num_workers: int | None = None, engine: Engine | None = None,
                   streams: int | None = None) -> np.ndarray:
    """Logits of a checkpoint's model over a labelled dataset.

    Args:
        ckpt: The checkpoint.
        dataset: Its images, eval-transformed (``(C, S, S) uint8`` items).
        device: ``auto|cpu|cuda|cuda:N|mps`` (ignored when ``engine`` is given).
        precision: ``auto|fp32|bf16|fp16`` (ignored when ``engine`` is given).
        batch_size: Images per forward pass.
        num_workers: DataLoader workers (default: see :func:`default_num_workers`).
        engine: The engine to run (default: a :class:`babyemo.engines.TorchEngine` of
            ``ckpt`` on ``device`` in ``precision``).
        streams: Threads that each read and run whole batches on one intra-op thread
            (default: :func:`babyemo.devices.default_streams`; 1 = read, then run the
            model on all intra-op threads, batch after batch).

    Returns:
        ``(N, num_classes) float32`` logits, in dataset order.
    """
    engine = engine or TorchEngine(ckpt, device=device, precision=precision)
    workers = num_workers if num_workers is not None else default_num_workers(engine.device)
    if streams is None:
        streams = default_streams(engine.device, engine.backend, workers)
    out = []
    with progress_bar("evaluating", total=len(dataset), unit="img") as bar:
        if streams > 1:
            for logits in stream_batches(dataset, batch_size, default_collate,
                                         lambda batch: engine.logits(batch[0]), streams):
                out.append(logits)
                bar.advance(len(logits))
        else:
            loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                                num_workers=workers, pin_memory=engine.device.type == "cuda")
            for x, _ in loader:
                out.append(engine.logits(x))
                bar.advance(len(x))
    return torch.cat(out).numpy()


def engine_info(engine: Engine) -> dict[str, Any]:
    """The ``engine`` entry of :class:`EvalReport` for ``engine`` (JSON-safe)."""
    info: dict[str, Any] = {"backend": engine.backend, "precision": engine.precision,
                            "device": str(engine.device), "tta": isinstance(engine, FlipTTA)}
    meta = getattr(engine, "metadata", None)
    if meta is not None:
        info["onnx"] = str(engine.path)
        if meta.extra.get("int8_eval"):
            info["int8_eval"] = meta.extra["int8_eval"]
    return info


def evaluate(checkpoint: str | os.PathLike[str] | None = None, *, model: str | None = None,
             data: str | os.PathLike[str] | None = None, split: str = "test",
             out: str | os.PathLike[str] | None = None, device: str = "auto",
             precision: Precision | str = Precision.auto, batch_size: int = 64,
             num_workers: int | None = None, bootstrap: int = 0,
             label_map: str | Sequence[str] | Mapping[str, str] | None = None,
             slice_by: str | None = None, metadata: str | os.PathLike[str] | None = None,
             n_bins: int = DEFAULT_BINS, backend: str = "torch",
             onnx: str | os.PathLike[str] | None = None, tta: bool = False,
             where: Mapping[str, str] | Sequence[str] | str | None = None,
             record: bool = False, faces: str = "auto",
             streams: int | None = None) -> EvalReport:
    """Evaluate a trained model on one split of a prepared dataset.

    Class names and preprocessing come from the checkpoint; the manifest's labels are
    matched to them by name, so a renamed or reordered folder cannot swap labels.

    Args:
        checkpoint: A ``.pt`` file; or give ``model``; neither = the default model.
        model: Name of a trained model in the registry.
        data: Manifest (CSV or its folder); default: the one the model was trained on
            (recorded in the checkpoint; see :func:`babyemo.data.lookup.manifest_for_model`),
            never the home's mutable "last prepared" pointer.
        split: ``train``, ``val``, ``test``, or ``all``.
        out: Folder for the report files (none written when ``None``).
        device: ``auto|cpu|cuda|cuda:N|mps``.
        precision: ``auto|fp32|bf16|fp16``.
        batch_size: Images per forward pass.
        num_workers: DataLoader workers (default: see :func:`default_num_workers`).
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
        backend: ``"torch"`` or ``"onnxruntime"`` (the checkpoint's ONNX export, e.g. its
            int8 model; see :func:`babyemo.engines.create_engine`).
        onnx: With ``onnxruntime``: the exported file (default: ``<checkpoint stem>.onnx``
            beside the checkpoint, else ``<stem>.int8.onnx``).
        tta: Test-time augmentation: average the logits of each image and its horizontal
            flip (:class:`babyemo.engines.FlipTTA`; twice the compute).
        where: Evaluate only the rows whose metadata matches: ``{"column": "value"}`` or
            ``"column=value"`` strings, all of which must hold (e.g. FER-2013's PrivateTest
            half: ``fer_subset=PrivateTest``; see :func:`filter_rows`).
        record: Also store :meth:`EvalReport.summary` in the checkpoint's ``evaluations``
            (:func:`babyemo.checkpoint.record_evaluation`), for its model card; refused
            for a packaged model (read-only) before anything runs.
        faces: ``"auto"``: crop faces as the model was trained (from the manifest's boxes);
            ``"none"``: whole images (for datasets of face crops such as FER-2013).
        streams: CPU streams of :func:`predict_logits` (default: one per core for the
            torch engine on the CPU).

    Returns:
        The :class:`EvalReport`.

    Raises:
        RegistryError: No model to evaluate.
        CheckpointError: Unusable checkpoint, or ``record`` on a packaged model.
        ManifestError: Without ``data``: the model's manifest changed since training or
            is not on this machine.
        ExportError: No exported ONNX file, or one that does not match the checkpoint.
        MissingDependencyError: onnxruntime is not installed (backend ``onnxruntime``).
        ConfigError: A label-map entry that names no model class / dataset label, an
            unknown ``faces`` or split name; ``out`` is not a folder one can write, or
            lies inside the dataset's image root (see
            :func:`~babyemo.data.folders.check_outputs`), checked before any image is read.
        DataError: Empty split, labels not among the checkpoint's class names (without
            ``label_map``), no row left after mapping or ``where``, or no metadata / column
            for ``slice_by`` or ``where``.
    """
    if faces not in ("auto", "none"):
        raise ConfigError(f"Unknown --faces '{faces}'.", "use auto or none")
    check_split(split)
    ckpt_path = resolve_checkpoint(checkpoint, model)
    if record:  # before the work: a packaged model's file is read-only
        from babyemo.checkpoint import check_writable

        check_writable(ckpt_path)
    ckpt = load_checkpoint(ckpt_path)
    choice = manifest_for_model(data, ckpt.train, model or str(ckpt_path))
    if trained_on(choice.path, ckpt.train, split):
        log.warning("%s was trained on the '%s' split of %s: these metrics are not held-out "
                    "estimates.", model or ckpt_path, split, choice.path)
    manifest = read_manifest(choice.path)
    warn_split_classes(manifest, split)  # logged: a class absent from the evaluated split
    check_outputs(folders={"output folder": out}, folder_files={"output folder": REPORT_FILES},
                  inputs=[ckpt_path, manifest.path, metadata, onnx], scanned=[manifest.root])
    conditions = parse_where(where)
    if conditions:
        manifest = filter_rows(manifest, split, conditions, metadata=metadata)
    mapping = None
    if label_map is not None:
        manifest, mapping = apply_label_map(manifest, split, ckpt.class_names, label_map)
    dataset = checkpoint_dataset(manifest, split, ckpt, whole_images=faces == "none")
    engine = create_engine(ckpt, backend=backend, onnx=onnx, device=device, precision=precision,
                           tta=tta)
    logits = predict_logits(ckpt, dataset, batch_size=batch_size, num_workers=num_workers,
                            engine=engine, streams=streams)
    probs = torch.softmax(torch.from_numpy(logits) / ckpt.temperature, dim=1).numpy()
    y_true = np.asarray(dataset.targets, dtype=np.int64)
    y_pred = probs.argmax(1).astype(np.int64)
    macro = mapping["evaluated_indices"] if mapping else None
    metrics = classification_metrics(y_true, y_pred, ckpt.class_names, macro_labels=macro)
    if bootstrap:
        metrics["ci95"] = bootstrap_ci(y_true, y_pred, ckpt.class_names, n=bootstrap,
                                       macro_labels=macro)
        metrics["bootstrap_resamples"] = bootstrap
    report = EvalReport(checkpoint=ckpt_path, manifest=manifest.path,
                        manifest_source=choice.source, split=split,
                        class_names=ckpt.class_names, metrics=metrics, paths=dataset.rel_paths,
                        y_true=y_true, y_pred=y_pred, probs=probs,
                        calibration=calibration_report(ckpt, logits, y_true, n_bins),
                        engine={**engine_info(engine),
                                "whole_images": faces == "none" and ckpt.faces is not None})
    if conditions:
        report.where = conditions
    if mapping is not None:
        mapping["n_pred_outside"] = int((~np.isin(y_pred, macro)).sum())
        report.label_map = mapping
    if slice_by:
        report.slices = slice_metrics(report, manifest, slice_by, metadata=metadata,
                                      bootstrap=bootstrap, macro_labels=macro, n_bins=n_bins)
    if out is not None:
        report.files = write_eval_reports(report, Path(out), dataset)
    if record:
        from babyemo.checkpoint import record_evaluation

        record_evaluation(ckpt_path, report.summary(manifest.name))
    return report


def write_eval_reports(report: EvalReport, out: Path, dataset: ManifestDataset) -> dict[str, Path]:
    """Write the report files of ``report`` into ``out`` (atomically, one by one).

    ``confusion.png`` and ``reliability.png`` are titled ``"<model> on <split> (n=N)"``
    (plus the ``where`` conditions), ``<model>`` being the registered name of the
    checkpoint, else its run folder's name (see :func:`babyemo.models.store.model_label`).

    Returns:
        Mapping of report kind to file path.
    """
    from babyemo.models.store import model_label

    out.mkdir(parents=True, exist_ok=True)
    names = report.class_names
    files = {"report": out / "report.json", "confusion_csv": out / "confusion.csv",
             "confusion_png": out / "confusion.png", "predictions": out / "predictions.csv",
             "misclassified": out / "misclassified.png", "reliability": out / "reliability.png"}
    if report.slices is not None:
        files["slices"] = out / "slices.csv"
        write_slices_csv(report.slices, files["slices"])
    cal = report.calibration
    where = "".join(f", {c}={v}" for c, v in sorted(report.where.items()))
    title = f"{model_label(report.checkpoint)} on {report.split}{where} (n={len(report.y_true)})"
    reports.plot_reliability(
        [("before (T = 1)", cal["reliability"]["before"]),
         (f"after (T = {cal['temperature']:.3g})", cal["reliability"]["after"])],
        files["reliability"], title=title)
    reports.write_json(report.to_dict(), files["report"])
    reports.write_confusion_csv(report.confusion, names, files["confusion_csv"])
    reports.plot_confusion(report.confusion, names, files["confusion_png"], title=title)
    header = ["path", "true", "pred", "confidence", *[f"prob_{c}" for c in names]]
    rows = [[p, names[t], names[q], f"{pr[q]:.4f}", *[f"{v:.4f}" for v in pr]]
            for p, t, q, pr in zip(report.paths, report.y_true, report.y_pred, report.probs,
                                         strict=True)]
    reports.write_csv_rows(files["predictions"], header, rows)
    wrong = np.flatnonzero(report.y_true != report.y_pred)[:MAX_GRID]
    items = []
    for i in wrong:
        img = dataset.load(int(i)).copy()
        img.thumbnail((128, 128))
        q = report.y_pred[i]
        items.append((img, f"true: {names[report.y_true[i]]}\npred: {names[q]} "
                           f"{report.probs[i, q]:.2f}", False))
    reports.plot_image_grid(items, files["misclassified"], title="misclassified (true vs pred)")
    return files


# --------------------------------------------------------------------------- calibration


def calibration_report(ckpt: Checkpoint, logits: np.ndarray, y_true: np.ndarray,
                       n_bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """ECE and NLL of ``logits`` before (``T = 1``) and after the checkpoint's temperature.

    Args:
        ckpt: The checkpoint (its :attr:`~babyemo.checkpoint.Checkpoint.temperature`).
        logits: ``(N, K) float32`` logits.
        y_true: ``(N,) int64`` true class indices.
        n_bins: Number of equal-width confidence bins.

    Returns:
        The ``calibration`` entry of :class:`EvalReport` (JSON-safe); its ``warnings``
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


# --------------------------------------------------------------------------- label map


def parse_label_map(label_map: str | Sequence[str] | Mapping[str, str] | None
                    ) -> list[tuple[str, str]]:
    """Parse ``A=B`` pairs: ``"crying=sad"``, ``"crying=sad,angry=angry"``, a list of such
    strings (e.g. repeated ``--label-map`` options), or a ``{A: B}`` dict.

    Returns:
        The ``(A, B)`` pairs in order (names stripped of spaces).

    Raises:
        ConfigError: An entry without exactly one ``=`` or with an empty side.
    """
    if label_map is None:
        return []
    if isinstance(label_map, Mapping):
        items = [f"{a}={b}" for a, b in label_map.items()]
    elif isinstance(label_map, str):
        items = [label_map]
    else:
        items = list(label_map)
    pairs = []
    for item in items:
        for entry in str(item).split(","):
            if not entry.strip():
                continue
            parts = [p.strip() for p in entry.split("=")]
            if len(parts) != 2 or not all(parts):
                raise ConfigError(f"Bad label-map entry {entry.strip()!r}.",
                                  "write MODEL_CLASS=DATA_LABEL, e.g. crying=sad")
            pairs.append((parts[0], parts[1]))
    return pairs


def resolve_label_map(pairs: Sequence[tuple[str, str]], class_names: Sequence[str],
                      data_labels: Sequence[str]) -> dict[str, str | None]:
    """Match every dataset label to a model class (or to none).

    A pair ``A=B`` reads as model class ``A`` = dataset label ``B``; when only the reverse
    fits (``A`` a dataset label, ``B`` a model class) it reads the other way round, so
    ``crying=sad`` works both for an infant model (crying) on FER-2013 (sad) and for a
    FER-2013 model (sad) on the infant set (crying). Several dataset labels may map to one
    model class. A dataset label not named in any pair matches the model class of the
    same name, if there is one.

    Args:
        pairs: From :func:`parse_label_map`.
        class_names: The model's classes.
        data_labels: The dataset's labels.

    Returns:
        ``{dataset label: model class or None}`` for every dataset label.

    Raises:
        ConfigError: A pair that names no model class and dataset label in either order,
            or a dataset label mapped to two different classes.
    """
    classes, labels = set(class_names), set(data_labels)
    mapped: dict[str, str] = {}
    for a, b in pairs:
        if a in classes and b in labels:
            label, cls = b, a
        elif a in labels and b in classes:
            label, cls = a, b
        else:
            raise ConfigError(
                f"Label map {a}={b}: needs a model class and a dataset label (either order).",
                f"model classes: {', '.join(class_names)}; dataset labels: "
                f"{', '.join(sorted(labels))}")
        if mapped.get(label, cls) != cls:
            raise ConfigError(f"Label map: dataset label '{label}' is mapped to both "
                              f"'{mapped[label]}' and '{cls}'.")
        mapped[label] = cls
    return {lab: mapped.get(lab, lab if lab in classes else None) for lab in sorted(labels)}


def apply_label_map(manifest: Manifest, split: str, class_names: Sequence[str],
                    label_map: str | Sequence[str] | Mapping[str, str]
                    ) -> tuple[Manifest, dict[str, Any]]:
    """Relabel a manifest into the model's classes and drop rows that match none.

    The manifest's files are untouched: a copy with renamed labels and without the
    dropped rows is returned.

    Args:
        manifest: The dataset.
        split: The split evaluated (``all`` = every row): the counts are of this split.
        class_names: The model's classes, in logit order.
        label_map: As in :func:`parse_label_map`.

    Returns:
        ``(manifest, info)``; ``info`` (JSON-safe) has ``pairs`` (``{dataset label: model
        class}`` of the labels kept), ``evaluated_classes`` / ``evaluated_indices`` (the
        model classes some dataset label maps to: the dataset's label set, in model
        terms), ``outside_classes`` (model classes no dataset label maps to),
        ``n_kept``, ``n_dropped`` and ``dropped`` (``{dataset label: rows}``) of the split.

    Raises:
        ConfigError: See :func:`resolve_label_map`.
        DataError: No row of the split matches a model class.
    """
    to_class = resolve_label_map(parse_label_map(label_map), class_names,
                                 sorted({r.label for r in manifest.rows}))
    in_split = [r for r in manifest.rows if split == "all" or r.split == split]
    kept = [replace(r, label=to_class[r.label]) for r in in_split if to_class[r.label]]
    dropped: dict[str, int] = {}
    for r in in_split:
        if to_class[r.label] is None:
            dropped[r.label] = dropped.get(r.label, 0) + 1
    if not kept:
        raise DataError(f"No row of the '{split}' split of {manifest.path} has a label that "
                        f"matches a model class ({', '.join(class_names)}).",
                        "add --label-map MODEL_CLASS=DATA_LABEL pairs")
    targets = set(filter(None, to_class.values()))
    evaluated = [c for c in class_names if c in targets]
    info = {"pairs": {k: v for k, v in to_class.items() if v},
            "evaluated_classes": evaluated,
            "evaluated_indices": [class_names.index(c) for c in evaluated],
            "outside_classes": [c for c in class_names if c not in targets],
            "n_kept": len(kept), "n_dropped": len(in_split) - len(kept),
            "dropped": dict(sorted(dropped.items()))}
    relabelled = replace(manifest, rows=kept, class_names=sorted({r.label for r in kept}))
    return relabelled, info


# --------------------------------------------------------------------------- slices


def parse_where(where: Mapping[str, str] | Sequence[str] | str | None) -> dict[str, str]:
    """``{column: value}`` from ``"column=value"`` strings (or a mapping, returned as a dict).

    Raises:
        ConfigError: An entry without ``=`` or with an empty column.
    """
    if where is None:
        return {}
    if isinstance(where, Mapping):
        return {str(k): str(v) for k, v in where.items()}
    items = [where] if isinstance(where, str) else list(where)
    out: dict[str, str] = {}
    for item in items:
        column, sep, value = item.partition("=")
        if not sep or not column.strip():
            raise ConfigError(f"Bad --where '{item}'.", "use COLUMN=VALUE, e.g. "
                              "fer_subset=PrivateTest")
        out[column.strip()] = value.strip()
    return out


def filter_rows(manifest: Manifest, split: str, conditions: Mapping[str, str], *,
                metadata: str | os.PathLike[str] | None = None) -> Manifest:
    """The manifest with only the ``split`` rows whose metadata matches every condition.

    Args:
        manifest: The dataset.
        split: The split to evaluate (``all``: every row).
        conditions: ``{column: value}``; a row matches when each column's value equals it
            (:data:`MISSING_VALUE` matches images without a value).
        metadata: A metadata CSV (default: the manifest's, see :func:`slice_values`).

    Raises:
        DataError: No metadata or column, or no row left.
    """
    rows = manifest.rows if split == "all" else manifest.rows_for(split)
    keep = [True] * len(rows)
    for column, value in conditions.items():
        values, _ = slice_values(manifest, [r.path for r in rows], column, metadata)
        keep = [k and v == value for k, v in zip(keep, values, strict=True)]
    kept = [r for r, k in zip(rows, keep, strict=True) if k]
    if not kept:
        wanted = ", ".join(f"{c}={v}" for c, v in conditions.items())
        raise DataError(f"No '{split}' row of {manifest.path} has {wanted}.",
                        "check the column values in the metadata CSV")
    return replace(manifest, rows=kept)


MISSING_VALUE = "(missing)"
"""Slice value of images without a metadata row or with an empty cell."""

SLICE_COLUMNS = ("n", "accuracy", "balanced_accuracy", "macro_f1", "ece")
"""Numbers reported per slice."""


def slice_values(manifest: Manifest, paths: Sequence[str], column: str,
                 metadata: str | os.PathLike[str] | None = None) -> tuple[list[str], Path]:
    """The value of a metadata column for each image path.

    Args:
        manifest: The dataset (its ``metadata.csv``, recorded in ``dataset.json``, is used
            when ``metadata`` is ``None``).
        paths: Image paths as in ``manifest.csv``.
        column: Metadata column name.
        metadata: A metadata CSV with a ``path`` column.

    Returns:
        ``(values, metadata file)``; images without a value get :data:`MISSING_VALUE`.

    Raises:
        DataError: No metadata, no such column, or no path of the CSV in the dataset.
    """
    from babyemo.data.metadata import check_metadata, read_metadata

    if metadata is not None:
        meta_path = Path(metadata)
    elif manifest.info.get("metadata"):
        meta_path = manifest.path.parent / str(manifest.info["metadata"])
    else:
        raise DataError(f"Slicing by '{column}' needs metadata, and {manifest.path} has none.",
                        "pass --metadata CSV (a path column; e.g. from `babyemo data "
                        "metadata`) or prepare the data with --metadata")
    columns, rows = read_metadata(meta_path)
    if column not in columns:
        raise DataError(f"The metadata {meta_path} has no column '{column}'.",
                        f"columns: {', '.join(columns) or 'none'}")
    check_metadata(meta_path, list(paths), rows)  # raises when no path matches
    values = [rows.get(p, {}).get(column, "") or MISSING_VALUE for p in paths]
    return values, meta_path


def slice_metrics(report: EvalReport, manifest: Manifest, column: str, *,
                  metadata: str | os.PathLike[str] | None = None, bootstrap: int = 0,
                  macro_labels: Sequence[int] | None = None,
                  n_bins: int = DEFAULT_BINS) -> dict[str, Any]:
    """Metrics of ``report``'s predictions per value of a metadata column.

    Each slice gets ``n``, accuracy, balanced accuracy and macro-F1
    (:func:`babyemo.metrics.classification_metrics`), its ECE, and with ``bootstrap`` their
    95% confidence intervals (:func:`babyemo.metrics.bootstrap_ci`). Small slices have
    wide intervals: compare slices by their intervals, not their point values.

    Args:
        report: An evaluation (``paths``, ``y_true``, ``y_pred``, ``probs``).
        manifest: The dataset evaluated (for its metadata).
        column: Metadata column, e.g. ``source``.
        metadata: Metadata CSV (default: the manifest's).
        bootstrap: Bootstrap resamples per slice (0 = none, else >= 100).
        macro_labels: As in :func:`babyemo.metrics.classification_metrics`.
        n_bins: ECE bins.

    Returns:
        ``{"column", "metadata", "groups": [{"value", "n", "accuracy",
        "balanced_accuracy", "macro_f1", "ece", "ci95"?}, ...]}``, groups sorted by value.

    Raises:
        DataError: See :func:`slice_values`.
    """
    values, meta_path = slice_values(manifest, report.paths, column, metadata)
    arr = np.asarray(values, dtype=object)
    groups = []
    for value in sorted(set(values)):
        idx = np.flatnonzero(arr == value)
        t, p = report.y_true[idx], report.y_pred[idx]
        m = classification_metrics(t, p, report.class_names, macro_labels=macro_labels)
        row: dict[str, Any] = {"value": value, "n": m["n"], "accuracy": m["accuracy"],
                               "balanced_accuracy": m["balanced_accuracy"],
                               "macro_f1": m["macro_f1"],
                               "ece": reliability_bins(report.probs[idx], t, n_bins).ece}
        if bootstrap:
            row["ci95"] = bootstrap_ci(t, p, report.class_names, n=bootstrap,
                                       macro_labels=macro_labels)
        groups.append(row)
    return {"column": column, "metadata": str(meta_path), "groups": groups}


def write_slices_csv(slices: dict[str, Any], path: Path) -> None:
    """Write :func:`slice_metrics` output as CSV: ``column, value, n, accuracy,
    balanced_accuracy, macro_f1, ece`` and, with bootstrap, ``<metric>_ci_low/high``."""
    with_ci = all("ci95" in g for g in slices["groups"])
    ci_keys = ["accuracy", "balanced_accuracy", "macro_f1"] if with_ci else []
    header = ["column", "value", *SLICE_COLUMNS,
              *[f"{k}_ci_{end}" for k in ci_keys for end in ("low", "high")]]
    rows = []
    for g in slices["groups"]:
        rows.append([slices["column"], g["value"], g["n"],
                     *[f"{g[k]:.4f}" for k in SLICE_COLUMNS[1:]],
                     *[f"{v:.4f}" for k in ci_keys for v in g["ci95"][k]]])
    reports.write_csv_rows(path, header, rows)
