"""Batch prediction over image files with a checkpoint (or a registered trained model).

:class:`Predictor` streams :class:`Prediction` rows: a file that cannot be read yields a
row with an ``error`` (a :class:`~babyemo.data.file_errors.FileErrorCode` value) and an
``error_detail`` (the human reason), and the run goes on; no row is ever filled from another
image. :func:`predict_to_files` writes them as CSV (``path, label, confidence,
prob_<class>..., error, error_detail``) and/or JSON, atomically, without holding all rows in
memory for the CSV.

Probabilities are ``softmax(logits / T)`` with the checkpoint's temperature ``T``
(:attr:`babyemo.checkpoint.Checkpoint.temperature`, 1 for an uncalibrated checkpoint).
With ``min_confidence`` a row whose top probability is below it is labelled
:data:`UNCERTAIN`; its argmax class stays in ``top_class`` (a CSV column after
``confidence``).
"""

from __future__ import annotations

import csv
import itertools
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
from babyemo.config import NoFaceFallback, Precision
from babyemo.data.dataset import FaceMode, FileDataset, collate_files
from babyemo.data.file_errors import FileErrorCode
from babyemo.data.folders import (
    FoundFiles,
    check_output_folder,
    check_outputs,
    collect_input_files,
    printable_name,
)
from babyemo.data.prefetch import prefetch
from babyemo.devices import default_num_workers, default_streams, set_cpu_threads, stream_batches
from babyemo.engines import create_engine
from babyemo.errors import ConfigError
from babyemo.io import atomic_open, atomic_write_bytes
from babyemo.models.store import resolve_checkpoint
from babyemo.progress import progress_bar
from babyemo.transforms import eval_transform

UNCERTAIN = "uncertain"
"""Label of a row whose top probability is below ``min_confidence``."""


@dataclass(frozen=True)
class Prediction:
    """One output row.

    Attributes:
        path: The file as found.
        label: Predicted class name (``""`` on error).
        confidence: Probability of ``label`` in [0, 1] (``nan`` on error).
        probs: Probability per class, in ``class_names`` order (empty on error).
        error: ``None``, or why the file could not be classified: a
            :class:`~babyemo.data.file_errors.FileErrorCode` value (``truncated``,
            ``no_face`` when face detection found none, ...).
        face_index: Index of the face in the photo (0 = highest detector score), or
            ``None`` without face detection or for a photo classified whole.
        box: ``(x, y, w, h)`` of the classified region in pixels of the upright image
            (``None`` without face detection).
        det_score: Detector confidence of the face (``None`` without one).
        top_class: The most probable class (``None`` on error); ``label`` is the same
            unless it is :data:`UNCERTAIN`.
        error_detail: With an ``error``, the human reason without the path (e.g.
            ``"permission denied"``); else ``None``.
    """

    path: str
    label: str
    confidence: float
    probs: tuple[float, ...]
    error: str | None = None
    face_index: int | None = None
    box: tuple[float, float, float, float] | None = None
    det_score: float | None = None
    top_class: str | None = None
    error_detail: str | None = None


