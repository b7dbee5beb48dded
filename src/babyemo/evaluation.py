"""Evaluate a checkpoint on a manifest split: metrics, confusion matrix, reports.

``evaluate(...) -> EvalReport``; with ``out`` it writes ``report.json``,
``confusion.csv``, ``confusion.png`` (counts and row-normalised), ``predictions.csv`` and
``misclassified.png`` (a grid of wrong predictions, true vs predicted label).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader

from babyemo import reports
from babyemo.checkpoint import Checkpoint, load_checkpoint
from babyemo.config import Precision
from babyemo.data.dataset import ManifestDataset
from babyemo.data.manifest import read_manifest
from babyemo.data.prepare import last_manifest
from babyemo.devices import default_num_workers, resolve_device, resolve_precision
from babyemo.metrics import bootstrap_ci, classification_metrics
from babyemo.models.store import resolve_checkpoint
from babyemo.progress import progress_bar
from babyemo.transforms import eval_transform

log = logging.getLogger(__name__)

MAX_GRID = 36
"""Most misclassified examples drawn in ``misclassified.png``."""


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
        probs: Softmax probabilities, ``(N, num_classes) float32``.
        files: Report files written (empty without ``out``).
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

    @property
    def confusion(self) -> np.ndarray:
        """Confusion matrix ``(K, K) int64``; rows = true class, columns = predicted."""
        return np.asarray(self.metrics["confusion_matrix"], dtype=np.int64)

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe summary (what ``report.json`` holds)."""
        return {"checkpoint": str(self.checkpoint), "manifest": str(self.manifest),
                "split": self.split, "class_names": self.class_names, **self.metrics}


@torch.inference_mode()
def predict_logits(ckpt: Checkpoint, dataset: ManifestDataset, *, device: str = "auto",
                   precision: Precision | str = Precision.auto, batch_size: int = 64,
                   num_workers: int | None = None) -> np.ndarray:
    """Logits of a checkpoint's model over a labelled dataset.

    Returns:
        ``(N, num_classes) float32`` logits, in dataset order.
    """
    dev = resolve_device(device)
    plan = resolve_precision(precision, dev)
    model = ckpt.build_model(dev)
    if dev.type in ("cpu", "cuda"):
        model = model.to(memory_format=torch.channels_last)
    workers = num_workers if num_workers is not None else default_num_workers(dev)
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=workers,
                        pin_memory=dev.type == "cuda")
    out = []
    with progress_bar("evaluating", total=len(dataset), unit="img") as bar:
        for x, _ in loader:
            x = x.to(dev, non_blocking=dev.type == "cuda")
            if dev.type in ("cpu", "cuda"):
                x = x.contiguous(memory_format=torch.channels_last)
            with plan.autocast(dev):
                out.append(model(x).float().cpu())
            bar.advance(len(x))
    return torch.cat(out).numpy()


def evaluate(checkpoint: str | os.PathLike[str] | None = None, *, model: str | None = None,
             data: str | os.PathLike[str] | None = None, split: str = "test",
             out: str | os.PathLike[str] | None = None, device: str = "auto",
             precision: Precision | str = Precision.auto, batch_size: int = 64,
             num_workers: int | None = None, bootstrap: int = 0) -> EvalReport:
    """Evaluate a trained model on one split of a prepared dataset.

    Class names and preprocessing come from the checkpoint; the manifest's labels are
    matched to them by name, so a renamed or reordered folder cannot swap labels.

    Args:
        checkpoint: A ``.pt`` file; or give ``model``; neither = the default model.
        model: Name of a trained model in the registry.
        data: Manifest (CSV or its folder); default: the last prepared dataset.
        split: ``train``, ``val``, ``test``, or ``all``.
        out: Folder for the report files (none written when ``None``).
        device: ``auto|cpu|cuda|cuda:N|mps``.
        precision: ``auto|fp32|bf16|fp16``.
        batch_size: Images per forward pass.
        num_workers: DataLoader workers (default: see :func:`default_num_workers`).
        bootstrap: Number of bootstrap resamples for 95% confidence intervals of accuracy,
            balanced accuracy and macro-F1 (``metrics["ci95"]``); 0 = none.

    Returns:
        The :class:`EvalReport`.

    Raises:
        RegistryError: No model to evaluate.
        CheckpointError: Unusable checkpoint.
        DataError: Empty split, or labels not among the checkpoint's class names.
    """
    ckpt_path = resolve_checkpoint(checkpoint, model)
    ckpt = load_checkpoint(ckpt_path)
    manifest = read_manifest(Path(data) if data else last_manifest())
    dataset = ManifestDataset(manifest, None if split == "all" else split, ckpt.class_names,
                              ckpt.input_spec, eval_transform(ckpt.input_spec),
                              crop=ckpt.crop_spec)
    logits = predict_logits(ckpt, dataset, device=device, precision=precision,
                            batch_size=batch_size, num_workers=num_workers)
    probs = torch.softmax(torch.from_numpy(logits), dim=1).numpy()
    y_true = np.asarray(dataset.targets, dtype=np.int64)
    y_pred = probs.argmax(1).astype(np.int64)
    metrics = classification_metrics(y_true, y_pred, ckpt.class_names)
    if bootstrap:
        metrics["ci95"] = bootstrap_ci(y_true, y_pred, ckpt.class_names, n=bootstrap)
        metrics["bootstrap_resamples"] = bootstrap
    report = EvalReport(checkpoint=ckpt_path, manifest=manifest.path, split=split,
                        class_names=ckpt.class_names, metrics=metrics, paths=dataset.rel_paths,
                        y_true=y_true, y_pred=y_pred, probs=probs)
    if out is not None:
        report.files = write_eval_reports(report, Path(out), dataset)
    return report


def write_eval_reports(report: EvalReport, out: Path, dataset: ManifestDataset) -> dict[str, Path]:
    """Write the report files of ``report`` into ``out`` (atomically, one by one).

    Returns:
        Mapping of report kind to file path.
    """
    out.mkdir(parents=True, exist_ok=True)
    names = report.class_names
    files = {"report": out / "report.json", "confusion_csv": out / "confusion.csv",
             "confusion_png": out / "confusion.png", "predictions": out / "predictions.csv",
             "misclassified": out / "misclassified.png"}
    reports.write_json(report.to_dict(), files["report"])
    reports.write_confusion_csv(report.confusion, names, files["confusion_csv"])
    reports.plot_confusion(report.confusion, names, files["confusion_png"],
                           title=f"{Path(report.checkpoint).name} on {report.split}")
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
