"""Device and precision choice (``auto|cpu|cuda|cuda:N|mps``, ``auto|fp32|bf16|fp16``) and
how CPU threads are shared: DataLoader workers, intra-op threads, parallel readers."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import torch

from babyemo.config import Precision
from babyemo.errors import DeviceError
from babyemo.parallel import ordered_map

T = TypeVar("T")
R = TypeVar("R")


def resolve_device(spec: str | torch.device = "auto") -> torch.device:
    """Turn a device name into a :class:`torch.device`.

    Args:
        spec: ``"auto"`` (CUDA if available, else MPS, else CPU), ``"cpu"``, ``"cuda"``,
            ``"cuda:N"`` or ``"mps"``.

    Raises:
        DeviceError: The device does not exist on this machine or the name is unknown.
    """
    if isinstance(spec, torch.device):
        return spec
    spec = (spec or "auto").strip().lower()
    if spec == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(spec)
    except RuntimeError:
        raise DeviceError(f"Unknown device '{spec}'.",
                          "use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise DeviceError(f"Device '{spec}' was requested but CUDA is not available here: "
                              f"{cuda_found()}.", _cuda_hint())
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise DeviceError(f"Device '{spec}' does not exist: "
                              f"{torch.cuda.device_count()} CUDA device(s) found.")
    elif device.type == "mps":
        if not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
            raise DeviceError("Device 'mps' was requested but MPS is not available here.",
                              "use --device cpu or auto")
    elif device.type != "cpu":
        raise DeviceError(f"Unsupported device '{spec}'.", "use auto, cpu, cuda, cuda:N or mps")
    return device


def cuda_found() -> str:
    """What this process sees of CUDA, in words: torch's build and the device count."""
    build = torch.version.cuda
    if not build:
        return f"torch {torch.__version__} is a CPU-only build"
    try:
        count = torch.cuda.device_count()
    except RuntimeError as e:  # a broken driver raises here
        count, why = 0, f" ({str(e).splitlines()[0]})"
    else:
        why = ""
    return (f"torch {torch.__version__} is built for CUDA {build}, and "
            f"torch.cuda.device_count() is {count}{why}")


def _cuda_hint() -> str:
    if not torch.version.cuda:
        return "use --device cpu (or auto), or install a CUDA build of torch"
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return (f"CUDA_VISIBLE_DEVICES is '{visible}': check it and the NVIDIA driver with "
                "`nvidia-smi`, or use --device cpu")
    return "no GPU or no working NVIDIA driver here: check `nvidia-smi`, or use --device cpu"


def cpu_has_native_bf16() -> bool:
    """True when the CPU has native bf16 matmul support (AVX512-BF16 or AMX), per oneDNN."""
    try:
        return bool(torch.backends.mkldnn.is_available()
                    and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


@dataclass(frozen=True)
class PrecisionPlan:
    """How a forward/backward pass runs.

    Attributes:
        name: The resolved precision (``fp32``, ``bf16`` or ``fp16``).
        autocast_dtype: dtype for :func:`torch.autocast`, or ``None`` for fp32.
        grad_scaler: Whether a :class:`torch.amp.GradScaler` is needed (CUDA fp16 only).
    """

    name: str
    autocast_dtype: torch.dtype | None
    grad_scaler: bool

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager[Any]:
        """The autocast context for ``device`` (a null context for fp32)."""
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.autocast_dtype)


def resolve_precision(precision: Precision | str, device: torch.device) -> PrecisionPlan:
    """Choose the numeric precision for ``device``.

    ``auto`` is bf16 autocast on CPUs with native bf16 (AVX512-BF16/AMX), CUDA AMP on
    GPUs (bf16 where supported, else fp16 with a gradient scaler), fp32 otherwise.

    Raises:
        DeviceError: fp16 on a CPU, or bf16 on a device without it.
    """
    precision = Precision(precision)
    if precision is Precision.auto:
        if device.type == "cuda":
            precision = Precision.bf16 if torch.cuda.is_bf16_supported() else Precision.fp16
        elif device.type == "cpu" and cpu_has_native_bf16():
            precision = Precision.bf16
        else:
            precision = Precision.fp32
    if precision is Precision.fp32:
        return PrecisionPlan("fp32", None, False)
    if precision is Precision.bf16:
        if device.type == "cuda" and not torch.cuda.is_bf16_supported():
            raise DeviceError("This GPU does not support bf16.", "use --precision fp16 or fp32")
        return PrecisionPlan("bf16", torch.bfloat16, False)
    if device.type == "cpu":
        raise DeviceError("fp16 is not supported on the CPU.", "use --precision bf16 or fp32")
    return PrecisionPlan("fp16", torch.float16, device.type == "cuda")