@dataclass
class PredictSummary:
    """Counts and times of a prediction run.

    Attributes:
        n_files: Files tried, plus entries that could not be (a broken link, a pipe...):
            each has at least one row.
        n_rows: Rows written (one per file, or one per face with face detection).
        n_errors: Files that could not be read: error rows other than ``no_face``
            (unreadable, empty, truncated, not an image...). ``--strict`` fails on these.
        n_no_face: Photos in which the detector found no face: rows with
            ``error=no_face``, or with ``no_face_fallback="full"`` photos classified whole.
            Not counted in ``n_errors``: the file itself is fine.
        n_multi_face: Photos with more than one face.
        n_hidden_skipped: Hidden files and folders skipped while scanning.
        n_non_image_skipped: Files inside folders skipped because their names do not end
            like an image (see :data:`~babyemo.data.folders.IMAGE_SUFFIXES`).
        error_counts: Error code -> number of rows with it (``no_face`` included).
        label_counts: Predicted label → number of rows.
        seconds: Wall time of the run in seconds (finding, reading, detecting, classifying,
            writing), after the model was loaded.
        load_seconds: Wall time the :class:`Predictor` took to load (model, engine, face
            detector) before the run, in seconds.
        detect_seconds: Time spent in face detection, summed over the ``parallel_readers``
            that ran it side by side: thread time, which can exceed ``seconds``.
        parallel_readers: Threads or worker processes that read files and detect faces
            side by side (the CPU streams, else the DataLoader workers, else 1).
    """

    n_files: int = 0
    n_rows: int = 0
    n_errors: int = 0
    n_no_face: int = 0
    n_multi_face: int = 0
    n_hidden_skipped: int = 0
    n_non_image_skipped: int = 0
    error_counts: dict[str, int] = field(default_factory=dict)
    label_counts: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0
    load_seconds: float = 0.0
    detect_seconds: float = 0.0
    parallel_readers: int = 1

    @property
    def n_failed(self) -> int:
        """Rows with an error, ``no_face`` included (``n_errors`` + the ``no_face`` rows);
        kept for compatibility, prefer :attr:`n_errors` and :attr:`n_no_face`."""
        return self.n_errors + self.error_counts.get(FileErrorCode.NO_FACE.value, 0)

    @property
    def images_per_s(self) -> float:
        """Throughput in files per second (over :attr:`seconds`)."""
        return self.n_files / self.seconds if self.seconds > 0 else 0.0

    @property
    def detect_share(self) -> float:
        """Share of the readers' time spent in face detection, in [0, 1]:
        ``detect_seconds / (parallel_readers * seconds)``."""
        busy = self.parallel_readers * self.seconds
        return min(1.0, self.detect_seconds / busy) if busy > 0 else 0.0


