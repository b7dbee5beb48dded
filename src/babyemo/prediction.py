"""Batch prediction over image files with a checkpoint (or a registered trained model).

:class:`Predictor` streams :class:`Prediction` rows: a file that cannot be read yields a
row with an ``error`` (a :class:`~babyemo.data.loading.file_errors.FileErrorCode` value) and an
``error_detail`` (the human reason), and the run goes on; no row is ever filled from another
image. :func:`predict_to_files` writes them as CSV (``path, label, confidence,
prob_<class>..., face, error, error_detail``) and/or JSON, atomically, without holding all
rows in memory for the CSV.

With face detection every photo gets an answer by default: one row per face found (``face``
column ``detected``), or, when the detector finds none, one row for the whole image
(``face=whole_image``); ``no_face_fallback="error"`` makes that photo a row with
``error=no_face`` instead.

Probabilities are ``softmax(logits / T)`` with the checkpoint's temperature ``T``
(:attr:`babyemo.checkpoint.Checkpoint.temperature`, 1 for an uncalibrated checkpoint).
With ``min_confidence`` a row whose top probability is below it is labelled
:data:`UNCERTAIN`; its argmax class stays in ``top_class`` (a CSV column after
``confidence``).
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import torch

from babyemo.config import NoFaceFallback
from babyemo.data.loading.dataset import (
    FaceDetection,
    FaceEntry,
    FileBatch,
    FileDataset,
    FileItem,
    add_regions,
    collate_files,
    decode_size,
)
from babyemo.data.loading.file_errors import FileErrorCode
from babyemo.data.loading.folders import (
    EntryError,
    FoundFiles,
    check_output_folder,
    check_outputs,
    collect_input_files,
)
from babyemo.data.loading.images import load_image
from babyemo.errors import ConfigError, ImageError
from babyemo.fs import atomic_open, atomic_write_bytes
from babyemo.inference import InferenceModel
from babyemo.models import store
from babyemo.progress import progress_bar
from babyemo.rows import (
    FACE_DETECTED,
    FACE_WHOLE_IMAGE,
    UNCERTAIN,
    Prediction,
    PredictionWriter,
)
from babyemo.runtime import PREDICT_BATCH_SIZE, Runtime


@dataclass
class FileResult:
    """The prediction of one input file.

    Attributes:
        path: The file.
        rows: Its rows: one per face (or one for the whole image), or one error row.
        detect_seconds: Time spent in face detection for it, in seconds.
    """

    path: Path
    rows: list[Prediction]
    detect_seconds: float = 0.0


@dataclass
class PredictResult:
    """Counts and times of a prediction run.

    Attributes:
        n_files: Files tried, plus entries that could not be (a broken link, a pipe...):
            each has at least one row.
        n_rows: Rows written (one per file, or one per face with face detection).
        n_errors: Files that could not be read: error rows other than ``no_face``
            (unreadable, empty, truncated, not an image...). ``--strict`` fails on these.
        n_no_face: Photos in which the detector found no face: photos classified whole
            (``face=whole_image``, the default ``no_face_fallback="whole_image"``), or rows
            with ``error=no_face`` (``no_face_fallback="error"``). Not counted in
            ``n_errors``: the file itself is fine.
        n_multi_face: Photos with more than one face.
        n_hidden_skipped: Hidden files and folders skipped while scanning.
        n_non_image_skipped: Files inside folders skipped because their names do not end
            like an image (see :data:`~babyemo.data.loading.folders.IMAGE_SUFFIXES`).
        error_counts: Error code -> number of rows with it (``no_face`` included).
        label_counts: Predicted label → number of rows.
        seconds: Wall time of the run in seconds (finding, reading, detecting, classifying,
            writing), after the model was loaded.
        load_seconds: Wall time the :class:`Predictor` took to load (model, engine, face
            detector) before the run, in seconds.
        detect_seconds: Time spent in face detection, summed over the ``parallel_readers``
            that ran it side by side: thread time, which can exceed ``seconds``.
        parallel_readers: Threads or worker processes that read files and detect faces
            side by side (the CPU readers, else the DataLoader workers, else 1).
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


