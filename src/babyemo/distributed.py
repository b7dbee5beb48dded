"""Several processes, one run: PyTorch's own distributed engine (``torch.distributed``),
started by ``torchrun``.

``torchrun`` (``python -m torch.distributed.run``) starts one process per device and tells
each who it is through environment variables (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``, ``MASTER_ADDR``, ``MASTER_PORT``; see
https://pytorch.org/docs/stable/elastic/run.html). :func:`start` reads them, picks the
process's device (``cuda:LOCAL_RANK`` on GPUs, else the CPU) and the backend (NCCL on
CUDA, Gloo on the CPU), and joins the process group with a timeout, so a peer that dies
or hangs ends the others with a :class:`~babyemo.errors.DistributedError` instead of a
hang. Without those variables (or with ``WORLD_SIZE=1``) nothing is started and every
helper here is a no-op for a single process, so the same code runs both ways.

Importing this module does not import torch (the CLI reads :func:`context_from_env`
before it loads anything heavy); the functions that need it import it.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import os
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from babyemo.config import LRScaling
from babyemo.errors import DistributedError

if TYPE_CHECKING:
    import torch

log = logging.getLogger(__name__)

DEFAULT_TIMEOUT_S = 600.0
"""Seconds a collective operation (all-reduce, barrier) may wait for the other processes
before the run fails (``--dist-timeout``)."""

@dataclass(frozen=True)
class DistContext:
    """Who this process is in a distributed run.

    Attributes:
        rank: Global rank, 0 to ``world_size - 1``.
        world_size: Number of processes in the run (1: not distributed).
        local_rank: Rank on this machine (picks the GPU).
        local_world_size: Processes on this machine.
        backend: ``"nccl"`` or ``"gloo"`` once the process group is joined, else ``""``.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    local_world_size: int = 1
    backend: str = ""

    @property
    def enabled(self) -> bool:
        """Whether there is more than one process."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that writes files, logs and progress bars."""
        return self.rank == 0


_SINGLE = DistContext()
_active: DistContext = _SINGLE
_owned = False  # whether start() created the process group (and so may destroy it)


def _env_int(environ: Mapping[str, str], name: str, default: int | None = None) -> int:
    value = environ.get(name)
    if value is None:
        if default is None:
            raise DistributedError(f"WORLD_SIZE is set but {name} is not.",
                                   "start the processes with torchrun, which sets RANK, "
                                   "LOCAL_RANK, MASTER_ADDR and MASTER_PORT too")
        return default
    try:
        return int(value)
    except ValueError:
        raise DistributedError(f"{name}={value!r} is not an integer.",
                               "start the processes with torchrun") from None


def context_from_env(environ: Mapping[str, str] | None = None) -> DistContext:
    """The process's place in the run, from torchrun's environment variables.

    Args:
        environ: The environment (default ``os.environ``).

    Returns:
        A :class:`DistContext` (``world_size`` 1 without ``WORLD_SIZE``); ``backend`` is
        empty (nothing is joined here).

    Raises:
        DistributedError: ``WORLD_SIZE`` > 1 with a missing or malformed ``RANK`` or
            ``LOCAL_RANK``, or a rank outside ``[0, WORLD_SIZE)``.
    """
    env = os.environ if environ is None else environ
    world = _env_int(env, "WORLD_SIZE", 1)
    if world <= 1:
        return _SINGLE
    rank = _env_int(env, "RANK")
    local_rank = _env_int(env, "LOCAL_RANK")
    local_world = _env_int(env, "LOCAL_WORLD_SIZE", world)
    if not 0 <= rank < world or not 0 <= local_rank < local_world:
        raise DistributedError(f"RANK={rank} / LOCAL_RANK={local_rank} do not fit WORLD_SIZE="
                               f"{world} / LOCAL_WORLD_SIZE={local_world}.",
                               "start the processes with torchrun")
    return DistContext(rank=rank, world_size=world, local_rank=local_rank,
                       local_world_size=local_world)


