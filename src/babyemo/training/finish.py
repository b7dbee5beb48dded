"""After the last epoch: calibrate ``best.pt`` on the val split, register it by name."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import torch

from babyemo.checkpoint import load_checkpoint, write_calibration
from babyemo.config import TrainConfig
from babyemo.data.loading.dataset import ManifestDataset
from babyemo.inference import InferenceModel, calibrate_on_dataset
from babyemo.models import store
from babyemo.runtime import Runtime

log = logging.getLogger(__name__)


def calibrate_best(best_path: Path, val_ds: ManifestDataset | None, config: TrainConfig,
                   device: torch.device) -> None:
    """Fit temperature scaling on the val split with ``best.pt``'s weights, store it there.

    Without a val split the checkpoint stays uncalibrated (temperature 1); ``babyemo
    calibrate`` can fit it later on other held-out data.

    Args:
        best_path: The run's ``best.pt`` (rewritten atomically with its temperature).
        val_ds: The val images (evaluation transform), or ``None``.
        config: Gives ``precision``, ``batch_size`` and ``num_workers``.
        device: Where the val logits are computed.
    """
    if val_ds is None or not best_path.is_file():
        log.info("No 'val' split: best.pt is not calibrated (temperature 1).")
        return
    model = InferenceModel(load_checkpoint(best_path), Runtime(
        device=str(device), precision=config.precision, batch_size=config.batch_size,
        workers=config.num_workers))
    result = calibrate_on_dataset(model, val_ds, fitted_on="val")
    write_calibration(best_path, result.to_dict())


def register_best(name: str, best_path: Path, *, arch: str, class_names: list[str],
                  dataset: str, best: dict[str, Any]) -> None:
    """Register ``best.pt`` in the trained-model store under ``name``.

    Args:
        name: The model's name (``--name``, default the run folder's name).
        best_path: The run's ``best.pt``.
        arch: Its registry name.
        class_names: Its classes in logit order.
        dataset: Name of the dataset it was trained on.
        best: The best epoch (:attr:`~babyemo.training.resume.TrainState.best`).
    """
    store.register_trained(name, best_path, arch=arch, class_names=class_names,
                           dataset=dataset, best_epoch=best["epoch"],
                           val_macro_f1=best["metrics"].get("macro_f1"))
