"""``--resume``: what ``last.pt`` keeps of a run under way, and how a run continues from it.

``last.pt`` carries, beside the weights, a ``resume`` entry (:func:`resume_record`): the
optimizer, schedule and gradient-scaler states, the last finished epoch, the history, the
best epoch so far and the early-stopping counter; with ``--ema``, whose averaged weights
are ``last.pt``'s weights, also the raw training weights and the EMA's step count; with
``--aux-data``, the auxiliary head's weights (:mod:`babyemo.training.multitask`). The
teacher targets of ``--teacher`` are reused from the run's ``teacher.npz`` (see
:mod:`babyemo.training.distill`). :func:`resumed_config` decides the
configuration a resumed run continues with; :func:`restore_state` puts the states back.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from babyemo.checkpoint import cpu_state_dict
from babyemo.config import TrainConfig
from babyemo.errors import ConfigError

log = logging.getLogger(__name__)

RESUME_FREE = ("device", "precision", "num_workers", "cache", "compile", "name", "patience",
               "dist_timeout")
"""Options ``--resume`` takes as given: how the run continues, not what it learns."""
_RESUME_SKIP = ("resume", "out", "overwrite")
_PATHS = ("teacher", "unlabelled")
"""Options compared as paths (a relative path given with ``--resume`` is the same file);
``teacher`` may also be a model's name, which compares as the same relative path."""


def _fresh_best() -> dict[str, Any]:
    return {"epoch": 0, "macro_f1": -math.inf, "val_loss": math.inf, "metrics": {}}


@dataclass
class TrainState:
    """Where a run stands after its last finished epoch (what ``last.pt`` resumes from).

    Attributes:
        epoch: The last finished epoch (1-based; 0 before the first), the one ``last.pt``
            holds.
        history: One row per finished epoch (see :mod:`babyemo.training.history`).
        best: The epoch ``best.pt`` holds: ``epoch``, ``macro_f1`` (its score: val
            macro-F1, or the epoch number without validation), ``val_loss`` (the tie
            breaker: val loss, or train loss without validation) and ``metrics``.
        stale: Epochs since the best one (the early-stopping counter, see ``--patience``).
    """

    epoch: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best: dict[str, Any] = field(default_factory=_fresh_best)
    stale: int = 0


def _option(name: str) -> str:
    return "--" + {"num_workers": "workers", "train_splits": "train-on"}.get(
        name, name.replace("_", "-"))


def resumed_config(given: TrainConfig, saved_train: dict[str, Any], run_dir: Path
                   ) -> TrainConfig:
    """The configuration a resumed run continues with.

    The run's own configuration, plus the options given with ``--resume`` that make sense
    for a run under way: :data:`RESUME_FREE`, and more ``epochs`` than it was started with
    (the cosine schedule is stretched to the new end). Any other option given with a
    value that differs from both its default and the run's is refused, not silently
    ignored.

    Args:
        given: The configuration ``--resume`` was given.
        saved_train: The ``train`` entry of the run's ``last.pt``.
        run_dir: The run folder.

    Returns:
        The configuration to continue with (``resume=True``, ``out=run_dir``, ``data`` the
        manifest the run started on).

    Raises:
        ConfigError: An option that conflicts with the run (named, with both values).
    """
    saved = TrainConfig.from_dict(saved_train["config"])
    # the manifest the run started on (older runs recorded data=None: "last prepared")
    data = saved.data or saved_train.get("manifest")
    defaults = TrainConfig()
    changes: dict[str, Any] = {}
    conflicts = []
    for f in dataclasses.fields(TrainConfig):
        name = f.name
        value = getattr(given, name)
        if name in _RESUME_SKIP or value == getattr(defaults, name):
            continue
        if name in RESUME_FREE:
            changes[name] = value
        elif name == "data":
            if data and Path(value).resolve() != Path(data).resolve():
                conflicts.append(f"--data {value} (the run trained on {data})")
        elif name == "aux_data":  # a manifest file or its folder, as --data
            if saved.aux_data is None or (_manifest_file(value)
                                          != _manifest_file(saved.aux_data)):
                conflicts.append(f"--aux-data {value} (the run has {saved.aux_data!r})")
        elif name in _PATHS and getattr(saved, name) is not None and (
                Path(value).expanduser().resolve()
                == Path(getattr(saved, name)).expanduser().resolve()):
            continue
        elif name == "epochs" and value > saved.epochs:
            log.info("Extending the run from %d to %d epochs.", saved.epochs, value)
            changes[name] = value
        elif value != getattr(saved, name):
            conflicts.append(f"{_option(name)} {value!r} (the run has {getattr(saved, name)!r})")
    if conflicts:
        raise ConfigError(f"--resume continues {run_dir} as it was started; these options "
                          f"conflict with it: {'; '.join(conflicts)}.",
                          "drop them (only --epochs to extend, --device, --precision, "
                          "--workers, --cache, --compile, --patience and --name may "
                          "change), or start a new run with another --out")
    kept = {k: getattr(given, k) for k in ("device", "precision", "num_workers", "cache",
                                            "compile")}
    return TrainConfig.from_dict({**saved_train["config"], **kept, **changes, "resume": True,
                                  "out": str(run_dir), "data": data})


