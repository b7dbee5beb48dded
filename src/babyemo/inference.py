"""The one place that turns a model and images into logits and probabilities.

``predict``, ``evaluate``, ``calibrate`` and training's final calibration all run their
model through an :class:`InferenceModel`: the checkpoint's engine (torch or onnxruntime,
optionally with flip TTA, see :mod:`babyemo.engines`), its temperature, its preprocessing,
and the way batches are read on this machine (parallel readers on the CPU, else a
DataLoader with worker processes or a read-ahead thread), all chosen from one
:class:`~babyemo.runtime.Runtime`::

    model = InferenceModel(store.load(model="babyemo-infant"), Runtime(device="cpu"))
    probs = model.probs(images)                    # (N, C, S, S) uint8 -> (N, K) float32
    logits = model.dataset_logits(dataset)         # a labelled dataset -> (N, K) float32
    for out in model.map_batches(dataset, collate, fn): ...   # fn(batch) in input order

Probabilities are ``softmax(logits / T)`` with the checkpoint's temperature ``T``
(:attr:`babyemo.checkpoint.Checkpoint.temperature`), here and nowhere else
(:meth:`InferenceModel.probs`, :func:`probabilities`). An ensemble
(:mod:`babyemo.models.ensemble`) is a checkpoint of arch ``ensemble`` and runs through
here like any other model.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch.utils.data import DataLoader, default_collate

from babyemo.calibration import DEFAULT_BINS, CalibrationResult, calibrate_logits, softmax
from babyemo.checkpoint import Checkpoint
from babyemo.data.loading.dataset import ManifestDataset
from babyemo.data.preparation.manifest import Manifest
from babyemo.devices import (
    batches_in_readers,
    default_num_workers,
    default_readers,
    set_cpu_threads,
)
from babyemo.engines import Engine, FlipTTA, create_engine
from babyemo.parallel import prefetch
from babyemo.progress import progress_bar
from babyemo.runtime import Runtime
from babyemo.transforms import eval_transform

log = logging.getLogger(__name__)

R = TypeVar("R")


def probabilities(logits: np.ndarray, temperature: float = 1.0) -> np.ndarray:
    """``softmax(logits / temperature)`` of ``(N, K)`` logits, ``(N, K) float32``.

    The numpy twin of :meth:`InferenceModel.probs` (see
    :func:`babyemo.calibration.softmax`).
    """
    return softmax(logits, temperature).astype(np.float32)


class InferenceModel:
    """A checkpoint ready to run on this machine.

    Args:
        checkpoint: The loaded checkpoint (e.g. from :func:`babyemo.models.store.load`).
        runtime: Device, precision, backend, batch size, workers, readers, TTA.

    Attributes:
        checkpoint: The checkpoint.
        runtime: The runtime as given.
        engine: The :class:`~babyemo.engines.Engine` computing the logits.
        device: The engine's device.
        temperature: ``T`` of ``softmax(logits / T)`` (1 when uncalibrated).
        class_names: Class names in logit order.
        input_spec: The checkpoint's preprocessing.
        transform: Its evaluation transform (a PIL image -> ``(C, S, S) uint8``).
        workers: DataLoader worker processes used when reading (the runtime's, else
            :func:`babyemo.devices.default_num_workers`).
        readers: Parallel readers on the CPU (the runtime's, else
            :func:`babyemo.devices.default_readers`).

    Raises:
        DeviceError: Unavailable device or precision.
        ExportError: No exported ONNX file, or one that does not match the checkpoint.
        MissingDependencyError: onnxruntime is not installed (backend ``onnxruntime``).
        ConfigError: A device or precision the backend does not run.
    """

    def __init__(self, checkpoint: Checkpoint, runtime: Runtime | None = None) -> None:
        runtime = runtime or Runtime()
        self.checkpoint = checkpoint
        self.runtime = runtime
        self.engine: Engine = create_engine(checkpoint, backend=runtime.backend.value,
                                            onnx=runtime.onnx, device=runtime.device,
                                            precision=runtime.precision, tta=runtime.tta)
        self.device = self.engine.device
        self.temperature = checkpoint.temperature
        self.class_names = list(checkpoint.class_names)
        self.input_spec = checkpoint.input_spec
        self.transform = eval_transform(self.input_spec)
        self.workers = (runtime.workers if runtime.workers is not None
                        else default_num_workers(self.device))
        self.readers = (runtime.readers if runtime.readers is not None
                        else default_readers(self.device, self.engine.backend, self.workers))

    @property
    def name(self) -> str:
        """The model's name (see :attr:`babyemo.checkpoint.Checkpoint.name`) or file."""
        return self.checkpoint.name or str(self.checkpoint.path)

    @property
    def parallel_readers(self) -> int:
        """Threads or processes that read images side by side: the :attr:`readers`, else
        the DataLoader :attr:`workers`, else 1 (a read-ahead thread)."""
        return self.readers if self.readers > 1 else max(1, self.workers)

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S) uint8`` (or normalised ``float32``) -> ``(N, K) float32`` logits
        on the CPU, in :attr:`class_names` order."""
        return self.engine.logits(images)

    @torch.inference_mode()
    def probs(self, images: torch.Tensor) -> torch.Tensor:
        """``(N, C, S, S) uint8`` -> ``(N, K) float32`` probabilities ``softmax(logits /
        T)`` on the CPU (``T`` = :attr:`temperature`)."""
        return torch.softmax(self.logits(images) / self.temperature, dim=1)

    def map_batches(self, dataset: Sequence[Any], fn: Callable[[Any], R],
                    collate: Callable[[list[Any]], Any] = default_collate) -> Iterator[R]:
        """``fn(batch)`` for each batch of ``runtime.batch_size`` consecutive items of
        ``dataset``, in input order: the one place that chooses how batches are read.

        With several :attr:`readers` (the CPU, the torch engine, no workers), each reader
        thread reads, decodes and runs whole batches on one intra-op thread. Otherwise a
        DataLoader reads them, in :attr:`workers` processes, or without workers in a
        thread one batch ahead while the model runs on the current one on all the
        intra-op threads.

        Args:
            dataset: Map-style dataset of preprocessed items (safe to index from threads).
            fn: Work on one collated batch (e.g. run the model); called in input order's
                results, possibly from reader threads.
            collate: Items of one batch -> a batch.
        """
        batch_size = self.runtime.batch_size
        if self.readers > 1:
            yield from batches_in_readers(dataset, batch_size, collate, fn, self.readers)
            return
        loader = DataLoader(dataset, batch_size=batch_size, shuffle=False,
                            num_workers=self.workers, collate_fn=collate,
                            pin_memory=self.device.type == "cuda")
        set_cpu_threads(self.device, self.workers)
        for batch in (loader if self.workers else prefetch(loader, depth=2)):
            yield fn(batch)

    def dataset_logits(self, dataset: Sequence[Any], what: str = "evaluating") -> np.ndarray:
        """Logits over a labelled dataset whose items are ``(image, target)``.

        Args:
            dataset: E.g. a :class:`babyemo.data.loading.dataset.ManifestDataset` built with the
                checkpoint's preprocessing (``(C, S, S) uint8`` images).
            what: Label of the progress bar.

        Returns:
            ``(N, K) float32`` logits, in dataset order.
        """
        out = []
        with progress_bar(what, total=len(dataset), unit="img") as bar:
            for logits in self.map_batches(dataset, lambda batch: self.logits(batch[0])):
                out.append(logits)
                bar.advance(len(logits))
        if not out:
            return np.zeros((0, len(self.class_names)), dtype=np.float32)
        return torch.cat(out).numpy()

    def describe(self) -> dict[str, Any]:
        """What computes the logits (JSON-safe): ``backend``, ``precision``, ``device``,
        ``tta``, and for onnxruntime the ``onnx`` file (and its ``int8_eval`` at export)."""
        engine = self.engine
        info: dict[str, Any] = {"backend": engine.backend, "precision": engine.precision,
                                "device": str(engine.device), "tta": isinstance(engine, FlipTTA)}
        meta = getattr(engine, "metadata", None)
        if meta is not None:
            info["onnx"] = str(engine.path)
            if meta.extra.get("int8_eval"):
                info["int8_eval"] = meta.extra["int8_eval"]
        return info


def checkpoint_dataset(manifest: Manifest, split: str | None, ckpt: Checkpoint,
                       whole_images: bool = False) -> ManifestDataset:
    """A split as a checkpoint's model sees it at evaluation: the checkpoint's class names,
    input spec, evaluation transform and face crops.

    Args:
        manifest: The dataset.
        split: ``"train"``, ``"val"``, ``"test"``; ``"all"`` or ``None`` for every row.
        ckpt: The checkpoint.
        whole_images: Use whole images even if the model was trained on face crops (for
            datasets whose images already are face crops, e.g. FER-2013).

    Returns:
        Its items are ``((C, S, S) uint8 image, target)``.

    Raises:
        DataError: See :class:`~babyemo.data.loading.dataset.ManifestDataset`.
    """
    return ManifestDataset(manifest, None if split in (None, "all") else split,
                           ckpt.class_names, ckpt.input_spec, eval_transform(ckpt.input_spec),
                           crop=None if whole_images else ckpt.crop_spec)


def calibrate_on_dataset(model: InferenceModel, dataset: Any, *, fitted_on: str = "val",
                         n_bins: int = DEFAULT_BINS) -> CalibrationResult:
    """Fit the temperature of ``model`` on a labelled dataset (nothing is written).

    The logits come from the model with ``T = 1``; :func:`babyemo.calibration.
    calibrate_logits` fits ``T`` and measures ECE and NLL before and after.

    Args:
        model: The model (its checkpoint's current temperature is ignored).
        dataset: Items ``(image, target)``, with ``targets`` (``(N,)`` int class indices).
        fitted_on: Name of the dataset's split (recorded as ``fitted_on``).
        n_bins: Number of ECE bins.

    Returns:
        The :class:`~babyemo.calibration.CalibrationResult` (``checkpoint`` unset).

    Raises:
        ConfigError: An empty dataset.
    """
    logits = model.dataset_logits(dataset, what="calibrating")
    result = calibrate_logits(logits, np.asarray(dataset.targets, dtype=np.int64),
                              fitted_on=fitted_on, n_bins=n_bins)
    log.info("Temperature scaling on %s (n=%d): T=%.3f, ECE %.3f -> %.3f, NLL %.3f -> %.3f",
             fitted_on, result.n, result.temperature, result.ece_before, result.ece_after,
             result.nll_before, result.nll_after)
    return result


__all__ = ["InferenceModel", "calibrate_on_dataset", "checkpoint_dataset", "probabilities"]
