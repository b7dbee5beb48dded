"""Inference engines: a preprocessed batch in, logits out, from torch or ONNX Runtime.

One seam for every forward pass of evaluation and prediction::

    engine = create_engine(ckpt, backend="torch" | "onnxruntime", onnx=None | "model.onnx")
    logits = engine.logits(images)   # (N, C, S, S) float32 CPU -> (N, K) float32 CPU

Softmax, temperature and labels stay with the caller
(:class:`babyemo.prediction.Predictor`, :func:`babyemo.evaluation.evaluate`): an engine
returns raw logits in the checkpoint's class order.

- :class:`TorchEngine` rebuilds the checkpoint's model on a device, folds its batch norms
  into the convolutions before them (:func:`fold_batchnorm`), with the precision of
  :func:`babyemo.devices.resolve_precision` (autocast), ``channels_last`` memory format on
  CPU and CUDA, ``torch.inference_mode`` and non-blocking copies to CUDA.
- :class:`OnnxEngine` runs a file written by :func:`babyemo.export.export_onnx` with
  ``onnxruntime`` (the optional extra ``babyemo[onnx]``) on the CPU. The file carries the
  checkpoint's class names, input spec and a digest of its weights in its metadata
  (:class:`babyemo.onnx_format.OnnxMetadata`); :func:`create_engine` refuses a file that
  does not match the checkpoint, so preprocessing and class names can never silently
  differ.
"""

from __future__ import annotations

import abc
import logging
import os
from pathlib import Path
from types import ModuleType

import torch

from babyemo.checkpoint import Checkpoint
from babyemo.config import Precision
from babyemo.devices import PrecisionPlan, resolve_device, resolve_precision
from babyemo.errors import ConfigError, ExportError, MissingDependencyError
from babyemo.onnx_format import OnnxMetadata, check_matches, find_onnx
from babyemo.transforms import normalize

log = logging.getLogger(__name__)

BACKENDS = ("torch", "onnxruntime")
"""Names accepted by :func:`create_engine` (and ``--backend``)."""

class Engine(abc.ABC):
    """A model ready to turn preprocessed images into logits.

    Attributes:
        backend: ``"torch"`` or ``"onnxruntime"``.
        device: Where the forward pass runs (always the CPU for ONNX Runtime).
        precision: ``"fp32"``, ``"bf16"``, ``"fp16"`` (torch autocast) or ``"int8"``
            (a quantized ONNX model).
    """

    backend: str
    device: torch.device
    precision: str

    @abc.abstractmethod
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        """Logits of a preprocessed batch.

        Args:
            images: ``(N, C, S, S) uint8`` CPU tensor made by
                :func:`babyemo.transforms.eval_transform` of the checkpoint's input spec
                (normalised here by :func:`babyemo.transforms.normalize`), or a ``float32``
                tensor already normalised.

        Returns:
            ``(N, K) float32`` CPU tensor of logits, in the checkpoint's class order.
        """

    def describe(self) -> str:
        """One line for logs and the CLI, e.g. ``torch cpu bf16``."""
        return f"{self.backend} {self.device.type} {self.precision}"


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """Fold every eval-mode batch norm that follows a convolution into that convolution.

    A batch norm at inference is a fixed per-channel affine map, so it can be merged into
    the weights and bias of the convolution before it, which saves one pass over every
    such activation. The graph is found with torch.fx and folded by
    ``torch.fx.experimental.optimization.fuse`` (``torch.nn.utils.fusion.fuse_conv_bn_eval``
    per pair; a batch norm whose convolution output has other users is kept). A module FX
    cannot trace (data-dependent control flow in ``forward``, such as the input-size check
    of the small babyemo networks) is kept and its children are folded instead.

    Measured with ``benchmarks/bench_archs.py``-style timing (2 cores, AVX2, fp32 +
    channels_last, batch 64, 112 px): custom_resnet 1.17x, resnet18 1.30x,
    mobilenet_v3_large 1.41x, efficientnet_b0 1.39x the images/s of the unfolded model;
    logits within 5e-6. Tracing costs 20-250 ms, once per engine.

    Args:
        model: A model in eval mode (``model.training`` False); changed in place.

    Returns:
        The folded model (a ``torch.fx.GraphModule`` when the whole model could be traced,
        else ``model`` itself with folded children). Same inputs and outputs: ``(N, C, S, S)
        float32`` -> ``(N, K) float32`` logits.

    Raises:
        ValueError: If ``model`` is in training mode (its batch norms use batch statistics
            there, which cannot be folded).
    """
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode")
    from torch.fx.experimental.optimization import fuse

    def fold(module: torch.nn.Module) -> torch.nn.Module:
        if not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in module.modules()):
            return module
        try:
            return fuse(module, inplace=True)
        except Exception as e:  # not traceable: fold inside its children
            log.debug("fold_batchnorm: %s not traced (%s); folding its children",
                      type(module).__name__, e)
        for name, child in module.named_children():
            setattr(module, name, fold(child))
        return module

    return fold(model).eval()


