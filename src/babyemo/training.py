"""Train a registered architecture on a prepared dataset: ``train(TrainConfig) -> TrainResult``.

One epoch = one pass over the ``train`` split with augmentation, then an evaluation of the
``val`` split. Every epoch writes ``metrics.csv``, ``curves.png`` and ``last.pt`` (with the
optimizer state for ``--resume``); ``best.pt`` is the epoch with the best validation
macro-F1. At the end, temperature scaling is fitted on the ``val`` split with ``best.pt``'s
weights and stored in ``best.pt`` (:mod:`babyemo.calibration`). The ``test`` split is never
read here.

Determinism: epoch ``e`` reseeds torch with ``seed + e`` and shuffles with a generator of
the same seed, so a run resumed from ``last.pt`` on the CPU continues exactly as an
uninterrupted run would.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as _dt
import inspect
import json
import logging
import math
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from babyemo import reports
from babyemo.checkpoint import (
    Checkpoint,
    load_checkpoint,
    read_checkpoint_dict,
    save_checkpoint,
)
from babyemo.config import CacheMode, InputSpec, OptimizerName, SchedulerName, TrainConfig
from babyemo.data.dataset import ManifestDataset
from babyemo.data.folders import check_outputs
from babyemo.data.image_cache import make_cache
from babyemo.data.lookup import manifest_for_training
from babyemo.data.manifest import Manifest, read_manifest, warn_training_classes
from babyemo.devices import (
    default_num_workers,
    resolve_device,
    resolve_precision,
    set_cpu_threads,
)
from babyemo.errors import ConfigError, DataError
from babyemo.io import atomic_write_text, remove_stale_temps
from babyemo.metrics import classification_metrics
from babyemo.models import store
from babyemo.models.registry import create_model, get_arch
from babyemo.progress import progress_bar
from babyemo.transforms import eval_transform, normalize, train_transform

log = logging.getLogger(__name__)

HISTORY_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc",
                  "val_balanced_acc", "val_macro_f1", "lr", "seconds", "images_per_s"]


@dataclass
class TrainResult:
    """What a training run produced.

    Attributes:
        run_dir: Folder of the run.
        best_checkpoint: ``best.pt`` (best validation macro-F1).
        last_checkpoint: ``last.pt`` (latest epoch, with resume state).
        best_epoch: Epoch (1-based) of ``best.pt``.
        best_metrics: Validation metrics of the best epoch.
        history: One dict per epoch (keys of :data:`HISTORY_FIELDS` plus per-class accuracy).
        seconds: Wall time of this call in seconds.
        name: Name under which the model was registered.
        stopped_early: Whether early stopping ended the run.
        manifest: The manifest trained on.
        manifest_source: Why that manifest: given, or the home's last prepared (see
            :func:`babyemo.data.lookup.manifest_for_training`).
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


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


RUN_FILES = ("config.json", "metrics.csv", "curves.png", "best.pt", "last.pt")
"""The files :func:`train` writes into its run folder."""


def _run_dir(config: TrainConfig) -> Path:
    """The run folder, checked but not created (see :func:`train`)."""
    if config.out:
        run_dir = Path(config.out)
    else:
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path("runs") / f"{stamp}-{config.arch}"
    check_outputs(folders={"run folder": run_dir}, folder_files={"run folder": RUN_FILES})
    if config.resume:
        if not (run_dir / "last.pt").is_file():
            raise ConfigError(f"Cannot resume: {run_dir / 'last.pt'} does not exist.",
                              "pass --out with the folder of the run to resume")
        return run_dir
    if run_dir.exists() and any(run_dir.iterdir()) and not config.overwrite:
        raise ConfigError(f"The run folder {run_dir} is not empty.",
                          "pass --overwrite, --resume, or another --out")
    return run_dir


def _arch_kwargs(config: TrainConfig, size: int) -> dict[str, Any]:
    kwargs = dict(config.arch_kwargs)
    params = inspect.signature(get_arch(config.arch).builder).parameters
    if "input_size" in params:
        kwargs.setdefault("input_size", size)
    return kwargs


