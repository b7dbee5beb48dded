"""``train(TrainConfig) -> TrainResult``: set up (:mod:`~babyemo.training.setup`), resume
(:mod:`~babyemo.training.resume`), run the epochs, finish (:mod:`~babyemo.training.finish`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader, DistributedSampler, Subset

from babyemo import distributed
from babyemo.checkpoint import save_checkpoint
from babyemo.config import EpochSelection, SchedulerName, TrainConfig
from babyemo.metrics import classification_metrics, confusion_counts, labels_from_confusion
from babyemo.training.finish import calibrate_best, register_best
from babyemo.training.history import summary_line, write_history
from babyemo.training.resume import (
    TrainState,
    interrupt_hint,
    restore_state,
    resume_record,
)
from babyemo.training.runner import make_loader
from babyemo.training.setup import Run, prepare_run, write_run_config

log = logging.getLogger(__name__)


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        run_dir: Folder of the run.
        best_checkpoint: ``best.pt`` (best validation macro-F1).
        last_checkpoint: ``last.pt`` (latest epoch, with resume state).
        best_epoch: Epoch (1-based) of ``best.pt``.
        best_metrics: Validation metrics of the best epoch.
        history: One dict per epoch (keys of :data:`~babyemo.training.HISTORY_FIELDS` plus
            per-class accuracy).
        seconds: Wall time of this call in seconds.
        name: Name under which the model was registered.
        stopped_early: Whether early stopping (``patience``) ended the run.
        manifest: The manifest trained on.
        manifest_source: Why that manifest: given, or the home's last prepared (see
            :func:`babyemo.data.preparation.lookup.manifest_for_training`).
    """

    run_dir: Path
    best_checkpoint: Path
    last_checkpoint: Path
    best_epoch: int
    best_metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    seconds: float = 0.0
    name: str = ""
    stopped_early: bool = False
    manifest: Path | None = None
    manifest_source: str = ""


def train(config: TrainConfig, *, register: bool = True) -> TrainResult:
    """Train ``config.arch`` on the manifest ``config.data`` (default: the home's last
    prepared manifest, see :func:`babyemo.data.preparation.lookup.manifest_for_training`).

    Runs unchanged under ``torchrun`` (one process per device, see
    :mod:`babyemo.distributed`): ``DistributedDataParallel``, each process training on its
    share of each epoch and validating on its share of the val split, metrics from the
    summed confusion counts, and only rank 0 writing files, logs and progress bars.

    Writes into the run folder (``config.out`` or ``runs/<time>-<arch>``): ``config.json``,
    ``metrics.csv``, ``curves.png``, ``best.pt``, ``last.pt``; registers ``best.pt`` in
    the trained-model registry under ``config.name`` (default: the run folder's name).

    Args:
        config: The training configuration (see :class:`~babyemo.config.TrainConfig`).
        register: Register ``best.pt`` in the model store (``False``: the folds of a
            cross-validation, see :func:`babyemo.evaluation.crossval.train_folds`; the
            result's ``name`` is then empty).

    Returns:
        The :class:`TrainResult`.

    Raises:
        DataError: No manifest, an empty train split, or labels unusable for training.
        ConfigError: A bad option, a non-empty run folder, a run folder that is a file or
            lies inside the dataset's image root (see
            :func:`~babyemo.data.loading.folders.check_outputs`), or a diverging loss.
        DeviceError: The device or precision is unavailable.
        RegistryError: Unknown arch, ``config.name`` names another model, or ``config.init``
            is neither a file nor a trained model's name.
        CheckpointError: ``--init`` or ``--resume`` file unusable.
        DistributedError: Under ``torchrun``: a bad launch environment, or another
            process failed or stopped answering (``config.dist_timeout``).
    """
    start = time.perf_counter()
    try:
        with distributed.errors_as_distributed("training"):
            return _train(config, register, start)
    finally:
        distributed.stop()  # leave the process group start() joined (torchrun)


