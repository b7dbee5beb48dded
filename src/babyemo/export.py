"""Export a checkpoint to ONNX for ONNX Runtime: fp32, and statically quantized int8.

``export_onnx(checkpoint, int8=...) -> ExportResult``:

1. The checkpoint's fp32 model is exported with ``torch.onnx.export(dynamo=True)`` (the
   ``torch.export``-based exporter, torch's default since 2.9; it needs ``onnxscript``):
   input ``input`` ``(batch, C, S, S) float32`` with a dynamic batch axis, output
   ``logits`` ``(batch, K) float32``. The legacy TorchScript exporter is deprecated in
   torch 2.14 and fails on some registered archs (vgg16 below 224 px), so it is not used.
2. The file's ``metadata_props`` carry babyemo's metadata
   (:class:`babyemo.onnx_format.OnnxMetadata`: class names, input spec, arch, face-crop
   settings, source checkpoint sha256 and a digest of its weights, int8 flag), so
   ``--backend onnxruntime`` preprocesses and labels exactly as the checkpoint does.
3. onnxruntime's fp32 logits are compared with torch's fp32 logits on a seeded batch of
   :data:`VERIFY_BATCH` inputs (a batch size other than the export example's, to check the
   dynamic axis); a difference above ``VERIFY_RTOL * max(1, max |logit|)`` is an
   :class:`~babyemo.errors.ExportError`.
4. With ``int8``: ``onnxruntime.quantization.quant_pre_process`` then ``quantize_static``
   (QDQ format, uint8 activations, int8 weights per output channel in a 7-bit range
   (``reduce_range``: onnxruntime's uint8 x int8 kernels saturate on x86 CPUs without
   VNNI, see docs/export.md), onnxruntime's min-max calibration of activation ranges),
   on a *quantization sample* of real images of the **training split** of the checkpoint's own
   training manifest (``train["manifest"]`` in the checkpoint; ``quantization_data``
   overrides), a seeded sample of ``quantization_images`` of them, preprocessed exactly as
   evaluation does (:func:`babyemo.transforms.eval_transform`,
   :class:`~babyemo.data.loading.dataset.ManifestDataset` with the checkpoint's face crops), never
   random data. ("Calibration" in babyemo means temperature scaling; the int8 sample is
   called the quantization sample here, and ``int8_calibration`` only in the ONNX file's
   metadata, for compatibility with older exports.) The int8 model is then compared with
   the fp32 torch model on the manifest's ``val`` split (accuracy, macro-F1, agreement of
   the predicted labels), and the figures are stored in its metadata (``int8_eval``).

Files are written under a temporary name and renamed, so a failed export never leaves a
partial ``.onnx`` file. Models must be below protobuf's 2 GiB limit (every registered
arch is).
"""

from __future__ import annotations

import contextlib
import logging
import os
import random
import tempfile
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, Subset

from babyemo.checkpoint import Checkpoint, load_checkpoint
from babyemo.data.loading.folders import check_outputs
from babyemo.engines import OnnxEngine, TorchEngine, import_onnxruntime
from babyemo.errors import ConfigError, DataError, ExportError, MissingDependencyError
from babyemo.fs import atomic_write_bytes
from babyemo.onnx_format import OnnxMetadata, onnx_paths
from babyemo.transforms import normalize

log = logging.getLogger(__name__)

FORMATS = ("onnx",)
"""Export formats of :func:`export_onnx` (``babyemo export --format``)."""

DEFAULT_QUANTIZATION_IMAGES = 200
"""Training images in the int8 quantization sample by default."""

VERIFY_BATCH = 5
"""Inputs of the fp32 check (onnxruntime vs torch)."""

VERIFY_RTOL = 1e-3
"""Largest allowed ``max |onnx - torch|`` logit difference, relative to ``max(1, max |logit|)``."""

MAX_F1_DROP = 0.01
"""int8 macro-F1 may be at most this much (1 point) below fp32's on val (the CLI warns)."""