class TorchEngine(Engine):
    """The checkpoint's PyTorch model (the default engine).

    Args:
        checkpoint: The loaded checkpoint.
        device: ``auto|cpu|cuda|cuda:N|mps``.
        precision: ``auto|fp32|bf16|fp16`` (see :func:`babyemo.devices.resolve_precision`).

    Attributes:
        model: The model in eval mode, batch norms folded (:func:`fold_batchnorm`),
            ``channels_last`` on CPU and CUDA.
        plan: The resolved :class:`~babyemo.devices.PrecisionPlan`.
        channels_last: Whether inputs are converted to ``channels_last``.

    Raises:
        DeviceError: Unavailable device or precision.
        CheckpointError: The weights do not fit the architecture.
    """

    backend = "torch"

    def __init__(self, checkpoint: Checkpoint, *, device: str | torch.device = "auto",
                 precision: Precision | str = Precision.auto) -> None:
        self.device = resolve_device(device)
        self.plan: PrecisionPlan = resolve_precision(precision, self.device)
        self.precision = self.plan.name
        self.spec = checkpoint.input_spec
        self.model = fold_batchnorm(checkpoint.build_model(self.device))
        self.channels_last = self.device.type in ("cpu", "cuda")
        if self.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)

    @torch.inference_mode()
    def logits(self, images: torch.Tensor) -> torch.Tensor:
        x = normalize(images.to(self.device, non_blocking=self.device.type == "cuda"), self.spec)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self.plan.autocast(self.device):
            return self.model(x).float().cpu()


class FlipTTA(Engine):
    """Test-time augmentation: the mean of the logits of each image and its mirror image.

    Runs the wrapped engine once on a batch of ``2N`` images (the batch and its horizontal
    flip), so it costs about twice the compute of one pass. Averaging the predictions of
    flipped copies is the standard test-time augmentation of image classifiers (Krizhevsky
    et al. 2012; Simonyan & Zisserman 2015); a face's expression is left-right symmetric
    enough for the flip to be a valid view.

    Args:
        engine: The engine to wrap.
    """

    def __init__(self, engine: Engine) -> None:
        self.inner = engine
        self.backend, self.device, self.precision = engine.backend, engine.device, engine.precision
        self.metadata = getattr(engine, "metadata", None)
        self.path = getattr(engine, "path", None)
        self.plan = getattr(engine, "plan", None)

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        n = images.shape[0]
        both = self.inner.logits(torch.cat([images, images.flip(-1)]))
        return (both[:n] + both[n:]) / 2

    def describe(self) -> str:
        return f"{self.inner.describe()} +flip TTA"


def import_onnxruntime() -> ModuleType:
    """Import ``onnxruntime``.

    Raises:
        MissingDependencyError: It is not installed (hint: ``pip install 'babyemo[onnx]'``).
    """
    try:
        import onnxruntime
    except ImportError:
        raise MissingDependencyError("onnxruntime", "onnx", "The onnxruntime backend") from None
    return onnxruntime