class Predictor:
    """A model rebuilt from a checkpoint, ready to classify images.

    Args:
        checkpoint: A ``.pt`` file; or give ``model``; neither = the default model.
        model: Name of a trained model in the registry.
        device: ``auto|cpu|cuda|cuda:N|mps``.
        precision: ``auto|fp32|bf16|fp16``.
        batch_size: Images per forward pass.
        num_workers: DataLoader workers (default: see :func:`default_num_workers`).
        faces: ``"auto"`` (detect faces as the checkpoint was trained: its detector, or
            none), ``"none"`` (classify whole images), or a detector name (``"yunet"``).
        no_face_fallback: ``"error"`` (a photo without a face is a row with
            ``error=no_face``) or ``"full"`` (classify it whole).
        save_crops: Folder to write each face crop to as PNG (``None``: not written).
        min_confidence: In [0, 1]; rows whose top probability is below it get the label
            :data:`UNCERTAIN` (``None``: always the most probable class).
        backend: ``"torch"`` (the checkpoint's model) or ``"onnxruntime"`` (its ONNX export,
            see :func:`babyemo.engines.create_engine`).
        onnx: With ``onnxruntime``: the exported file (default: ``<checkpoint stem>.onnx``
            beside the checkpoint, else ``<stem>.int8.onnx``).
        tta: Average the logits of each image and its horizontal flip
            (:class:`babyemo.engines.FlipTTA`; twice the compute).
        streams: CPU prediction streams: each thread reads, decodes and classifies whole
            batches with one intra-op thread, results kept in input order. Default: one
            per intra-op thread (usually one per core) for the torch engine on the CPU
            with 0 DataLoader workers, else 1 (one model call on all intra-op threads,
            the next batch read ahead by a thread or the workers). Measured on 2 cores
            (``benchmarks/bench_predict.py``): 2 streams gave 1.13-1.27x the images/s of 1.

    Attributes:
        engine: The :class:`babyemo.engines.Engine` that computes the logits.
        plan: The torch :class:`~babyemo.devices.PrecisionPlan` (``None`` with onnxruntime).
        load_seconds: Wall time this constructor took (checkpoint, engine, face detector).

    Raises:
        RegistryError: No model given and none registered, or unknown detector.
        CheckpointError: Unusable checkpoint.
        DeviceError: Unavailable device or precision.
        ExportError: No exported ONNX file, or one that does not match the checkpoint.
        MissingDependencyError: onnxruntime is not installed (backend ``onnxruntime``).
        ConfigError: Unknown ``no_face_fallback``, ``min_confidence`` outside [0, 1], a
            model with a class named ``uncertain`` used with ``min_confidence``,
            ``streams < 1``, ``batch_size < 1`` or a ``save_crops`` that is not a writable
            folder. Every check that needs no model is made before loading it.
    """

    def __init__(self, checkpoint: str | os.PathLike[str] | None = None, *,
                 model: str | None = None, device: str = "auto",
                 precision: Precision | str = Precision.auto, batch_size: int = 32,
                 num_workers: int | None = None, faces: str = "auto",
                 no_face_fallback: str = "error",
                 save_crops: str | os.PathLike[str] | None = None,
                 min_confidence: float | None = None, backend: str = "torch",
                 onnx: str | os.PathLike[str] | None = None, tta: bool = False,
                 streams: int | None = None) -> None:
        start = time.perf_counter()
        # Options first: a wrong value fails in milliseconds, not after loading the model.
        _check_options(no_face_fallback, min_confidence, streams, batch_size, save_crops)
        self.checkpoint_path = resolve_checkpoint(checkpoint, model)
        self.checkpoint = load_checkpoint(self.checkpoint_path)
        self.class_names = self.checkpoint.class_names
        self.temperature = self.checkpoint.temperature
        self.min_confidence = _check_min_confidence(min_confidence, self.class_names)
        self.input_spec = self.checkpoint.input_spec
        self.engine = create_engine(self.checkpoint, backend=backend, onnx=onnx, device=device,
                                    precision=precision, tta=tta)
        self.device = self.engine.device
        self.plan = getattr(self.engine, "plan", None)
        self.batch_size = batch_size
        self.num_workers = (num_workers if num_workers is not None
                            else default_num_workers(self.device))
        self.transform = eval_transform(self.input_spec)
        self.face_mode = self._face_mode(faces, no_face_fallback, save_crops is not None)
        self.streams = self._streams(streams)
        self.save_crops = Path(save_crops) if save_crops is not None else None
        self.detect_seconds = 0.0
        self.load_seconds = time.perf_counter() - start

    @property
    def parallel_readers(self) -> int:
        """Threads or processes that read files (and detect faces) side by side: the CPU
        :attr:`streams`, else the DataLoader workers, else 1 (a prefetch thread)."""
        return self.streams if self.streams > 1 else max(1, self.num_workers)

    def _streams(self, streams: int | None) -> int:
        if streams is not None:
            if streams < 1:
                raise ConfigError(f"streams must be >= 1, got {streams}.",
                                  "use 1 for a single stream")
            return streams
        return default_streams(self.device, self.engine.backend, self.num_workers)

    def _face_mode(self, faces: str, fallback: str, keep_crops: bool) -> FaceMode | None:
        try:
            fallback = NoFaceFallback(fallback).value
        except ValueError:
            raise ConfigError(f"Unknown no-face fallback '{fallback}'.",
                              "use error or full") from None
        trained = self.checkpoint.faces
        detector = (trained or {}).get("detector") if faces == "auto" else faces
        if not detector or detector == "none":
            return None
        from babyemo.faces import CropSpec, get_detector

        get_detector(detector)  # unknown name / missing package: fail now, not per file
        crop = self.checkpoint.crop_spec or CropSpec()
        return FaceMode(detector=detector, crop=crop, fallback=fallback, keep_crops=keep_crops)

    @torch.inference_mode()
    def predict_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities of a preprocessed batch.

        Args:
            images: ``(N, C, S, S) uint8`` from :attr:`transform` (or ``float32`` already
                normalised, see :func:`babyemo.transforms.normalize`).

        Returns:
            ``(N, num_classes) float32`` probabilities ``softmax(logits / T)`` on the CPU
            (``T`` = :attr:`temperature`); the logits come from :attr:`engine`.
        """
        logits = self.engine.logits(images)
        return torch.softmax(logits / self.temperature, dim=1)

    def predict_files(self, paths: Sequence[Path]) -> Iterator[Prediction]:
        """Classify files in batches, yielding rows in input order (one per file, or one
        per face with face detection). :attr:`detect_seconds` accumulates detection time."""
        self.detect_seconds = 0.0
        dataset = FileDataset(paths, self.input_spec, self.transform, self.face_mode)
        for batch, probs in self._batches(dataset):
            row = 0
            for item in batch["items"]:
                self.detect_seconds += item["detect_seconds"]
                path = str(paths[item["index"]])
                if item["error"] is not None:
                    yield Prediction(path, "", float("nan"), (), item["error"],
                                     error_detail=item["error_detail"])
                    continue
                for entry in item["entries"]:
                    p = probs[row]
                    row += 1
                    k = int(p.argmax())
                    face = entry["face"]
                    if entry["crop"] is not None and self.save_crops is not None:
                        self._save_crop(entry["crop"], item["index"], paths[item["index"]],
                                        entry["face_index"])
                    uncertain = (self.min_confidence is not None
                                 and float(p[k]) < self.min_confidence)
                    yield Prediction(
                        path, UNCERTAIN if uncertain else self.class_names[k], float(p[k]),
                        tuple(float(v) for v in p), top_class=self.class_names[k],
                        face_index=entry["face_index"],
                        box=tuple(face["box"]) if face else None,
                        det_score=(face["score"] if face and entry["face_index"] is not None
                                   else None))

    def _batch_probs(self, batch: dict[str, Any]) -> torch.Tensor | None:
        return self.predict_tensor(batch["images"]) if batch["images"] is not None else None

    def _batches(self, dataset: FileDataset) -> Iterator[tuple[dict[str, Any],
                                                                torch.Tensor | None]]:
        """``(collated batch, probs)`` in input order, read and classified by
        :attr:`streams` threads of one intra-op thread each, or else read ahead by DataLoader
        workers or a prefetch thread while the model runs on all the intra-op threads."""
        if self.streams > 1:
            yield from stream_batches(dataset, self.batch_size, collate_files,
                                      lambda batch: (batch, self._batch_probs(batch)),
                                      self.streams)
            return
        loader = DataLoader(dataset, batch_size=self.batch_size, shuffle=False,
                            num_workers=self.num_workers, collate_fn=collate_files,
                            pin_memory=self.device.type == "cuda")
        # Read and decode the next batch while the model runs on this one: worker processes
        # do that already; without them, a background thread does (Pillow frees the GIL).
        set_cpu_threads(self.device, self.num_workers)
        for batch in (loader if self.num_workers else prefetch(loader, depth=2)):
            yield batch, self._batch_probs(batch)

    def _save_crop(self, crop: Any, index: int, path: Path, face_index: int) -> None:
        from io import BytesIO

        buf = BytesIO()
        crop.save(buf, format="PNG")
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.stem)[:80]
        atomic_write_bytes(self.save_crops / f"{index:06d}_{stem}_face{face_index}.png",
                           buf.getvalue())


def _check_options(no_face_fallback: str, min_confidence: float | None, streams: int | None,
                   batch_size: int, save_crops: str | os.PathLike[str] | None) -> None:
    """The checks of :class:`Predictor`'s options that need no model (fast).

    Raises:
        ConfigError: See :class:`Predictor`.
    """
    try:
        NoFaceFallback(no_face_fallback)
    except ValueError:
        raise ConfigError(f"Unknown no-face fallback '{no_face_fallback}'.",
                          "use error or full") from None
    _check_min_confidence(min_confidence, [])
    if streams is not None and streams < 1:
        raise ConfigError(f"streams must be >= 1, got {streams}.", "use 1 for a single stream")
    if batch_size < 1:
        raise ConfigError(f"batch_size must be >= 1, got {batch_size}.", "e.g. 32")
    if save_crops is not None:
        check_output_folder(save_crops, "save_crops folder")


def _check_min_confidence(value: float | None, class_names: list[str]) -> float | None:
    if value is None:
        return None
    if not 0.0 <= float(value) <= 1.0:
        raise ConfigError(f"min_confidence must be in [0, 1], got {value!r}.",
                          "e.g. 0.6: rows below 60% confidence are labelled uncertain")
    if UNCERTAIN in class_names:
        raise ConfigError(f"The model has a class named '{UNCERTAIN}', so min_confidence "
                          "cannot use that label.", "leave out min_confidence")
    return float(value)


FACE_COLUMNS = ["face_index", "box_x", "box_y", "box_w", "box_h", "det_score"]
"""Extra CSV columns of prediction with face detection."""


def _csv_row(pred: Prediction, n_classes: int, with_faces: bool,
             with_top: bool = False) -> list[str]:
    faces: list[str] = []
    if with_faces:
        box = [f"{v:.1f}" for v in pred.box] if pred.box else [""] * 4
        faces = ["" if pred.face_index is None else str(pred.face_index), *box,
                 "" if pred.det_score is None else f"{pred.det_score:.4f}"]
    top = [pred.top_class or ""] if with_top else []
    path = printable_name(pred.path)
    if pred.error is not None:
        return [path, "", "", *top, *([""] * n_classes), *faces, pred.error,
                printable_name(pred.error_detail or "")]
    return [path, pred.label, f"{pred.confidence:.4f}", *top,
            *[f"{v:.4f}" for v in pred.probs], *faces, "", ""]


def predict_to_files(inputs: Iterable[str | os.PathLike[str]] | FoundFiles,
                     predictor: Predictor, *,
                     csv_out: str | os.PathLike[str] | IO[str] | None = None,
                     json_out: str | os.PathLike[str] | IO[str] | None = None,
                     recursive: bool = True, all_files: bool = False) -> PredictSummary:
    """Predict every image under ``inputs`` and write CSV and/or JSON.

    Args:
        inputs: Files and folders (folders are searched recursively by default), or what
            :func:`~babyemo.data.folders.collect_input_files` found in them (a caller that
            checked its inputs before loading the model).
        predictor: The model.
        csv_out: CSV file path, or an open text stream (e.g. stdout), or ``None``.
        json_out: JSON file path (a list of row objects), or an open text stream, or
            ``None``.
        recursive: Search sub-folders.
        all_files: Inside folders, try every file, not only those whose names end like an
            image (:data:`~babyemo.data.folders.IMAGE_SUFFIXES`). Files named in
            ``inputs`` are always tried.

    Returns:
        The :class:`PredictSummary`. Files are complete only when this returns: they are
        written under temporary names and renamed at the end.

    Every file found is a row: unreadable files, special files (FIFOs, devices), broken
    links, symlink loops and folders that cannot be listed are error rows (the last ones
    after the predicted ones, see :func:`~babyemo.data.folders.find_input_files`), with a
    :class:`~babyemo.data.file_errors.FileErrorCode` in ``error`` and the reason in
    ``error_detail``. Inside folders, hidden files and files whose names do not end like an
    image are skipped and counted.

    Raises:
        DataError: An input path does not exist, or the inputs hold no file to read (an
            empty folder); nothing is written then.
        ConfigError: ``csv_out``, ``json_out`` or the predictor's ``save_crops`` folder
            cannot be written, is one of the inputs (an image, the checkpoint), lies inside
            an input folder, or ``csv_out`` and ``json_out`` are one file (see
            :func:`~babyemo.data.folders.check_outputs`); nothing is written then.
    """
    start = time.perf_counter()
    found = (inputs if isinstance(inputs, FoundFiles)
             else collect_input_files(inputs, recursive=recursive, all_files=all_files))
    check_outputs({"csv_out": None if hasattr(csv_out, "write") else csv_out,
                   "json_out": None if hasattr(json_out, "write") else json_out},
                  {"save_crops": getattr(predictor, "save_crops", None)},
                  inputs=[*found.files, getattr(predictor, "checkpoint_path", None)],
                  scanned=found.folders)
    files = found.files
    names = predictor.class_names
    with_faces = predictor.face_mode is not None
    with_top = predictor.min_confidence is not None
    header = ["path", "label", "confidence", *(["top_class"] if with_top else []),
              *[f"prob_{c}" for c in names],
              *(FACE_COLUMNS if with_faces else []), "error", "error_detail"]
    summary = PredictSummary(n_files=len(files) + len(found.skipped),
                             n_hidden_skipped=found.hidden,
                             n_non_image_skipped=len(found.non_images),
                             load_seconds=predictor.load_seconds,
                             parallel_readers=predictor.parallel_readers)
    labels: Counter[str] = Counter()
    errors: Counter[str] = Counter()
    faces_in_file = 0  # faces of the current file (its rows are consecutive): no per-file state
    with ExitStack() as stack:
        writer = None
        if csv_out is not None:
            stream = (csv_out if hasattr(csv_out, "write")
                      else stack.enter_context(atomic_open(csv_out, "w", newline="")))
            writer = csv.writer(stream)
            writer.writerow(header)
        jstream = (None if json_out is None else json_out if hasattr(json_out, "write")
                   else stack.enter_context(atomic_open(json_out, "w")))
        if jstream:
            jstream.write("[")
        bar = stack.enter_context(progress_bar("predicting", total=summary.n_files, unit="img"))
        last_path = None
        skipped_rows = (Prediction(str(path), "", float("nan"), (), code.value,
                                   error_detail=detail)
                        for path, code, detail in found.skipped)
        rows = itertools.chain(predictor.predict_files(files), skipped_rows)
        for i, pred in enumerate(rows):
            summary.n_rows += 1
            if pred.path != last_path:
                bar.advance()
                last_path, faces_in_file = pred.path, 0
            if pred.error is not None:
                errors[pred.error] += 1
                if pred.error == FileErrorCode.NO_FACE:
                    summary.n_no_face += 1
                else:
                    summary.n_errors += 1
            else:
                labels[pred.label] += 1
                if pred.face_index is None and with_faces:
                    summary.n_no_face += 1  # classified whole (--no-face-fallback full)
                if pred.face_index is not None:
                    faces_in_file += 1
                    summary.n_multi_face += faces_in_file == 2
            if writer is not None:
                writer.writerow(_csv_row(pred, len(names), with_faces, with_top))
            if jstream:
                obj: dict[str, Any] = {"path": printable_name(pred.path),
                                       "label": pred.label or None,
                                       "confidence": None if pred.error else pred.confidence,
                                       "probs": dict(zip(names, pred.probs, strict=False)),
                                       "error": pred.error,
                                       "error_detail": pred.error_detail}
                if with_top:
                    obj["top_class"] = pred.top_class
                if with_faces:
                    obj.update(face_index=pred.face_index, box=pred.box,
                               det_score=pred.det_score)
                jstream.write(("," if i else "") + "\n  " + json.dumps(obj, ensure_ascii=False))
        if jstream:
            jstream.write("\n]\n")
    summary.label_counts = dict(sorted(labels.items()))
    summary.error_counts = dict(sorted(errors.items()))
    summary.detect_seconds = predictor.detect_seconds
    summary.seconds = time.perf_counter() - start
    return summary