@dataclass
class ExportResult:
    """What :func:`export_onnx` wrote and measured.

    Attributes:
        checkpoint: The source checkpoint.
        onnx: The fp32 ONNX file.
        int8: The int8 ONNX file (``None`` without ``int8``).
        max_abs_diff: ``max |onnxruntime - torch|`` of the fp32 logits on the check batch.
        tolerance: The allowed maximum of ``max_abs_diff``.
        quantization: With ``int8``, the quantization sample: ``manifest``,
            ``manifest_sha256``, ``split`` (``"train"``), ``n_images``, ``seed``,
            ``method`` and ``paths`` (the image paths, relative to the manifest, that the
            sample read; not stored in the file).
        int8_eval: With ``int8`` and a ``val`` split: ``split``, ``n``, ``fp32_torch`` and
            ``int8_onnxruntime`` (each ``{"accuracy", "macro_f1"}``), ``agreement`` (fraction
            of images with the same predicted label) and ``macro_f1_drop`` (fp32 - int8).
        seconds: Wall time in seconds.
        files: The files written, in order.
    """

    checkpoint: Path
    onnx: Path
    int8: Path | None = None
    max_abs_diff: float = float("nan")
    tolerance: float = float("nan")
    quantization: dict[str, Any] | None = None
    int8_eval: dict[str, Any] | None = None
    seconds: float = 0.0
    files: list[Path] = field(default_factory=list)

    @property
    def int8_within_tolerance(self) -> bool | None:
        """Whether int8 macro-F1 is at most :data:`MAX_F1_DROP` below fp32's on val
        (``None`` when not measured)."""
        if not self.int8_eval:
            return None
        return self.int8_eval["macro_f1_drop"] <= MAX_F1_DROP + 1e-12


def import_onnx() -> ModuleType:
    """Import ``onnx`` (and check ``onnxscript``, which torch's exporter needs).

    Raises:
        MissingDependencyError: A package of the ``onnx`` extra is missing.
    """
    try:
        import onnx
    except ImportError:
        raise MissingDependencyError("onnx", "onnx", "ONNX export") from None
    try:
        import onnxscript  # noqa: F401
    except ImportError:
        raise MissingDependencyError("onnxscript", "onnx", "ONNX export") from None
    return onnx


def int8_path_for(path: str | os.PathLike[str]) -> Path:
    """The int8 file name for an fp32 file name: ``model.onnx`` -> ``model.int8.onnx``."""
    p = Path(path)
    stem = p.name[:-len(".onnx")] if p.name.endswith(".onnx") else p.name
    return p.with_name(stem + ".int8.onnx")


def export(checkpoint: str | os.PathLike[str], *, format: str = "onnx",
           **options: Any) -> ExportResult:
    """Export a checkpoint in a deployment format (``babyemo export --format``).

    Args:
        checkpoint: The source checkpoint.
        format: One of :data:`FORMATS` (``"onnx"``: :func:`export_onnx`).
        **options: The options of that format's exporter.

    Raises:
        ConfigError: An unknown format.
        (and those of the format's exporter)
    """
    if format not in FORMATS:
        raise ConfigError(f"Unknown export format {format!r}.", f"use one of {', '.join(FORMATS)}")
    return export_onnx(checkpoint, **options)