DEFAULT_RUNTIME = Runtime(batch_size=PREDICT_BATCH_SIZE)
"""The runtime of :class:`Predictor` when none is given (``babyemo predict``'s defaults)."""


class Predictor:
    """A model rebuilt from a checkpoint, ready to classify image files.

    Args:
        checkpoint: A ``.pt`` file; or give ``model``; neither = the default model.
        model: Name of a trained model in the registry.
        runtime: How the model runs (:class:`~babyemo.runtime.Runtime`: device, precision,
            backend, batch size, workers, parallel readers, flip TTA; default
            :data:`DEFAULT_RUNTIME`). Parallel readers (the CPU default): each thread reads,
            decodes and classifies whole batches with one intra-op thread, results kept in
            input order; measured on 2 cores (``benchmarks/bench_predict.py``), 2 readers
            gave 1.13-1.27x the images/s of 1.
        faces: ``"auto"`` (detect faces as the checkpoint was trained: its detector, or
            none), ``"none"`` (classify whole images), or a detector name (``"yunet"``).
        no_face_fallback: ``"whole_image"`` (default: a photo in which the detector finds
            no face is classified whole, its row's ``face`` is ``whole_image``) or
            ``"error"`` (it is a row with ``error=no_face``: no answer). ``"full"`` is the
            deprecated old name of ``"whole_image"``.
        save_crops: Folder to write each face crop to as PNG (``None``: not written).
        min_confidence: In [0, 1]; rows whose top probability is below it get the label
            :data:`UNCERTAIN` (``None``: always the most probable class).

    Attributes:
        model: The :class:`~babyemo.inference.InferenceModel` (engine, temperature,
            preprocessing, readers).
        checkpoint: Its checkpoint.
        class_names: Class names in logit order.
        face_detection: How faces are found (``None``: whole images).
        load_seconds: Wall time this constructor took (checkpoint, engine, face detector).

    Raises:
        RegistryError: No model given and none registered, or unknown detector.
        CheckpointError: Unusable checkpoint.
        DeviceError: Unavailable device or precision.
        ExportError: No exported ONNX file, or one that does not match the checkpoint.
        MissingDependencyError: onnxruntime is not installed (backend ``onnxruntime``).
        ConfigError: Unknown ``no_face_fallback``, ``min_confidence`` outside [0, 1], a
            model with a class named ``uncertain`` used with ``min_confidence``, or a
            ``save_crops`` that is not a writable folder. Every check that needs no model
            is made before loading it.
    """

    def __init__(self, checkpoint: str | os.PathLike[str] | None = None, *,
                 model: str | None = None, runtime: Runtime | None = None,
                 faces: str = "auto", no_face_fallback: str = "whole_image",
                 save_crops: str | os.PathLike[str] | None = None,
                 min_confidence: float | None = None) -> None:
        start = time.perf_counter()
        # Options first: a wrong value fails in milliseconds, not after loading the model.
        _check_options(no_face_fallback, min_confidence, save_crops)
        self.checkpoint = store.load(checkpoint, model)
        self.class_names = self.checkpoint.class_names
        self.min_confidence = _check_min_confidence(min_confidence, self.class_names)
        self.model = InferenceModel(self.checkpoint, runtime or DEFAULT_RUNTIME)
        self.face_detection = self._face_detection(faces, no_face_fallback,
                                                   save_crops is not None)
        self.save_crops = Path(save_crops) if save_crops is not None else None
        self.detect_seconds = 0.0
        self.load_seconds = time.perf_counter() - start

    @property
    def parallel_readers(self) -> int:
        """Threads or processes that read files (and detect faces) side by side (see
        :attr:`babyemo.inference.InferenceModel.parallel_readers`)."""
        return self.model.parallel_readers

    def _face_detection(self, faces: str, fallback: str,
                        keep_crops: bool) -> FaceDetection | None:
        trained = self.checkpoint.faces
        detector = (trained or {}).get("detector") if faces == "auto" else faces
        if not detector or detector == "none":
            return None
        from babyemo.faces import CropSpec, get_detector

        get_detector(detector)  # unknown name / missing package: fail now, not per file
        crop = self.checkpoint.crop_spec or CropSpec()
        return FaceDetection(detector=detector, crop=crop, fallback=NoFaceFallback(fallback).value,
                             keep_crops=keep_crops)

    def predict_tensor(self, images: torch.Tensor) -> torch.Tensor:
        """Class probabilities of a preprocessed batch: ``(N, C, S, S) uint8`` ->
        ``(N, num_classes) float32`` ``softmax(logits / T)`` on the CPU (see
        :meth:`babyemo.inference.InferenceModel.probs`)."""
        return self.model.probs(images)

    def predict_files(self, paths: Sequence[Path]) -> Iterator[Prediction]:
        """Classify files in batches, yielding rows in input order (one per file, or one
        per face with face detection). See :meth:`predict_file_results` for one result per
        file (with its detection time)."""
        for result in self.predict_file_results(paths):
            yield from result.rows

    def predict_file_results(self, paths: Sequence[Path], *,
                             first_index: int = 0) -> Iterator[FileResult]:
        """Classify files in batches: one :class:`FileResult` per file, in input order.

        ``first_index`` is the number of the first file in the names of saved crops
        (``<index>_<stem>_face<k>.png``): a shard of a longer list passes the position of
        its first file in that list, so its crops are named as one run names them.
        :attr:`detect_seconds` is also the sum over the results (kept for one release).
        """
        self.detect_seconds = 0.0
        dataset = FileDataset(paths, self.model.input_spec, self.model.transform,
                              self.face_detection)
        index = first_index
        for batch, probs in self._batches(dataset):
            for result in self.item_results(batch.items, probs, first_index=index):
                self.detect_seconds += result.detect_seconds
                index += 1
                yield result

    def read_image(self, name: str, data: bytes) -> FileItem:
        """Decode an image from its bytes (e.g. an upload: no file is read or written) and
        find its regions to classify, exactly as :meth:`predict_file_results` does for a
        file (same decoding, face detection and preprocessing).

        Args:
            name: The name of its rows' ``path`` (never opened).
            data: The image file's bytes.

        Returns:
            The :class:`~babyemo.data.loading.dataset.FileItem`: its entries' ``(C, S, S)
            uint8`` model inputs, its ``size`` (upright pixels), or its ``error`` and
            ``error_detail`` (a bad image is an error, never an exception).
        """
        spec = self.model.input_spec
        path = Path(name)
        item = FileItem(path)
        try:
            img = (load_image(path, spec.channels, decode_size(spec), data=data)
                   if self.face_detection is None else load_image(path, 3, data=data))
        except ImageError as e:
            item.error = e.code or FileErrorCode.UNREADABLE.value
            item.error_detail = e.message.replace(f"{path}: ", "", 1).removesuffix(".")
            return item
        return add_regions(item, img, spec, self.model.transform, self.face_detection)

    def item_results(self, items: Sequence[FileItem], probs: torch.Tensor | None, *,
                     first_index: int = 0) -> list[FileResult]:
        """The :class:`FileResult` of each item (from :class:`FileDataset` or
        :meth:`read_image`), in order, given the probabilities of their entries.

        Args:
            items: The items; their entries in order are the rows of ``probs``.
            probs: ``(M, K) float32`` probabilities of every entry of every item (see
                :meth:`predict_tensor` of :func:`~babyemo.data.loading.dataset.collate_files`'s
                images), or ``None`` when no item has an entry.
            first_index: Number of the first item in the names of saved crops.
        """
        results, row = [], 0
        for index, item in enumerate(items, first_index):
            result = FileResult(item.path, [], item.detect_seconds)
            if item.error is not None:
                result.rows.append(Prediction(str(item.path), "", float("nan"), (),
                                              item.error, error_detail=item.error_detail))
            for entry in item.entries:
                assert probs is not None
                result.rows.append(self._row(item.path, entry, probs[row], index))
                row += 1
            results.append(result)
        return results

    def _row(self, path: Path, entry: FaceEntry, p: torch.Tensor, index: int) -> Prediction:
        """The row of one classified region (``p``: its ``(K,)`` probabilities)."""
        k = int(p.argmax())
        if entry.crop is not None and self.save_crops is not None:
            self._save_crop(entry.crop, index, path, entry.face_index)
        uncertain = self.min_confidence is not None and float(p[k]) < self.min_confidence
        face = entry.face
        found = (None if self.face_detection is None
                 else FACE_DETECTED if entry.face_index is not None else FACE_WHOLE_IMAGE)
        return Prediction(
            str(path), UNCERTAIN if uncertain else self.class_names[k], float(p[k]),
            tuple(float(v) for v in p), top_class=self.class_names[k],
            face_index=entry.face_index, box=tuple(face.box) if face is not None else None,
            det_score=(face.score if face is not None and entry.face_index is not None
                       else None), face=found)

    def _batch_probs(self, batch: FileBatch) -> tuple[FileBatch, torch.Tensor | None]:
        probs = self.model.probs(batch.images) if batch.images is not None else None
        return batch, probs

    def _batches(self, dataset: FileDataset) -> Iterator[tuple[FileBatch, torch.Tensor | None]]:
        """``(collated batch, probs)`` in input order (see
        :meth:`babyemo.inference.InferenceModel.map_batches`)."""
        yield from self.model.map_batches(dataset, self._batch_probs, collate_files)

    def _save_crop(self, crop: Any, index: int, path: Path, face_index: int) -> None:
        from io import BytesIO

        buf = BytesIO()
        crop.save(buf, format="PNG")
        stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in path.stem)[:80]
        atomic_write_bytes(self.save_crops / f"{index:06d}_{stem}_face{face_index}.png",
                           buf.getvalue())


