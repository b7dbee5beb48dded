"""Batch prediction over image files with a checkpoint (or a registered trained model).

:class:`Predictor` streams :class:`Prediction` rows: a file that cannot be read yields a
row with an ``error`` and the run goes on; no row is ever filled from another image.
:func:`predict_to_files` writes them as CSV (``path, label, confidence, prob_<class>...,
error``) and/or JSON, atomically, without holding all rows in memory for the CSV.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch
from torch.utils.data import DataLoader

from babyemo.checkpoint import load_checkpoint
from babyemo.config import Precision
from babyemo.data.dataset import FileDataset, collate_files, find_images
from babyemo.devices import default_num_workers, resolve_device, resolve_precision
from babyemo.io import atomic_open
from babyemo.models.store import resolve_checkpoint
from babyemo.progress import progress_bar
from babyemo.transforms import eval_transform


@dataclass(frozen=True)
class Prediction:
    """One output row.

    Attributes:
        path: The file as found.
        label: Predicted class name (``""`` on error).
        confidence: Probability of ``label`` in [0, 1] (``nan`` on error).
        probs: Probability per class, in ``class_names`` order (empty on error).
        error: ``None``, or why the file could not be classified.
    """

    path: str
    label: str
    confidence: float
    probs: tuple[float, ...]
    error: str | None = None


@dataclass
class PredictSummary:
    """Counts of a prediction run.

    Attributes:
        n_files: Files considered (rows written).
        n_failed: Rows with an error.
        n_hidden_skipped: Hidden files and folders skipped while scanning.
        label_counts: Predicted label → number of rows.
        seconds: Wall time in seconds.
    """

    n_files: int = 0
    n_failed: int = 0
    n_hidden_skipped: int = 0
    label_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def images_per_s(self) -> float:
        """Throughput in images per second."""
        return self.n_files / self.seconds if self.seconds > 0 else 0.0


class Predictor:
    """A model rebuilt from a checkpoint, ready to classify images.

    Args:
        checkpoint: A ``.pt`` file; or give ``model``; neither = the default model.
        model: Name of a trained model in the registry.
        device: ``auto|cpu|cuda|cuda:N|mps``.
        precision: ``auto|fp32|bf16|fp16``.
        batch_size: Images per forward pass.
        num_workers: DataLoader workers (default: see :func:`default_num_workers`).

    Raises:
        RegistryError: No model given and none registered.
        CheckpointError: Unusable checkpoint.
        DeviceError: Unavailable device or precision.
    """

    def __init__(self, checkpoint: str | os.PathLike[str] | None = None, *,
                 model: str | None = None, device: str = "auto",
                 precision: Precision | str = Precision.auto, batch_size: int = 32,
                 num_workers: int | None = None) -> None:
        self.checkpoint_path = resolve_checkpoint(checkpoint, model)
        self.checkpoint = load_checkpoint(self.checkpoint_path)
        self.class_names = self.checkpoint.class_names
        self.input_spec = self.checkpoint.input_spec
        self.device = resolve_device(device)
        self.plan = resolve_precision(precision, self.device)
        self.model = self.checkpoint.build_model(self.device)
        self.channels_last = self.device.type in ("cpu", "cuda")
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.batch_size = batch_size
        self.num_workers = (num_workers if num_workers is not None
                            else default_num_workers(self.device))
        self.transform = eval_transform(self.input_spec)

    @torch.inference_mode()
    def predict_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities of a preprocessed batch.

        Args:
            images: ``(N, C, S, S) float32``, preprocessed with :attr:`transform`.

        Returns:
            ``(N, num_classes) float32`` softmax probabilities on the CPU.
        """
        x = images.to(self.device, non_blocking=self.device.type == "cuda")
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.plan.autocast(self.device):
            logits = self.model(x).float()
        return torch.softmax(logits, dim=1).cpu()

    def predict_files(self, paths: Sequence[Path]) -> Iterator[Prediction]:
        """Classify files in batches, yielding one row per file in input order."""
        dataset = FileDataset(paths, self.input_spec, self.transform)
        loader = DataLoader(dataset, batch_size=self.batch_size, shuffle=False,
                            num_workers=self.num_workers, collate_fn=collate_files,
                            pin_memory=self.device.type == "cuda")
        for batch in loader:
            probs = self.predict_tensor(batch["images"]) if batch["images"] is not None else None
            position = {idx: j for j, idx in enumerate(batch["ok"])}
            for idx in batch["indices"]:
                path = str(paths[idx])
                if idx in batch["errors"]:
                    yield Prediction(path, "", float("nan"), (), batch["errors"][idx])
                    continue
                p = probs[position[idx]]
                k = int(p.argmax())
                yield Prediction(path, self.class_names[k], float(p[k]),
                                 tuple(float(v) for v in p))


def _csv_row(pred: Prediction, n_classes: int) -> list[str]:
    if pred.error is not None:
        return [pred.path, "", "", *([""] * n_classes), pred.error]
    return [pred.path, pred.label, f"{pred.confidence:.4f}", *[f"{v:.4f}" for v in pred.probs], ""]


def predict_to_files(inputs: Iterable[str | os.PathLike[str]], predictor: Predictor, *,
                     csv_out: str | os.PathLike[str] | IO[str] | None = None,
                     json_out: str | os.PathLike[str] | None = None,
                     recursive: bool = True) -> PredictSummary:
    """Predict every image under ``inputs`` and write CSV and/or JSON.

    Args:
        inputs: Files and folders (folders are searched recursively by default).
        predictor: The model.
        csv_out: CSV file path, or an open text stream (e.g. stdout), or ``None``.
        json_out: JSON file path (a list of row objects), or ``None``.
        recursive: Search sub-folders.

    Returns:
        The :class:`PredictSummary`. Files are complete only when this returns: they are
        written under temporary names and renamed at the end.

    Raises:
        DataError: An input path does not exist.
    """
    start = time.perf_counter()
    files, hidden = find_images(inputs, recursive=recursive)
    names = predictor.class_names
    header = ["path", "label", "confidence", *[f"prob_{c}" for c in names], "error"]
    summary = PredictSummary(n_hidden_skipped=hidden)
    labels: Counter[str] = Counter()
    with ExitStack() as stack:
        writer = None
        if csv_out is not None:
            stream = (csv_out if hasattr(csv_out, "write")
                      else stack.enter_context(atomic_open(csv_out, "w", newline="")))
            writer = csv.writer(stream)
            writer.writerow(header)
        jstream = stack.enter_context(atomic_open(json_out, "w")) if json_out else None
        if jstream:
            jstream.write("[")
        bar = stack.enter_context(progress_bar("predicting", total=len(files), unit="img"))
        for i, pred in enumerate(predictor.predict_files(files)):
            summary.n_files += 1
            if pred.error is not None:
                summary.n_failed += 1
            else:
                labels[pred.label] += 1
            if writer is not None:
                writer.writerow(_csv_row(pred, len(names)))
            if jstream:
                obj: dict[str, Any] = {"path": pred.path, "label": pred.label or None,
                                       "confidence": None if pred.error else pred.confidence,
                                       "probs": dict(zip(names, pred.probs, strict=False)),
                                       "error": pred.error}
                jstream.write(("," if i else "") + "\n  " + json.dumps(obj, ensure_ascii=False))
            bar.advance()
        if jstream:
            jstream.write("\n]\n")
    summary.label_counts = dict(sorted(labels.items()))
    summary.seconds = time.perf_counter() - start
    return summary