def export_onnx(checkpoint: str | os.PathLike[str], *, out: str | os.PathLike[str] | None = None,
                int8: bool = False, quantization_data: str | os.PathLike[str] | None = None,
                quantization_images: int = DEFAULT_QUANTIZATION_IMAGES, seed: int = 0,
                eval_split: str | None = "val", batch_size: int = 32,
                threads: int | None = None) -> ExportResult:
    """Export a checkpoint to ONNX (always fp32; with ``int8`` also a quantized model).

    Args:
        checkpoint: A ``.pt`` file written by ``babyemo train``.
        out: The fp32 file (default: ``<checkpoint stem>.onnx`` beside the checkpoint). The
            int8 file is named after it: ``<name>.int8.onnx``.
        int8: Also write a statically quantized int8 model (see the module doc).
        quantization_data: Manifest (CSV or its folder) whose ``train`` split gives the
            quantization sample (default: the manifest the checkpoint was trained on).
        quantization_images: Training images in the quantization sample (a seeded
            sample; all of them if the split is smaller).
        seed: Seed of the quantization sample.
        eval_split: Split of that manifest on which int8 is compared with fp32 (``None``:
            no comparison).
        batch_size: Images per forward pass of quantization and comparison.
        threads: onnxruntime intra-op threads (default: all cores).

    Returns:
        The :class:`ExportResult`.

    Raises:
        CheckpointError: Unusable checkpoint.
        MissingDependencyError: onnx, onnxscript or onnxruntime is not installed.
        ExportError: torch cannot export the model, or onnxruntime's fp32 logits differ
            from torch's beyond the tolerance.
        ManifestError: (int8, no ``quantization_data``) the checkpoint records no training
            manifest, or it is not on this machine (see
            :func:`babyemo.data.preparation.lookup.manifest_for_model`).
        ConfigError: ``quantization_images`` < 1; an output file that cannot be written or
            is the checkpoint or the quantization manifest (see
            :func:`~babyemo.data.loading.folders.check_outputs`), checked before exporting.
        DataError: The quantization manifest is unreadable, or its ``train`` split is empty
            or has labels the model does not know.
    """
    start = time.perf_counter()
    if int8 and quantization_images < 1:
        raise ConfigError(f"quantization_images must be >= 1, got {quantization_images}.",
                          "e.g. 200")
    onnx = import_onnx()
    import_onnxruntime()
    ckpt = load_checkpoint(checkpoint)
    manifest = _quantization_manifest(ckpt, quantization_data) if int8 else None
    fp32_path = Path(out) if out is not None else onnx_paths(ckpt.path)[0]
    check_outputs({"output file": fp32_path,
                   "int8 output file": int8_path_for(fp32_path) if int8 else None},
                  inputs=[ckpt.path, None if manifest is None else manifest.path])
    result = ExportResult(checkpoint=ckpt.path, onnx=fp32_path)
    model = ckpt.build_model("cpu")
    proto = _export_proto(model, ckpt)
    meta = OnnxMetadata.for_checkpoint(ckpt, extra={"exporter": _exporter_info(proto)})
    onnx.helper.set_model_props(proto, meta.to_props())
    result.max_abs_diff, result.tolerance = _verify(proto.SerializeToString(), model, ckpt)
    meta.extra["export_check"] = {"max_abs_diff": result.max_abs_diff,
                                  "tolerance": result.tolerance, "batch": VERIFY_BATCH}
    onnx.helper.set_model_props(proto, meta.to_props())
    atomic_write_bytes(fp32_path, proto.SerializeToString())
    result.files.append(fp32_path)
    log.info("Wrote %s (onnxruntime vs torch fp32: max |diff| %.2e)", fp32_path,
             result.max_abs_diff)
    if manifest is not None:
        _export_int8(onnx, ckpt, proto, meta, result, manifest=manifest,
                     n_images=quantization_images, seed=seed, eval_split=eval_split,
                     batch_size=batch_size, threads=threads)
    result.seconds = time.perf_counter() - start
    return result


def _export_proto(model: torch.nn.Module, ckpt: Checkpoint) -> Any:
    """The fp32 ONNX ``ModelProto`` of ``model`` (dynamic batch axis)."""
    spec = ckpt.input_spec
    example = torch.zeros(2, spec.channels, spec.size, spec.size)
    try:
        with _quiet("onnxscript", "onnx_ir", "torch.onnx"):
            program = torch.onnx.export(
                model, (example,), None, input_names=["input"], output_names=["logits"],
                dynamic_shapes=({0: torch.export.Dim("batch")},), dynamo=True,
                verbose=False, optimize=True, external_data=False)
    except ImportError as e:  # onnxscript / onnx_ir missing or too old
        raise MissingDependencyError(getattr(e, "name", None) or "onnxscript", "onnx",
                                     "ONNX export") from e
    except Exception as e:  # the exporter raises many types
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise ExportError(f"torch.onnx could not export arch '{ckpt.arch}' of {ckpt.path}: "
                          f"{first}", "run with --debug for the traceback") from e
    return program.model_proto