def _init_from(model: nn.Module, ckpt: Checkpoint, class_names: list[str]) -> dict[str, Any]:
    """Load the weights of another babyemo checkpoint (already read, e.g. by
    :func:`_resolve_init`) into ``model`` (fine-tuning).

    Every tensor whose name and shape match is loaded. The classifier head is loaded only
    for the classes both models share, matched by name (e.g. a FER-2013 model's ``angry``
    and ``happy`` rows initialise an infant model's); the other rows keep their fresh
    initialisation.

    Returns:
        Provenance of the initialisation (stored in the checkpoint's ``train["init"]``):
        the file and its ``sha256``, its registered ``name`` (``--init auto`` or a model
        name: e.g. ``babyemo-fer2013``; a file registered under a name, or a copy of a
        packaged model's file, gets that name; otherwise ``None``), its arch, dataset,
        training images, epoch, input size, and what was loaded. The name and hash let a
        model card name the donor on machines where its path means nothing.
    """
    from babyemo.io import sha256_file

    sha256 = sha256_file(ckpt.path)
    name = store.registered_name(ckpt.path) or store.packaged_name_of(sha256)
    own = model.state_dict()
    head = _head_keys(model)
    loadable = {k: v for k, v in ckpt.state_dict.items()
                if k in own and k not in head and own[k].shape == v.shape}
    shared = [c for c in class_names if c in ckpt.class_names]
    for k in head:
        if k in ckpt.state_dict and own[k].shape[1:] == ckpt.state_dict[k].shape[1:]:
            merged = own[k].clone()
            for c in shared:
                merged[class_names.index(c)] = ckpt.state_dict[k][ckpt.class_names.index(c)]
            loadable[k] = merged
    model.load_state_dict(loadable, strict=False)
    log.info("Initialised from %s: %d of %d tensors loaded; head rows copied for %d of %d "
             "classes (%s)", f"{name} ({ckpt.path})" if name else ckpt.path, len(loadable),
             len(own), len(shared), len(class_names), ", ".join(shared) or "none")
    return {"checkpoint": str(ckpt.path.resolve()), "name": name, "sha256": sha256,
            "arch": ckpt.arch,
            "dataset": ckpt.train.get("dataset"), "n_train": ckpt.train.get("n_train"),
            "epoch": ckpt.train.get("epoch"), "input_size": ckpt.input_spec.size,
            "val_macro_f1": (ckpt.metrics.get("val") or {}).get("macro_f1"),
            "tensors_loaded": len(loadable), "tensors": len(own), "head_classes": shared}


def _resolve_init(config: TrainConfig, spec: InputSpec) -> Checkpoint | None:
    """The checkpoint ``config.init`` names, read once, or ``None`` for no initialisation.

    ``"auto"`` (the default recipe) is the packaged adult-face model
    (:data:`babyemo.models.store.PACKAGED_PRETRAINED`, custom_resnet pretrained on
    FER-2013; see ``docs/recipes.md``) when it is installed, has the same arch and input
    channels and ``--pretrained`` is off; otherwise no initialisation. ``"none"`` or
    ``None``: none. Anything else: a file or a trained model's name.

    Raises:
        RegistryError: Neither a file nor a trained model's name.
        CheckpointError: The checkpoint cannot be read.
    """
    if config.init in (None, "", "none"):
        return None
    if config.init != "auto":
        return load_checkpoint(store.checkpoint_or_model(config.init))
    packaged = store.packaged_models().get(store.PACKAGED_PRETRAINED)
    if config.pretrained or packaged is None:
        return None
    ckpt = load_checkpoint(packaged["checkpoint"])
    if ckpt.arch != config.arch or ckpt.input_spec.channels != spec.channels:
        log.info("--init auto: no pretrained %s model packaged; training from scratch.",
                 config.arch)
        return None
    return ckpt


def _head_keys(model: nn.Module) -> set[str]:
    """State-dict keys of the last Linear layer (the classifier head)."""
    last = None
    for name, module in model.named_modules():
        if isinstance(module, nn.Linear):
            last = name
    return {f"{last}.weight", f"{last}.bias"} if last is not None else set()