def process_device(spec: str, ctx: DistContext) -> torch.device:
    """The device of this process: ``cuda:LOCAL_RANK`` for ``auto`` (with CUDA) and
    ``cuda``, else the CPU.

    Raises:
        DistributedError: ``cuda:N`` or ``mps`` in a distributed run (each process takes
            the GPU of its local rank; MPS has no distributed backend), or fewer GPUs than
            processes on this machine.
        DeviceError: CUDA asked for but not available.
    """
    import torch

    from babyemo.devices import resolve_device

    spec = (spec or "auto").strip().lower()
    if spec not in ("auto", "cpu", "cuda"):
        raise DistributedError(f"--device {spec} cannot be used by {ctx.world_size} processes.",
                               "use --device cuda (each process takes the GPU of its "
                               "LOCAL_RANK), cpu or auto")
    if spec == "cpu" or (spec == "auto" and not torch.cuda.is_available()):
        return torch.device("cpu")
    resolve_device("cuda")  # DeviceError when there is no CUDA
    if ctx.local_rank >= torch.cuda.device_count():
        raise DistributedError(f"Local rank {ctx.local_rank} has no GPU: this machine has "
                               f"{torch.cuda.device_count()}.",
                               "start at most one process per GPU (--nproc-per-node)")
    return torch.device("cuda", ctx.local_rank)


def start(device: str = "auto", *, timeout_s: float = DEFAULT_TIMEOUT_S,
          environ: Mapping[str, str] | None = None) -> tuple[DistContext, torch.device]:
    """Join the run's process group when started by torchrun; pick this process's device.

    Outside torchrun (no ``WORLD_SIZE`` > 1) nothing is joined and the device is resolved
    as usual (:func:`babyemo.devices.resolve_device`). Inside, the backend is NCCL on CUDA
    and Gloo on the CPU, the group's collectives time out after ``timeout_s`` seconds,
    and processes other than rank 0 are made quiet (warnings only, no progress bars).
    Calling it again in the same process returns the group already joined.

    Args:
        device: ``auto|cpu|cuda|cuda:N|mps`` (distributed: ``auto|cpu|cuda``).
        timeout_s: Seconds a collective may wait for the others (``--dist-timeout``).
        environ: The environment (default ``os.environ``).

    Returns:
        The :class:`DistContext` (with its ``backend``) and the device of this process.

    Raises:
        DistributedError: A bad launch environment or a rendezvous that fails.
        DeviceError: The device is not available.
    """
    global _active, _owned
    import torch
    import torch.distributed as dist

    from babyemo.devices import resolve_device

    ctx = context_from_env(environ)
    if not ctx.enabled:
        return _SINGLE, resolve_device(device)
    dev = process_device(device, ctx)

    if dist.is_initialized():
        _active = DistContext(rank=dist.get_rank(), world_size=dist.get_world_size(),
                              local_rank=ctx.local_rank, local_world_size=ctx.local_world_size,
                              backend=str(dist.get_backend()))
        return _active, dev
    backend = "nccl" if dev.type == "cuda" else "gloo"
    if dev.type == "cuda":
        torch.cuda.set_device(dev)
    try:
        with errors_as_distributed("joining the process group"):
            dist.init_process_group(backend=backend, rank=ctx.rank, world_size=ctx.world_size,
                                    timeout=_dt.timedelta(seconds=timeout_s))
    except DistributedError as e:
        raise DistributedError(e.message, "check MASTER_ADDR/MASTER_PORT (or torchrun's "
                               "--rdzv-endpoint) and that every node can reach it") from e
    _active = DistContext(rank=ctx.rank, world_size=ctx.world_size, local_rank=ctx.local_rank,
                          local_world_size=ctx.local_world_size, backend=backend)
    _owned = True
    if not _active.is_main:
        from babyemo import progress

        progress.set_quiet(True)
        logging.getLogger().setLevel(logging.WARNING)
    return _active, dev


def current() -> DistContext:
    """The context :func:`start` joined (a single process when it joined nothing)."""
    return _active


def stop() -> None:
    """Leave the process group :func:`start` created (no-op otherwise)."""
    global _active, _owned
    if _owned:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _active, _owned = _SINGLE, False