def _train(config: TrainConfig, register: bool, start: float) -> TrainResult:
    """:func:`train`'s steps; in a distributed run only rank 0 writes files."""
    run = prepare_run(config)
    config = run.config
    state = TrainState()
    if run.saved is not None:
        state = restore_state(run.saved, model=run.model, optimizer=run.optimizer,
                              scheduler=run.scheduler, scaler=run.runner.scaler,
                              epochs=config.epochs, ema=run.ema,
                              aux_head=run.aux.head if run.aux is not None else None)
        log.info("Resuming %s at epoch %d/%d", run.run_dir, state.epoch + 1, config.epochs)
    main = run.dist.is_main
    if main:
        write_run_config(run)

    best_path = run.run_dir / "best.pt"
    with interrupt_hint(run.run_dir, state):
        stopped_early = _fit(run, state)
        if main:  # the other processes wait for rank 0's files
            calibrate_best(best_path, run.val_ds, config, run.device)
            if register:
                register_best(run.name, best_path, arch=config.arch,
                              class_names=run.class_names, dataset=run.manifest.name,
                              best=state.best)
        distributed.barrier("waiting for rank 0 to calibrate and register best.pt")
    return TrainResult(run_dir=run.run_dir, best_checkpoint=best_path,
                       last_checkpoint=run.run_dir / "last.pt", best_epoch=state.best["epoch"],
                       best_metrics=state.best["metrics"], history=state.history,
                       seconds=time.perf_counter() - start, name=run.name if register else "",
                       stopped_early=stopped_early, manifest=run.manifest.path,
                       manifest_source=run.manifest_source)


def _fit(run: Run, state: TrainState) -> bool:
    """Run the epochs after ``state.epoch`` up to ``config.epochs``, updating ``state``.

    After every epoch: ``best.pt`` when the epoch is the best so far (highest val macro-F1,
    ties to the lower val loss; without validation or with ``select="last"``, every
    epoch), ``last.pt`` with the
    resume state, ``metrics.csv`` and ``curves.png``, and the summary line logged. With
    ``--ema`` the EMA weights are validated, chosen and saved.

    Returns:
        Whether early stopping (``config.patience``) ended the run.
    """
    config = run.config
    val_loader = None
    if run.val_ds is not None:  # each process validates its share; the counts are summed
        val = (Subset(run.val_ds, range(run.dist.rank, len(run.val_ds), run.dist.world_size))
               if run.dist.enabled else run.val_ds)
        val_loader = make_loader(val, config, run.device, shuffle=False)
    for epoch in range(state.epoch + 1, config.epochs + 1):
        row, epoch_metrics = _epoch(run, epoch, val_loader)
        state.history.append(row)

        # without val, or with --select last: the last epoch is best
        score = (epoch if config.select is EpochSelection.last
                 else row.get("val_macro_f1", epoch))
        loss_key = row.get("val_loss", row["train_loss"])
        best = state.best
        improved = score > best["macro_f1"] or (score == best["macro_f1"]
                                                and loss_key < best["val_loss"])
        if run.scheduler is not None:
            if config.scheduler is SchedulerName.plateau:
                run.scheduler.step(row.get("val_macro_f1", row["train_acc"]))
            else:
                run.scheduler.step()
        train_info = {**run.provenance, "epoch": epoch, "history_len": len(state.history)}
        metrics = {"val": epoch_metrics, "epoch": epoch}
        if improved:
            state.best = {"epoch": epoch, "macro_f1": score, "val_loss": loss_key,
                          "metrics": epoch_metrics}
            state.stale = 0
            if run.dist.is_main:
                _save(run, run.run_dir / "best.pt", train_info, metrics)
        else:
            state.stale += 1
        if run.dist.is_main:
            resume = resume_record(state, epoch, optimizer=run.optimizer,
                                   scheduler=run.scheduler, scaler=run.runner.scaler,
                                   ema=run.ema, model=run.model,
                                   aux_head=run.aux.head if run.aux is not None else None)
            _save(run, run.run_dir / "last.pt", train_info, metrics, resume=resume)
        state.epoch = epoch
        if run.dist.is_main:
            write_history(run.run_dir, state.history, run.class_names)
            log.info(summary_line(row, config.epochs, run.class_names))
        if config.patience is not None and state.stale >= config.patience:
            log.info("Early stopping: no val macro-F1 gain for %d epochs.", state.stale)
            return True
    return False