def available_cores() -> int:
    """CPU cores this process may run on (its affinity mask where the OS has one)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return os.cpu_count() or 1


class OnnxEngine(Engine):
    """An exported ONNX model run by ONNX Runtime on the CPU.

    Args:
        path: An ``.onnx`` file written by :func:`babyemo.export.export_onnx`.
        threads: Intra-op threads (default: every core this process may use).

    Attributes:
        path: The file.
        metadata: Its :class:`OnnxMetadata`.
        session: The ``onnxruntime.InferenceSession`` (CPU execution provider).
        input_name: Name of the model's input (read from the model).

    Raises:
        MissingDependencyError: onnxruntime is not installed.
        ExportError: Missing file, not loadable by onnxruntime, or no babyemo metadata.
    """

    backend = "onnxruntime"

    def __init__(self, path: str | os.PathLike[str], *, threads: int | None = None) -> None:
        ort = import_onnxruntime()
        self.path = Path(path)
        if not self.path.is_file():
            raise ExportError(f"ONNX model not found: {self.path}",
                              "export one with `babyemo export CHECKPOINT --format onnx`, or "
                              "pass --onnx FILE")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or available_cores()
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.log_severity_level = 3  # errors only, no per-session warnings on stderr
        try:
            self.session = ort.InferenceSession(str(self.path), options,
                                                providers=["CPUExecutionProvider"])
        except Exception as e:  # onnxruntime raises its own exception types
            raise ExportError(f"{self.path}: onnxruntime cannot load it ({str(e).strip()}).",
                              "re-export it with `babyemo export CHECKPOINT --format onnx`"
                              ) from e
        props = dict(self.session.get_modelmeta().custom_metadata_map)
        self.metadata = OnnxMetadata.from_props(props, self.path)
        self.input_name = self.session.get_inputs()[0].name
        self.device = torch.device("cpu")
        self.precision = "int8" if self.metadata.int8 else "fp32"

    def logits(self, images: torch.Tensor) -> torch.Tensor:
        x = normalize(images.detach().cpu(), self.metadata.input_spec).to(torch.float32)
        x = x.contiguous().numpy()
        (out,) = self.session.run(None, {self.input_name: x})
        return torch.from_numpy(out).float()

    def describe(self) -> str:
        return f"{super().describe()} {self.path}"


def create_engine(checkpoint: Checkpoint, *, backend: str = "torch",
                  onnx: str | os.PathLike[str] | None = None, device: str = "auto",
                  precision: Precision | str = Precision.auto,
                  threads: int | None = None, tta: bool = False) -> Engine:
    """The engine of a checkpoint for a backend.

    Args:
        checkpoint: The loaded checkpoint (class names, input spec, weights).
        backend: ``"torch"`` or ``"onnxruntime"``.
        onnx: With ``onnxruntime``: the exported file (default: :func:`find_onnx`).
        device: ``auto|cpu|cuda|cuda:N|mps``; ONNX Runtime runs on the CPU only.
        precision: ``auto|fp32|bf16|fp16`` for torch; ONNX Runtime accepts ``auto`` or
            ``fp32`` (an int8 model is chosen by its file).
        threads: ONNX Runtime intra-op threads (default: all cores).
        tta: Wrap the engine in :class:`FlipTTA` (mean of image and mirror logits).

    Returns:
        A :class:`TorchEngine` or an :class:`OnnxEngine` (in a :class:`FlipTTA` with
        ``tta``).

    Raises:
        ConfigError: Unknown backend; ``onnx`` given for torch; a device or precision
            the onnxruntime backend does not run.
        ExportError: No exported file, or one that does not match the checkpoint.
        MissingDependencyError: onnxruntime is not installed.
        DeviceError: Unavailable torch device or precision.
    """
    if backend not in BACKENDS:
        raise ConfigError(f"Unknown backend '{backend}'.", "use torch or onnxruntime")
    if backend == "torch":
        if onnx is not None:
            raise ConfigError("An ONNX file was given with the torch backend.",
                              "add --backend onnxruntime, or leave out --onnx")
        engine: Engine = TorchEngine(checkpoint, device=device, precision=precision)
        return FlipTTA(engine) if tta else engine
    import_onnxruntime()  # a missing package first: it is what the user must fix first
    if str(device).lower() not in ("auto", "cpu"):
        raise ConfigError(f"The onnxruntime backend runs on the CPU only, not '{device}'.",
                          "use --device cpu (or auto), or --backend torch")
    if Precision(precision) not in (Precision.auto, Precision.fp32):
        raise ConfigError(f"--precision {Precision(precision).value} applies to the torch "
                          "backend only.", "leave it out: an exported model runs in its own "
                          "precision (fp32, or int8 for a .int8.onnx file)")
    path = Path(onnx) if onnx is not None else find_onnx(checkpoint.path)
    onnx_engine = OnnxEngine(path, threads=threads)
    check_matches(onnx_engine.metadata, checkpoint, path)
    log.debug("Using %s", onnx_engine.describe())
    return FlipTTA(onnx_engine) if tta else onnx_engine