@contextlib.contextmanager
def errors_as_distributed(doing: str) -> Iterator[None]:
    """Turn the errors of ``torch.distributed`` (a peer gone, a timeout, a failed
    rendezvous) raised inside the block into a :class:`DistributedError` naming this
    process's rank and ``doing``."""
    import torch.distributed as dist

    try:
        yield
    except DistributedError:
        raise
    except (dist.DistError, RuntimeError) as e:
        if not isinstance(e, dist.DistError) and not _looks_distributed(e):
            raise
        first = (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        raise DistributedError(f"Rank {_active.rank} of {_active.world_size} failed while "
                               f"{doing}: {first}") from e


def _looks_distributed(error: BaseException) -> bool:
    text = str(error).lower()
    return any(w in text for w in ("gloo", "nccl", "connection closed", "connection reset",
                                   "timed out", "broken pipe", "c10d", "process group"))


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """The element-wise sum of ``values`` over all processes (itself in one process).

    Args:
        values: Any shape; integer counts are summed exactly as ``int64``.

    Returns:
        A new tensor on ``values``' device with the summed values, ``float64`` for
        floating-point input, ``int64`` for integers.

    Raises:
        DistributedError: A peer is gone or the timeout passed.
    """
    import torch

    dtype = torch.float64 if values.is_floating_point() else torch.int64
    if not _active.enabled:
        return values.to(dtype)
    import torch.distributed as dist

    device = torch.device("cuda", torch.cuda.current_device()) if _active.backend == "nccl" \
        else torch.device("cpu")
    out = values.detach().to(device=device, dtype=dtype).clone()
    with errors_as_distributed("summing metrics over the processes"):
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
    return out.to(values.device)


def barrier(doing: str = "waiting for the other processes") -> None:
    """Wait until every process reaches this point (no-op in one process).

    Raises:
        DistributedError: A peer is gone or the timeout passed.
    """
    if not _active.enabled:
        return
    import torch
    import torch.distributed as dist

    with errors_as_distributed(doing):
        if _active.backend == "nccl":
            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


def broadcast_object(obj: Any, doing: str = "sharing a result of rank 0") -> Any:
    """Rank 0's ``obj`` on every process (picklable; ``obj`` itself in one process).

    Raises:
        DistributedError: A peer is gone or the timeout passed.
    """
    if not _active.enabled:
        return obj
    import torch.distributed as dist

    box = [obj if _active.is_main else None]
    with errors_as_distributed(doing):
        dist.broadcast_object_list(box, src=0)
    return box[0]


def all_gather_object(obj: Any, doing: str = "sharing results between the processes"
                      ) -> list[Any]:
    """Every process's ``obj`` (picklable), by rank; ``[obj]`` in one process.

    Raises:
        DistributedError: A peer is gone or the timeout passed.
    """
    if not _active.enabled:
        return [obj]
    import torch.distributed as dist

    box: list[Any] = [None] * _active.world_size
    with errors_as_distributed(doing):
        dist.all_gather_object(box, obj)
    return box


def lr_scale(mode: LRScaling | str, world_size: int) -> float:
    """The factor ``--lr`` is multiplied by with ``world_size`` processes
    (:class:`~babyemo.config.LRScaling`): ``world_size`` for ``linear``, 1 for ``none``."""
    return float(world_size) if LRScaling(mode) is LRScaling.linear else 1.0


def torchrun_command(nproc: int, args: list[str]) -> list[str]:
    """The command that runs ``babyemo ARGS`` in ``nproc`` processes on this machine:
    ``python -m torch.distributed.run --standalone --nproc-per-node N -m babyemo ARGS``
    (torchrun's single-node rendezvous on a free local port)."""
    import sys

    return [sys.executable, "-m", "torch.distributed.run", "--standalone",
            f"--nproc-per-node={nproc}", "-m", "babyemo", *args]


def launch(nproc: int, args: list[str], *, cores: int | None = None) -> int:
    """Run ``babyemo ARGS`` under torchrun in ``nproc`` processes on this machine
    (``babyemo train --nproc N``) and wait for it.

    Each process gets ``cores // nproc`` intra-op threads (``OMP_NUM_THREADS``, unless
    set; torchrun's own default is 1).

    Args:
        nproc: Processes (>= 2).
        args: babyemo's arguments, without ``--nproc``.
        cores: The machine's cores (default ``os.cpu_count()``).

    Returns:
        torchrun's exit code (0 when every process succeeded).

    Raises:
        DistributedError: Already inside a distributed run.
    """
    import subprocess

    if context_from_env().enabled:
        raise DistributedError("--nproc was given inside a distributed run (WORLD_SIZE is "
                               f"{os.environ.get('WORLD_SIZE')}).",
                               "drop --nproc when starting babyemo with torchrun")
    env = dict(os.environ)
    env.setdefault("OMP_NUM_THREADS", str(max(1, (cores or os.cpu_count() or 1) // nproc)))
    return subprocess.run(torchrun_command(nproc, args), env=env, check=False).returncode