def _face_settings(config: TrainConfig, manifest: Manifest) -> dict[str, Any] | None:
    """How to crop faces (stored in checkpoints), or ``None`` for whole images.

    Raises:
        DataError: Faces were asked for but the manifest has no face boxes (or boxes of
            another detector).
    """
    if config.faces == "none":
        return None
    if not manifest.has_faces:
        if config.faces == "auto":
            return None
        raise DataError(f"--faces {config.faces} needs face boxes, and {manifest.path} has none.",
                        f"prepare it with `babyemo data prepare --faces {config.faces}`")
    detector = (manifest.info.get("faces") or {}).get("detector", "unknown")
    if config.faces not in ("auto", detector):
        raise DataError(f"{manifest.path} has face boxes from '{detector}', not "
                        f"'{config.faces}'.", f"use --faces {detector} or prepare again")
    return {"detector": detector, "margin": config.face_margin, "align": config.face_align}


def resolve_cache_mode(cache: CacheMode | str, workers: int) -> str:
    """The concrete cache mode: ``auto`` is ``ram`` with 0 workers, else ``disk``."""
    cache = CacheMode(cache)
    if cache is CacheMode.auto:
        return "ram" if workers == 0 else "disk"
    return cache.value


def _compiled(model: nn.Module) -> nn.Module:
    """``torch.compile(model)`` for training and validation passes (``--compile``).

    The compiled wrapper shares its parameters with ``model``, so checkpoints keep saving
    ``model``'s own state dict (no ``_orig_mod.`` prefixes). The first batches are slow
    while it compiles (12-60 s measured on a 2-core CPU).
    """
    return torch.compile(model)


def _optimizer(config: TrainConfig, model: nn.Module) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for p in model.parameters():
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer is OptimizerName.sgd:
        return torch.optim.SGD(groups, lr=config.lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=config.lr)


def _scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> Any:
    if config.scheduler is SchedulerName.cosine:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.scheduler is SchedulerName.plateau:
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5,
                                                          patience=3)
    return None


def _loader(dataset: ManifestDataset, config: TrainConfig, device: torch.device, *,
            shuffle: bool, epoch_seed: int = 0) -> DataLoader:
    workers = config.num_workers if config.num_workers is not None else default_num_workers(device)
    generator = torch.Generator().manual_seed(epoch_seed) if shuffle else None
    return DataLoader(dataset, batch_size=config.batch_size, shuffle=shuffle,
                      num_workers=workers, generator=generator,
                      drop_last=shuffle and len(dataset) > config.batch_size,
                      pin_memory=device.type == "cuda", persistent_workers=False)