def _check_options(no_face_fallback: str, min_confidence: float | None,
                   save_crops: str | os.PathLike[str] | None) -> None:
    """The checks of :class:`Predictor`'s options that need no model (fast; the runtime's
    own values are checked by :class:`~babyemo.runtime.Runtime`).

    Raises:
        ConfigError: See :class:`Predictor`.
    """
    try:
        NoFaceFallback(no_face_fallback)
    except ValueError:
        raise ConfigError(f"Unknown no-face fallback '{no_face_fallback}'.",
                          "use whole_image or error") from None
    _check_min_confidence(min_confidence, [])
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


def predict_to_files(inputs: Iterable[str | os.PathLike[str]] | FoundFiles,
                     predictor: Predictor, *,
                     csv_out: str | os.PathLike[str] | IO[str] | None = None,
                     json_out: str | os.PathLike[str] | IO[str] | None = None,
                     recursive: bool = True, all_files: bool = False,
                     first_index: int = 0) -> PredictResult:
    """Predict every image under ``inputs`` and write CSV and/or JSON.

    Args:
        inputs: Files and folders (folders are searched recursively by default), or what
            :func:`~babyemo.data.loading.folders.collect_input_files` found in them (a caller that
            checked its inputs before loading the model).
        predictor: The model.
        csv_out: CSV file path, or an open text stream (e.g. stdout), or ``None``.
        json_out: JSON file path (a list of row objects), or an open text stream, or
            ``None``.
        recursive: Search sub-folders.
        all_files: Inside folders, try every file, not only those whose names end like an
            image (:data:`~babyemo.data.loading.folders.IMAGE_SUFFIXES`). Files named in
            ``inputs`` are always tried.
        first_index: Number of the first file in the names of saved crops (see
            :meth:`Predictor.predict_file_results`; a shard's position in its list).

    Returns:
        The :class:`PredictResult`. Files are complete only when this returns: they are
        written under temporary names and renamed at the end.

    Every file found is a row: unreadable files, special files (FIFOs, devices), broken
    links, symlink loops and folders that cannot be listed are error rows (the last ones
    after the predicted ones, see :func:`~babyemo.data.loading.folders.find_input_files`), with a
    :class:`~babyemo.data.loading.file_errors.FileErrorCode` in ``error`` and the reason in
    ``error_detail``. Inside folders, hidden files and files whose names do not end like an
    image are skipped and counted.

    Raises:
        DataError: An input path does not exist, or the inputs hold no file to read (an
            empty folder); nothing is written then.
        ConfigError: ``csv_out``, ``json_out`` or the predictor's ``save_crops`` folder
            cannot be written, is one of the inputs (an image, the checkpoint), lies inside
            an input folder, or ``csv_out`` and ``json_out`` are one file (see
            :func:`~babyemo.data.loading.folders.check_outputs`); nothing is written then.
    """
    start = time.perf_counter()
    found = (inputs if isinstance(inputs, FoundFiles)
             else collect_input_files(inputs, recursive=recursive, all_files=all_files))
    check_outputs({"csv_out": None if hasattr(csv_out, "write") else csv_out,
                   "json_out": None if hasattr(json_out, "write") else json_out},
                  {"save_crops": getattr(predictor, "save_crops", None)},
                  inputs=[*found.files, getattr(getattr(predictor, "checkpoint", None), "path",
                                                None)],
                  scanned=found.folders)
    summary = new_summary(found, predictor)
    with ExitStack() as stack:
        csv_stream = (None if csv_out is None else csv_out if hasattr(csv_out, "write")
                      else stack.enter_context(atomic_open(csv_out, "w", newline="")))
        json_stream = (None if json_out is None else json_out if hasattr(json_out, "write")
                       else stack.enter_context(atomic_open(json_out, "w")))
        writer = PredictionWriter(predictor.class_names, csv_stream=csv_stream,
                                  json_stream=json_stream,
                                  with_top=predictor.min_confidence is not None,
                                  with_faces=predictor.face_detection is not None)
        for pred in photo_rows(found, predictor, summary, first_index=first_index):
            writer.write(pred)
        writer.close()
    summary.seconds = time.perf_counter() - start
    return summary


