"""babyemo: recognise emotions in infants' facial expressions.

The package root stays light: importing :mod:`babyemo` or :mod:`babyemo.cli` does not
import torch. Heavy objects are re-exported lazily on first attribute access.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "BabyEmoError": "babyemo.errors",
    "InputSpec": "babyemo.config",
    "TrainConfig": "babyemo.config",
    "list_archs": "babyemo.models.registry",
    "get_arch": "babyemo.models.registry",
    "create_model": "babyemo.models.registry",
    "register_arch": "babyemo.models.registry",
    "load_checkpoint": "babyemo.checkpoint",
    "train": "babyemo.training",
    "evaluate": "babyemo.evaluation",
    "Predictor": "babyemo.prediction",
    "prepare": "babyemo.data.preparation.prepare",
    "inspect_dataset": "babyemo.data.inspection.report",
}

__all__ = ["__version__", *_LAZY]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'babyemo' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