def _manifest_file(value: str) -> Path:
    """``value`` (a ``manifest.csv`` or its folder) as the manifest file's absolute path."""
    from babyemo.data.preparation.manifest import MANIFEST_FILE

    path = Path(value).expanduser().resolve()
    return path / MANIFEST_FILE if path.is_dir() else path


def restore_state(saved: dict[str, Any], *, model: nn.Module, optimizer: torch.optim.Optimizer,
                  scheduler: Any, scaler: torch.amp.GradScaler | None, epochs: int,
                  ema: Any = None, aux_head: nn.Module | None = None) -> TrainState:
    """Put the states of ``last.pt`` (read with
    :func:`~babyemo.checkpoint.read_checkpoint_dict`) back into a freshly set-up run.

    Args:
        saved: ``last.pt``'s dict: ``state_dict`` and the ``resume`` entry of
            :func:`resume_record`.
        model: The model (weights loaded in place).
        optimizer: The optimizer (state loaded in place).
        scheduler: The learning-rate schedule or ``None``; a cosine schedule is stretched
            to ``epochs`` (``--epochs`` may extend the run).
        scaler: The CUDA gradient scaler or ``None``.
        epochs: The run's number of epochs.
        ema: The run's ``AveragedModel`` (``--ema``) or ``None``: it gets ``last.pt``'s
            weights, and ``model`` the raw weights of the ``resume`` entry.
        aux_head: The auxiliary head (``--aux-data``) or ``None``: it gets the ``resume``
            entry's ``aux_head`` weights.

    Returns:
        The run's state after its last finished epoch.

    Raises:
        ConfigError: ``aux_head`` is given but ``last.pt`` has no auxiliary head.
    """
    r = saved["resume"]
    if ema is not None:
        model.load_state_dict(r["ema"]["model"])
        ema.module.load_state_dict(saved["state_dict"])
        ema.n_averaged.fill_(int(r["ema"]["n_averaged"]))
    else:
        model.load_state_dict(saved["state_dict"])
    if aux_head is not None:
        if r.get("aux_head") is None:
            raise ConfigError("The run to resume has no auxiliary head in its last.pt.",
                              "drop --aux-data, or start a new run with another --out")
        aux_head.load_state_dict(r["aux_head"])
    optimizer.load_state_dict(r["optimizer"])
    if scheduler is not None and r.get("scheduler") is not None:
        scheduler.load_state_dict(r["scheduler"])
        if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
            scheduler.T_max = epochs  # --epochs may extend the run
    if scaler is not None and r.get("scaler") is not None:
        scaler.load_state_dict(r["scaler"])
    return TrainState(epoch=int(r["epoch"]), history=list(r["history"]), best=dict(r["best"]),
                      stale=int(r["stale"]))


def resume_record(state: TrainState, epoch: int, *, optimizer: torch.optim.Optimizer,
                  scheduler: Any, scaler: torch.amp.GradScaler | None, ema: Any = None,
                  model: nn.Module | None = None, aux_head: nn.Module | None = None
                  ) -> dict[str, Any]:
    """The ``resume`` entry of ``last.pt`` after ``epoch`` (read by :func:`restore_state`).

    Args:
        state: The run's state, ``history``, ``best`` and ``stale`` already updated for
            ``epoch``.
        epoch: The epoch just finished.
        optimizer: The optimizer.
        scheduler: The learning-rate schedule or ``None``.
        scaler: The CUDA gradient scaler or ``None``.
        ema: The ``AveragedModel`` of ``--ema`` (its weights are the checkpoint's) or
            ``None``.
        model: The raw model, kept with ``ema``.
        aux_head: The auxiliary head of ``--aux-data`` or ``None``.

    Returns:
        ``optimizer``, ``scheduler``, ``scaler`` (state dicts or ``None``), ``epoch``,
        ``history``, ``best``, ``stale`` (see ``docs/checkpoint-format.md``); with ``ema``
        also ``ema``: ``{"model": the raw weights (CPU), "n_averaged": int}``; with
        ``aux_head`` also ``aux_head``: its state dict (CPU).
    """
    record = {"optimizer": optimizer.state_dict(),
              "scheduler": scheduler.state_dict() if scheduler is not None else None,
              "scaler": scaler.state_dict() if scaler is not None else None,
              "epoch": epoch, "history": state.history, "best": state.best,
              "stale": state.stale}
    if ema is not None:
        assert model is not None
        record["ema"] = {"model": cpu_state_dict(model), "n_averaged": int(ema.n_averaged)}
    if aux_head is not None:
        record["aux_head"] = cpu_state_dict(aux_head)
    return record


@contextlib.contextmanager
def interrupt_hint(run_dir: Path, state: TrainState) -> Iterator[None]:
    """On Ctrl-C, log what ``last.pt`` holds and how to continue, then re-raise.

    Every file of the run is written atomically, so ``last.pt`` is always a whole
    checkpoint of the last finished epoch (``state.epoch``, updated by the caller once
    ``last.pt`` is written); ``--resume`` repeats the interrupted epoch.
    """
    try:
        yield
    except KeyboardInterrupt:
        held = (f"{run_dir / 'last.pt'} holds epoch {state.epoch}" if state.epoch
                else f"no epoch finished in {run_dir}")
        log.warning("Interrupted: %s; continue with `babyemo train --resume --out %s`.", held,
                    run_dir)
        raise