def new_summary(found: FoundFiles, predictor: Predictor) -> PredictResult:
    """An empty :class:`PredictResult` for the files ``found``, before prediction."""
    return PredictResult(n_files=len(found.files) + len(found.skipped),
                         n_hidden_skipped=found.hidden,
                         n_non_image_skipped=len(found.non_images),
                         load_seconds=predictor.load_seconds,
                         parallel_readers=predictor.parallel_readers)


def photo_rows(found: FoundFiles, predictor: Predictor, summary: PredictResult, *,
               first_index: int = 0) -> Iterator[Prediction]:
    """The rows of the files found, in input order (error rows of the entries that are not
    files where they were found), with a progress bar; counts them into ``summary``
    (labels, errors, faces, detection time) as they are consumed.

    Args:
        found: What :func:`~babyemo.data.loading.folders.find_input_files` found.
        predictor: The model.
        summary: Counts to update (see :func:`new_summary`).
        first_index: Number of the first file in the names of saved crops.
    """
    labels: Counter[str] = Counter(summary.label_counts)
    errors: Counter[str] = Counter(summary.error_counts)
    with progress_bar("predicting", total=len(found.entries), unit="img") as bar:
        for result in _in_input_order(found, predictor.predict_file_results(
                found.files, first_index=first_index)):
            bar.advance()
            summary.detect_seconds += result.detect_seconds
            _count(result, summary, labels, errors, predictor.face_detection is not None)
            yield from result.rows
            summary.label_counts = dict(sorted(labels.items()))
            summary.error_counts = dict(sorted(errors.items()))