def _exporter_info(proto: Any) -> str:
    opsets = ", ".join(f"{o.domain or 'ai.onnx'} {o.version}" for o in proto.opset_import)
    return f"torch.onnx.export(dynamo=True), torch {torch.__version__}, opset {opsets}"


def _verify(data: bytes, model: torch.nn.Module, ckpt: Checkpoint) -> tuple[float, float]:
    """Compare onnxruntime's fp32 logits with torch's on a seeded batch.

    Returns:
        ``(max_abs_diff, tolerance)``.

    Raises:
        ExportError: The difference exceeds the tolerance, or onnxruntime cannot run it.
    """
    ort = import_onnxruntime()
    spec = ckpt.input_spec
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(VERIFY_BATCH, spec.channels, spec.size, spec.size, generator=gen)
    with torch.inference_mode():
        ref = model(x).float().numpy()
    try:
        options = ort.SessionOptions()
        options.log_severity_level = 3
        session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        (got,) = session.run(None, {session.get_inputs()[0].name: x.numpy()})
    except Exception as e:
        raise ExportError(f"onnxruntime cannot run the exported {ckpt.arch} model: "
                          f"{str(e).strip()}", "run with --debug for the traceback") from e
    diff = float(np.abs(np.asarray(got) - ref).max())
    tol = VERIFY_RTOL * max(1.0, float(np.abs(ref).max()))
    if not diff <= tol:
        raise ExportError(f"The exported model's logits differ from torch's: max |diff| "
                          f"{diff:.3g} > tolerance {tol:.3g} (fp32, batch of {VERIFY_BATCH}).",
                          "the exporter mistranslated an op of this arch; keep the torch "
                          "backend, and report it with the --debug traceback")
    return diff, tol


def _quantization_manifest(ckpt: Checkpoint, quantization_data: str | os.PathLike[str] | None):
    from babyemo.data.preparation.lookup import manifest_for_model
    from babyemo.data.preparation.manifest import read_manifest

    choice = manifest_for_model(quantization_data, ckpt.train, str(ckpt.path),
                                option="--quantization-data", changed_ok=True)
    log.info("int8 quantization sample from %s", choice.describe())
    return read_manifest(choice.path)


def _export_int8(onnx: ModuleType, ckpt: Checkpoint, proto: Any, meta: OnnxMetadata,
                 result: ExportResult, *, manifest: Any, n_images: int, seed: int,
                 eval_split: str | None, batch_size: int, threads: int | None) -> None:
    """Quantize, compare with fp32 on ``eval_split`` and write the int8 file."""
    from onnxruntime.quantization import (
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quant_pre_process,
        quantize_static,
    )

    from babyemo.inference import checkpoint_dataset

    train_ds = checkpoint_dataset(manifest, "train", ckpt)
    k = min(n_images, len(train_ds))
    if k < n_images:
        log.warning("Quantizing int8 on all %d training images (fewer than %d).", k, n_images)
    indices = sorted(random.Random(seed).sample(range(len(train_ds)), k))
    sample = {"manifest": str(manifest.path), "manifest_sha256": manifest.sha256(),
              "split": "train", "n_images": k, "seed": seed, "method": "minmax",
              "format": "QDQ", "activations": "uint8", "weights": "int8 per channel, 7-bit range"}
    int8_path = int8_path_for(result.onnx)
    with tempfile.TemporaryDirectory(prefix="babyemo-export-") as tmp:
        src, pre, quant = (Path(tmp) / n for n in ("fp32.onnx", "pre.onnx", "int8.onnx"))
        src.write_bytes(proto.SerializeToString())
        with _quiet(""):
            quant_pre_process(str(src), str(pre))
            reader = _quantization_reader(train_ds, indices, "input", batch_size)
            quantize_static(str(pre), str(quant), reader, quant_format=QuantFormat.QDQ,
                            per_channel=True, reduce_range=True,
                            activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                            calibrate_method=CalibrationMethod.MinMax)
        q = onnx.load(str(quant))
        extra = {k: v for k, v in meta.extra.items() if k != "export_check"}
        meta_q = replace(meta, int8=True, extra={**extra, "int8_calibration": sample})
        onnx.helper.set_model_props(q, meta_q.to_props())
        quant.write_bytes(q.SerializeToString())
        result.quantization = {**sample, "paths": [train_ds.rel_paths[i] for i in indices]}
        if eval_split:
            result.int8_eval = _compare(ckpt, manifest, eval_split, OnnxEngine(quant,
                                        threads=threads), batch_size)
        if result.int8_eval is not None:
            meta_q.extra["int8_eval"] = result.int8_eval
            onnx.helper.set_model_props(q, meta_q.to_props())
        atomic_write_bytes(int8_path, q.SerializeToString())
    result.int8 = int8_path
    result.files.append(int8_path)
    log.info("Wrote %s (calibrated on %d training images of %s)", int8_path, k, manifest.path)