class _Runner:
    """Runs training and evaluation passes on one device and precision."""

    def __init__(self, model: nn.Module, device: torch.device, plan: Any,
                 criterion: nn.Module, spec: Any) -> None:
        self.model, self.device, self.plan, self.criterion = model, device, plan, criterion
        self.spec = spec
        self.channels_last = device.type in ("cpu", "cuda")
        self.scaler = torch.amp.GradScaler("cuda") if plan.grad_scaler else None

    def _to_device(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        nb = self.device.type == "cuda"
        x = normalize(x.to(self.device, non_blocking=nb), self.spec)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, y.to(self.device, non_blocking=nb)

    def train_epoch(self, loader: DataLoader, optimizer: torch.optim.Optimizer,
                    description: str) -> dict[str, float]:
        self.model.train()
        total_loss, correct, n = 0.0, 0, 0
        with progress_bar(description, total=len(loader), unit="batch") as bar:
            for x, y in loader:
                x, y = self._to_device(x, y)
                optimizer.zero_grad(set_to_none=True)
                with self.plan.autocast(self.device):
                    logits = self.model(x)
                    loss = self.criterion(logits.float(), y)
                if not torch.isfinite(loss):
                    raise ConfigError(f"The training loss became {loss.item()}.",
                                      "lower --lr or use --precision fp32")
                if self.scaler is not None:
                    self.scaler.scale(loss).backward()
                    self.scaler.step(optimizer)
                    self.scaler.update()
                else:
                    loss.backward()
                    optimizer.step()
                total_loss += loss.item() * len(y)
                correct += (logits.argmax(1) == y).sum().item()
                n += len(y)
                bar.advance()
        return {"train_loss": total_loss / max(n, 1), "train_acc": correct / max(n, 1), "n": n}

    @torch.inference_mode()
    def evaluate(self, loader: DataLoader) -> tuple[float, np.ndarray, np.ndarray]:
        """Mean loss, true labels ``(N,) int64`` and predicted labels ``(N,) int64``."""
        self.model.eval()
        total_loss, trues, preds = 0.0, [], []
        for x, y in loader:
            x, y = self._to_device(x, y)
            with self.plan.autocast(self.device):
                logits = self.model(x).float()
            total_loss += self.criterion(logits, y).item() * len(y)
            trues.append(y.cpu())
            preds.append(logits.argmax(1).cpu())
        y_true = torch.cat(trues).numpy()
        return total_loss / max(len(y_true), 1), y_true, torch.cat(preds).numpy()


def _write_history(run_dir: Path, history: list[dict[str, Any]], class_names: list[str]) -> None:
    header = HISTORY_FIELDS + [f"val_acc_{c}" for c in class_names]
    reports.write_csv_rows(run_dir / "metrics.csv", header,
                           [[row.get(k, "") for k in header] for row in history])
    # the epoch best.pt holds, chosen as train() does: highest val macro-F1, ties to the
    # lower val loss; without validation, the last epoch
    best_epoch, best_key = None, (-math.inf, -math.inf)
    for row in history:
        key = (row.get("val_macro_f1", row["epoch"]),
               -row.get("val_loss", row.get("train_loss", math.inf)))
        if key > best_key:
            best_epoch, best_key = row["epoch"], key
    reports.plot_curves(history, run_dir / "curves.png", best_epoch=best_epoch)


def _summary_line(row: dict[str, Any], epochs: int, class_names: list[str]) -> str:
    per_class = ", ".join(f"{c} {row.get(f'val_acc_{c}', float('nan')):.2f}"
                          for c in class_names)
    val = (f"val loss {row['val_loss']:.3f} acc {row['val_acc']:.3f} "
           f"macro-F1 {row['val_macro_f1']:.3f} (val recall per class: {per_class}) "
           if "val_loss" in row else "")
    return (f"epoch {row['epoch']}/{epochs} train loss {row['train_loss']:.3f} "
            f"acc {row['train_acc']:.3f} {val}lr {row['lr']:.2e} "
            f"{row['seconds']:.1f}s ({row['images_per_s']:.0f} img/s)")


def _calibrate_best(best_path: Path, val_ds: ManifestDataset | None, config: TrainConfig,
                    device: torch.device) -> None:
    """Fit temperature scaling on the val split with ``best.pt``'s weights, store it there.

    Without a val split the checkpoint stays uncalibrated (temperature 1); ``babyemo
    calibrate`` can fit it later on other held-out data.
    """
    if val_ds is None or not best_path.is_file():
        log.info("No 'val' split: best.pt is not calibrated (temperature 1).")
        return
    from babyemo.calibration import calibrate_on_dataset

    calibrate_on_dataset(best_path, val_ds, fitted_on="val", device=str(device),
                         precision=config.precision, batch_size=config.batch_size,
                         num_workers=config.num_workers)


@contextlib.contextmanager
def _interrupt_hint(run_dir: Path, finished: list[int]) -> Iterator[None]:
    """On Ctrl-C, log what ``last.pt`` holds and how to continue, then re-raise.

    Every file of the run is written atomically, so ``last.pt`` is always a whole
    checkpoint of the last finished epoch (``finished[0]``, updated by the caller);
    ``--resume`` repeats the interrupted epoch.
    """
    try:
        yield
    except KeyboardInterrupt:
        held = (f"{run_dir / 'last.pt'} holds epoch {finished[0]}" if finished[0]
                else f"no epoch finished in {run_dir}")
        log.warning("Interrupted: %s; continue with `babyemo train --resume --out %s`.", held,
                    run_dir)
        raise


RESUME_FREE = ("device", "precision", "num_workers", "cache", "compile", "name",
               "early_stopping")
"""Options ``--resume`` takes as given: how the run continues, not what it learns."""
_RESUME_SKIP = ("resume", "out", "overwrite")


def _option(name: str) -> str:
    return "--" + {"num_workers": "workers", "train_splits": "train-on"}.get(
        name, name.replace("_", "-"))


def _resumed_config(given: TrainConfig, saved_train: dict[str, Any], run_dir: Path
                    ) -> TrainConfig:
    """The configuration a resumed run continues with.

    The run's own configuration, plus the options given with ``--resume`` that make sense
    for a run under way: :data:`RESUME_FREE`, and more ``epochs`` than it was started with
    (the cosine schedule is stretched to the new end). Any other option given with a
    value that differs from both its default and the run's is refused, not silently
    ignored.

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
        elif name == "epochs" and value > saved.epochs:
            log.info("Extending the run from %d to %d epochs.", saved.epochs, value)
            changes[name] = value
        elif value != getattr(saved, name):
            conflicts.append(f"{_option(name)} {value!r} (the run has {getattr(saved, name)!r})")
    if conflicts:
        raise ConfigError(f"--resume continues {run_dir} as it was started; these options "
                          f"conflict with it: {'; '.join(conflicts)}.",
                          "drop them (only --epochs to extend, --device, --precision, "
                          "--workers, --cache, --compile, --early-stopping and --name may "
                          "change), or start a new run with another --out")
    kept = {k: getattr(given, k) for k in ("device", "precision", "num_workers", "cache",
                                            "compile")}
    return TrainConfig.from_dict({**saved_train["config"], **kept, **changes, "resume": True,
                                  "out": str(run_dir), "data": data})


def train(config: TrainConfig) -> TrainResult:
    """Train ``config.arch`` on the manifest ``config.data`` (default: the home's last
    prepared manifest, see :func:`babyemo.data.lookup.manifest_for_training`).

    Writes into the run folder (``config.out`` or ``runs/<time>-<arch>``): ``config.json``,
    ``metrics.csv``, ``curves.png``, ``best.pt``, ``last.pt``; registers ``best.pt`` in
    the trained-model registry under ``config.name`` (default: the run folder's name).

    Args:
        config: The training configuration (see :class:`~babyemo.config.TrainConfig`).

    Returns:
        The :class:`TrainResult`.

    Raises:
        DataError: No manifest, an empty train split, or labels unusable for training.
        ConfigError: A bad option, a non-empty run folder, a run folder that is a file or
            lies inside the dataset's image root (see
            :func:`~babyemo.data.folders.check_outputs`), or a diverging loss.
        DeviceError: The device or precision is unavailable.
        RegistryError: Unknown arch, ``config.name`` names another model, or ``config.init``
            is neither a file nor a trained model's name.
        CheckpointError: ``--init`` or ``--resume`` file unusable.
    """
    start = time.perf_counter()
    info = get_arch(config.arch)
    device = resolve_device(config.device)
    plan = resolve_precision(config.precision, device)
    run_dir = _run_dir(config)
    resume_state: dict[str, Any] | None = None
    if config.resume:
        saved = read_checkpoint_dict(run_dir / "last.pt")
        config = _resumed_config(config, saved["train"], run_dir)
        resume_state = saved
        info = get_arch(config.arch)
        for stale_file in remove_stale_temps(run_dir):  # left by a killed (SIGKILL) run
            log.info("Removed %s, a partial file of the interrupted run", stale_file.name)
    name = config.name or run_dir.resolve().name
    store.check_name_free(name, run_dir / "best.pt")
    choice = manifest_for_training(config.data)
    manifest: Manifest = read_manifest(choice.path)
    log.info("Manifest: %s (%s)", manifest.path, choice.source)
    warn_training_classes(manifest, config.train_splits)  # logged: a class never trained on
    check_outputs(folders={"run folder": run_dir}, scanned=[manifest.root],
                  folder_files={"run folder": () if config.resume else RUN_FILES},
                  inputs=[manifest.path, None if config.resume else config.init])
    # record the manifest itself, never "the last prepared": --resume and evaluation must
    # find this one even after another process prepares something else
    config = replace(config, data=str(manifest.path.resolve()))
    class_names = list(manifest.class_names)
    if len(class_names) < 2:
        raise DataError(f"The manifest {manifest.path} has {len(class_names)} class(es).",
                        "a classifier needs at least two classes")
    spec = info.default_input.with_size(config.image_size)
    arch_kwargs = _arch_kwargs(config, spec.size)
    _seed_all(config.seed)

    model = create_model(config.arch, num_classes=len(class_names), pretrained=config.pretrained,
                         **arch_kwargs)
    init_info = None
    init_ckpt = _resolve_init(config, spec) if resume_state is None else None
    if init_ckpt is not None:
        init_info = _init_from(model, init_ckpt, class_names)
    elif resume_state is not None:
        init_info = resume_state.get("train", {}).get("init")
    run_dir.mkdir(parents=True, exist_ok=True)
    model = model.to(device)
    if device.type in ("cpu", "cuda"):
        model = model.to(memory_format=torch.channels_last)

    workers = config.num_workers if config.num_workers is not None else default_num_workers(device)
    faces = _face_settings(config, manifest)
    crop = None
    if faces is not None:
        from babyemo.faces import CropSpec

        crop = CropSpec(margin=faces["margin"], align=faces["align"])
    cache_mode = resolve_cache_mode(config.cache, workers)
    set_cpu_threads(device, workers)
    train_ds = ManifestDataset(manifest, config.train_splits, class_names, spec,
                               train_transform(spec, config.augment),
                               cache=make_cache(cache_mode), crop=crop, augment=True)
    has_val = "val" not in config.train_splits and bool(manifest.rows_for("val"))
    val_ds = (ManifestDataset(manifest, "val", class_names, spec, eval_transform(spec),
                              cache=make_cache(cache_mode), crop=crop) if has_val else None)
    if "val" in config.train_splits:
        log.info("Training on train+val: no validation; best.pt is the last epoch.")
    elif not has_val:
        log.warning("The manifest has no 'val' split: best.pt will be the last epoch.")

    weight = None
    if config.class_weights:
        from sklearn.utils.class_weight import compute_class_weight

        present = np.unique(train_ds.targets)
        w = np.ones(len(class_names), dtype=np.float32)
        w[present] = compute_class_weight("balanced", classes=present, y=np.array(train_ds.targets))
        weight = torch.tensor(w, device=device)
    criterion = nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)
    optimizer = _optimizer(config, model)
    scheduler = _scheduler(config, optimizer)
    runner = _Runner(_compiled(model) if config.compile else model, device, plan, criterion,
                     spec)

    history: list[dict[str, Any]] = []
    best = {"epoch": 0, "macro_f1": -math.inf, "val_loss": math.inf, "metrics": {}}
    stale, first_epoch = 0, 1
    if resume_state is not None:
        model.load_state_dict(resume_state["state_dict"])
        r = resume_state["resume"]
        optimizer.load_state_dict(r["optimizer"])
        if scheduler is not None and r.get("scheduler") is not None:
            scheduler.load_state_dict(r["scheduler"])
            if isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
                scheduler.T_max = config.epochs  # --epochs may extend the run
        if runner.scaler is not None and r.get("scaler") is not None:
            runner.scaler.load_state_dict(r["scaler"])
        history, best, stale = list(r["history"]), dict(r["best"]), int(r["stale"])
        first_epoch = int(r["epoch"]) + 1
        log.info("Resuming %s at epoch %d/%d", run_dir, first_epoch, config.epochs)

    provenance = {"config": config.to_dict(), "seed": config.seed,
                  "manifest": str(manifest.path.resolve()), "manifest_sha256": manifest.sha256(),
                  "dataset": manifest.name, "n_train": len(train_ds),
                  "n_val": len(val_ds) if val_ds else 0, "precision": plan.name,
                  "device": str(device), "faces": faces, "cache": cache_mode,
                  "n_train_without_face": train_ds.n_without_face, "init": init_info}
    atomic_write_text(run_dir / "config.json", json.dumps(provenance, indent=2))
    log.info("Training %s on %s (%d train / %d val images, %d classes) on %s, %s, %d px, %s",
             config.arch, manifest.name, len(train_ds), provenance["n_val"], len(class_names),
             device, plan.name, spec.size,
             f"face crops ({faces['detector']}, margin {faces['margin']}, "
             f"{train_ds.n_without_face} train images without a face used whole)"
             if faces else "whole images")

    stopped_early = False
    epoch = first_epoch - 1
    val_loader = _loader(val_ds, config, device, shuffle=False) if val_ds else None
    finished = [first_epoch - 1]  # the epoch last.pt holds
    with _interrupt_hint(run_dir, finished):
        for epoch in range(first_epoch, config.epochs + 1):
            t0 = time.perf_counter()
            torch.manual_seed(config.seed + epoch)
            loader = _loader(train_ds, config, device, shuffle=True, epoch_seed=config.seed + epoch)
            row: dict[str, Any] = {"epoch": epoch, "lr": optimizer.param_groups[0]["lr"]}
            stats = runner.train_epoch(loader, optimizer, f"epoch {epoch}/{config.epochs}")
            n_seen = stats.pop("n")
            row.update(stats)
            row["images_per_s"] = n_seen / max(time.perf_counter() - t0, 1e-9)
            epoch_metrics: dict[str, Any] = {}
            if val_loader is not None:
                val_loss, y_true, y_pred = runner.evaluate(val_loader)
                epoch_metrics = classification_metrics(y_true, y_pred, class_names)
                row.update(val_loss=val_loss, val_acc=epoch_metrics["accuracy"],
                           val_balanced_acc=epoch_metrics["balanced_accuracy"],
                           val_macro_f1=epoch_metrics["macro_f1"])
                for c in class_names:
                    row[f"val_acc_{c}"] = epoch_metrics["per_class"][c]["recall"]
            row["seconds"] = time.perf_counter() - t0
            history.append(row)

            score = row.get("val_macro_f1", epoch)  # without val: the last epoch is best
            loss_key = row.get("val_loss", row["train_loss"])
            improved = score > best["macro_f1"] or (score == best["macro_f1"]
                                                    and loss_key < best["val_loss"])
            if scheduler is not None:
                if config.scheduler is SchedulerName.plateau:
                    scheduler.step(row.get("val_macro_f1", row["train_acc"]))
                else:
                    scheduler.step()
            train_info = {**provenance, "epoch": epoch, "history_len": len(history)}
            if improved:
                best = {"epoch": epoch, "macro_f1": score, "val_loss": loss_key,
                        "metrics": epoch_metrics}
                stale = 0
                save_checkpoint(run_dir / "best.pt", model=model, arch=config.arch,
                                arch_kwargs=arch_kwargs, class_names=class_names, input_spec=spec,
                                train=train_info, metrics={"val": epoch_metrics, "epoch": epoch},
                                faces=faces)
            else:
                stale += 1
            resume = {"optimizer": optimizer.state_dict(),
                      "scheduler": scheduler.state_dict() if scheduler is not None else None,
                      "scaler": runner.scaler.state_dict() if runner.scaler is not None else None,
                      "epoch": epoch, "history": history, "best": best, "stale": stale}
            save_checkpoint(run_dir / "last.pt", model=model, arch=config.arch,
                            arch_kwargs=arch_kwargs, class_names=class_names, input_spec=spec,
                            train=train_info, metrics={"val": epoch_metrics, "epoch": epoch},
                            faces=faces, resume=resume)
            finished[0] = epoch
            _write_history(run_dir, history, class_names)
            log.info(_summary_line(row, config.epochs, class_names))
            if config.early_stopping is not None and stale >= config.early_stopping:
                log.info("Early stopping: no val macro-F1 gain for %d epochs.", stale)
                stopped_early = True
                break

        best_path = run_dir / "best.pt"
        _calibrate_best(best_path, val_ds, config, device)
    store.register_trained(name, best_path, arch=config.arch, class_names=class_names,
                           dataset=manifest.name, best_epoch=best["epoch"],
                           val_macro_f1=best["metrics"].get("macro_f1"))
    return TrainResult(run_dir=run_dir, best_checkpoint=best_path,
                       last_checkpoint=run_dir / "last.pt", best_epoch=best["epoch"],
                       best_metrics=best["metrics"], history=history,
                       seconds=time.perf_counter() - start, name=name,
                       stopped_early=stopped_early, manifest=manifest.path,
                       manifest_source=choice.source)