def _in_input_order(found: FoundFiles, results: Iterator[FileResult]) -> Iterator[FileResult]:
    """The results of the files and the error rows of the entries that are not files to
    read (a FIFO, a broken link...), each where it was found in the inputs."""
    for entry in found.entries:
        if isinstance(entry, EntryError):
            yield FileResult(Path(entry.path), [Prediction(
                str(entry.path), "", float("nan"), (), entry.code.value,
                error_detail=entry.detail)])
        else:
            yield next(results)


def _count(result: FileResult, summary: PredictResult, labels: Counter[str],
           errors: Counter[str], with_faces: bool) -> None:
    """Add one file's rows to the summary's counts."""
    summary.n_rows += len(result.rows)
    faces = 0
    for pred in result.rows:
        if pred.error is not None:
            errors[pred.error] += 1
            if pred.error == FileErrorCode.NO_FACE:
                summary.n_no_face += 1
            else:
                summary.n_errors += 1
            continue
        labels[pred.label] += 1
        if pred.face_index is None and with_faces:
            summary.n_no_face += 1  # classified whole (--no-face-fallback whole_image)
        if pred.face_index is not None:
            faces += 1
    summary.n_multi_face += faces >= 2


PredictSummary = PredictResult
"""Old name of :class:`PredictResult` (kept for one release)."""