@contextlib.contextmanager
def _quiet(*logger_names: str) -> Iterator[None]:
    """Silence the info lines and warnings of the exporter / quantizer (onnxscript and
    onnx_ir log each optimisation pass; onnxruntime.quantization logs advice through the
    root logger ``""``), so the terminal keeps babyemo's own lines. Errors still raise."""
    loggers = [logging.getLogger(name) for name in logger_names]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.setLevel(level)


def _quantization_reader(dataset: Any, indices: list[int], input_name: str,
                        batch_size: int) -> Any:
    """An ``onnxruntime.quantization.CalibrationDataReader`` over ``dataset[indices]``:
    ``{input_name: (B, C, S, S) float32}`` batches of eval-transformed, normalised training
    images (the model's input, as the engines feed it)."""
    from onnxruntime.quantization import CalibrationDataReader

    class _Reader(CalibrationDataReader):
        def __init__(self) -> None:
            loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False,
                                num_workers=0)
            spec = dataset.spec
            self._batches = (normalize(x, spec).numpy() for x, _ in loader)

        def get_next(self) -> dict[str, np.ndarray] | None:
            x = next(self._batches, None)
            return None if x is None else {input_name: x}

    return _Reader()


def _compare(ckpt: Checkpoint, manifest: Any, split: str, int8: OnnxEngine,
             batch_size: int) -> dict[str, Any] | None:
    """Accuracy / macro-F1 of fp32 torch vs int8 onnxruntime on ``split`` (one pass)."""
    from babyemo.inference import checkpoint_dataset
    from babyemo.metrics import classification_metrics

    try:
        dataset = checkpoint_dataset(manifest, split, ckpt)
    except DataError as e:
        log.warning("int8 not compared with fp32: %s", e.message)
        return None
    fp32 = TorchEngine(ckpt, device="cpu", precision="fp32")
    pred32, pred8 = [], []
    for x, _ in DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0):
        pred32.append(fp32.logits(x).argmax(1))
        pred8.append(int8.logits(x).argmax(1))
    y_true = np.asarray(dataset.targets, dtype=np.int64)
    p32, p8 = torch.cat(pred32).numpy(), torch.cat(pred8).numpy()
    m32 = classification_metrics(y_true, p32, ckpt.class_names)
    m8 = classification_metrics(y_true, p8, ckpt.class_names)

    def pick(m: dict[str, Any]) -> dict[str, float]:
        return {"accuracy": float(m["accuracy"]), "macro_f1": float(m["macro_f1"])}

    return {"split": split, "n": len(dataset), "fp32_torch": pick(m32),
            "int8_onnxruntime": pick(m8), "agreement": float((p32 == p8).mean()),
            "macro_f1_drop": float(m32["macro_f1"]) - float(m8["macro_f1"])}