def configure_backends(device: torch.device) -> None:
    """Set torch's backends for training on ``device``.

    On CUDA: ``torch.backends.cudnn.benchmark`` (cuDNN times its convolution algorithms
    on the first batches and keeps the fastest; babyemo's inputs have one fixed size) and
    TF32 matmuls and convolutions for fp32 (``torch.set_float32_matmul_precision("high")``;
    Ampere and later GPUs). Other devices are left alone.
    """
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
        torch.backends.cudnn.allow_tf32 = True
        torch.set_float32_matmul_precision("high")


def default_num_workers(device: torch.device, *, processes: int = 1,
                        cores: int | None = None) -> int:
    """DataLoader workers that do not oversubscribe the cores.

    On a small CPU-only machine the model's intra-op threads already use every core, and
    worker processes fight them (measured here: 2 workers made resnet18 training 3.9x
    slower on 2 cores), so CPU training decodes in the main process unless there are
    cores to spare. On CUDA, decoding runs beside the GPU, so up to 4 workers are used.

    Args:
        device: Where the model runs.
        processes: Training processes sharing this machine's cores (torchrun's
            ``LOCAL_WORLD_SIZE``): each gets ``cores // processes``.
        cores: The machine's cores (default ``os.cpu_count()``).

    Returns:
        CUDA: ``min(4, share - 1)``, at least 1; CPU: 0 with a share of 4 cores or fewer,
        else ``min(4, share // 4)``.
    """
    share = max(1, (cores or os.cpu_count() or 1) // max(1, processes))
    if device.type == "cuda":
        return min(4, max(1, share - 1))
    return 0 if share <= 4 else min(4, share // 4)


def set_cpu_threads(device: torch.device, num_workers: int, *, processes: int = 1) -> int:
    """Give the model's intra-op threads the cores the DataLoader workers leave free.

    On the CPU, the intra-op threads are capped at ``max(1, cores // processes -
    num_workers)`` so that workers and intra-op threads together do not exceed the cores
    (oversubscribed threads spin and wait for each other); ``processes`` is the number of
    training processes on this machine (torchrun's ``LOCAL_WORLD_SIZE``). A lower count
    set by the user (``OMP_NUM_THREADS``, ``torch.set_num_threads``) is kept. Other
    devices are left alone.

    Returns:
        The number of intra-op threads now in use.
    """
    if device.type == "cpu":
        cap = max(1, (os.cpu_count() or 1) // max(1, processes) - num_workers)
        torch.set_num_threads(min(torch.get_num_threads(), cap))
    return torch.get_num_threads()


def default_readers(device: torch.device, backend: str, num_workers: int) -> int:
    """How many parallel readers CPU inference should run: threads that each read,
    decode and classify whole batches on one intra-op thread (see :func:`map_in_readers`;
    called "readers" before 0.2, a word CUDA uses for something else).

    One per intra-op thread (usually one per core) for the torch engine on the CPU with no
    DataLoader workers; else 1 (a GPU, onnxruntime with its own thread pool, or worker
    processes doing the reading). Measured on 2 cores (``benchmarks/bench_predict.py``):
    two readers gave 1.13-1.27x the end-to-end images/s of one model call on two threads
    with the next batch read ahead, because no thread waits at the other's barriers.
    """
    if backend != "torch" or device.type != "cpu" or num_workers:
        return 1
    return max(1, min(os.cpu_count() or 1, torch.get_num_threads()))


def map_in_readers(fn: Callable[[T], R], items: Iterable[T], readers: int) -> Iterator[R]:
    """``fn(item)`` for each item, in input order, run by ``readers`` threads that each use
    one torch intra-op thread (:func:`babyemo.parallel.ordered_map`, at most
    ``2 * readers`` items in flight). The caller's intra-op thread count is restored when
    the generator ends or is closed.

    Args:
        fn: Work for one item, e.g. read a batch and run the model on it.
        items: Consumed lazily.
        readers: Number of threads (>= 1).
    """
    threads = torch.get_num_threads()
    try:
        yield from ordered_map(fn, items, workers=readers, ahead=2 * readers,
                               initializer=torch.set_num_threads, initargs=(1,))
    finally:
        torch.set_num_threads(threads)


def batches_in_readers(dataset: Sequence[Any], batch_size: int,
                       collate: Callable[[list[Any]], T], fn: Callable[[T], R],
                       readers: int) -> Iterator[R]:
    """``fn(collate(items))`` for each run of ``batch_size`` consecutive items of
    ``dataset`` (the last one shorter), in order, read and processed by
    :func:`map_in_readers` (each reader indexes the dataset itself, so reading happens in
    the readers too).

    Args:
        dataset: Map-style: ``len`` and ``dataset[i]``, safe to index from several threads.
        batch_size: Items per batch (>= 1).
        collate: Items of one batch -> a batch (e.g. ``default_collate``).
        fn: Work on one batch, e.g. run the model.
        readers: Number of threads (>= 1).
    """
    n = len(dataset)

    def run(start: int) -> R:
        return fn(collate([dataset[i] for i in range(start, min(start + batch_size, n))]))

    return map_in_readers(run, range(0, n, batch_size), readers)