def _epoch(run: Run, epoch: int, val_loader: DataLoader | None
           ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train one epoch (torch reseeded with ``seed + epoch``), then validate.

    In a distributed run each process reads its share of the images
    (``DistributedSampler`` seeded with ``seed``, ``set_epoch(epoch)``; the augmentations
    of rank ``r`` reseeded with ``seed + epoch + 7919 r``), and the val metrics are those
    of the confusion counts summed over the processes.

    Returns:
        The epoch's history row and its val metrics (empty without validation).
    """
    config, dist = run.config, run.dist
    t0 = time.perf_counter()
    torch.manual_seed(config.seed + epoch + 7919 * dist.rank)
    sampler = None
    if dist.enabled:
        sampler = DistributedSampler(run.fit_ds, num_replicas=dist.world_size, rank=dist.rank,
                                     shuffle=True, seed=config.seed, drop_last=True)
        sampler.set_epoch(epoch)
    loader = make_loader(run.fit_ds, config, run.device, shuffle=True,
                         epoch_seed=config.seed + epoch, sampler=sampler)
    row: dict[str, Any] = {"epoch": epoch, "lr": run.optimizer.param_groups[0]["lr"]}
    aux_batches = (run.aux.batches(config, run.device, epoch) if run.aux is not None
                   else None)  # reshuffled from seed + epoch: --resume continues exactly
    stats = run.runner.train_epoch(loader, run.optimizer, f"epoch {epoch}/{config.epochs}",
                                   aux_batches=aux_batches)
    n_seen = stats.pop("n")
    row.update(stats)
    row["images_per_s"] = n_seen / max(time.perf_counter() - t0, 1e-9)
    epoch_metrics: dict[str, Any] = {}
    if val_loader is not None:
        val_loss, epoch_metrics = _validate(run, val_loader)
        row.update(val_loss=val_loss, val_acc=epoch_metrics["accuracy"],
                   val_balanced_acc=epoch_metrics["balanced_accuracy"],
                   val_macro_f1=epoch_metrics["macro_f1"])
        for c in run.class_names:
            row[f"val_acc_{c}"] = epoch_metrics["per_class"][c]["recall"]
    row["seconds"] = time.perf_counter() - t0
    return row, epoch_metrics


def _validate(run: Run, val_loader: DataLoader) -> tuple[float, dict[str, Any]]:
    """The val loss (mean per image) and metrics of all processes' val images: each
    process's confusion counts and loss sum are summed over the processes, then scored
    (:func:`~babyemo.metrics.labels_from_confusion`), never averaged per process."""
    loss, y_true, y_pred = run.runner.evaluate(val_loader)
    k = len(run.class_names)
    cm = distributed.all_reduce_sum(torch.from_numpy(confusion_counts(y_true, y_pred, k)))
    loss_sum, n = distributed.all_reduce_sum(
        torch.tensor([loss * len(y_true), len(y_true)], dtype=torch.float64)).tolist()
    metrics = classification_metrics(*labels_from_confusion(cm.numpy()), run.class_names)
    return loss_sum / max(n, 1), metrics


def _save(run: Run, path: Path, train_info: dict[str, Any], metrics: dict[str, Any],
          resume: dict[str, Any] | None = None) -> None:
    """Write a checkpoint of the run's model, its EMA weights with ``--ema`` (``resume``:
    only ``last.pt``; it keeps the raw weights then, see
    :func:`~babyemo.training.resume.resume_record`)."""
    save_checkpoint(path, model=run.saved_model, arch=run.config.arch,
                    arch_kwargs=run.arch_kwargs,
                    class_names=run.class_names, input_spec=run.spec, train=train_info,
                    metrics=metrics, faces=run.faces, resume=resume)
