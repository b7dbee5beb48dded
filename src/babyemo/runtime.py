"""How a model runs: one frozen record shared by the API and the CLI (no torch import).

``predict``, ``evaluate``, ``calibrate`` and everything built on
:class:`babyemo.inference.InferenceModel` take one :class:`Runtime` instead of the same
eight keyword arguments each; the CLI builds it from one group of options whose defaults
are this record's (:mod:`babyemo.cli._common`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from babyemo.config import Backend, Precision
from babyemo.errors import ConfigError


@dataclass(frozen=True)
class Runtime:
    """Where and how a model computes its logits.

    Attributes:
        device: ``auto`` (CUDA if available, else MPS, else the CPU), ``cpu``, ``cuda``,
            ``cuda:N`` or ``mps``.
        precision: ``auto`` (bf16 autocast on CPUs with native bf16 and on GPUs that have
            it, else fp32), ``fp32``, ``bf16`` or ``fp16`` (see
            :func:`babyemo.devices.resolve_precision`).
        backend: ``torch`` (the checkpoint's model) or ``onnxruntime`` (its ONNX export).
        onnx: With ``onnxruntime``: the ``.onnx`` file (default: beside the checkpoint).
        batch_size: Images per forward pass.
        workers: DataLoader worker processes that read and decode images (``None``: see
            :func:`babyemo.devices.default_num_workers`).
        readers: Parallel readers on the CPU: threads that each read, decode and classify
            whole batches on one core (``None``: one per core for the torch engine on the
            CPU with no workers, else 1; see :func:`babyemo.devices.default_readers`).
        tta: Test-time augmentation: average each image's logits with its mirror image's
            (twice the compute).

    Raises:
        ConfigError: ``batch_size``, ``workers`` or ``readers`` out of range, or an
            unknown precision or backend.
    """

    device: str = "auto"
    precision: Precision = Precision.auto
    backend: Backend = Backend.torch
    onnx: str | None = None
    batch_size: int = 64
    workers: int | None = None
    readers: int | None = None
    tta: bool = False

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "precision", Precision(self.precision))
            object.__setattr__(self, "backend", Backend(self.backend))
        except ValueError as e:
            raise ConfigError(f"{e}.", "see `babyemo predict --help`") from None
        if self.onnx is not None:
            object.__setattr__(self, "onnx", str(self.onnx))
        checks = [("batch_size", self.batch_size, 1), ("workers", self.workers, 0),
                  ("readers", self.readers, 1)]
        for name, value, low in checks:
            if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                      or value < low):
                raise ConfigError(f"The runtime's '{name}' must be an int >= {low}. "
                                  f"Got {value!r}.")

    def replace(self, **changes: Any) -> Runtime:
        """A copy with ``changes`` applied (validated again)."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (JSON-safe)."""
        d = dataclasses.asdict(self)
        d["precision"], d["backend"] = self.precision.value, self.backend.value
        return d


PREDICT_BATCH_SIZE = 32
"""Default batch size of prediction (``babyemo predict``, :class:`babyemo.prediction.
Predictor`): smaller than :attr:`Runtime.batch_size`, for photos read at full size."""

__all__ = ["PREDICT_BATCH_SIZE", "Runtime"]
