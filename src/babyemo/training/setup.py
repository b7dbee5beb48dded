"""Everything a run needs before its first epoch: :func:`prepare_run` -> :class:`Run`.

The run folder (checked, or the run to ``--resume``), the manifest, the arch (looked up
once), the model (fine-tuned with ``--init``), the datasets and their cache, the loss,
optimizer, learning-rate schedule and the :class:`~babyemo.training.runner.Runner`.
"""

from __future__ import annotations

import datetime as _dt
import json
import logging
import random
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from babyemo import distributed
from babyemo.checkpoint import read_checkpoint_dict
from babyemo.config import CacheMode, InputSpec, OptimizerName, SchedulerName, TrainConfig
from babyemo.data.loading.dataset import ManifestDataset
from babyemo.data.loading.folders import check_outputs
from babyemo.data.loading.image_cache import make_cache
from babyemo.data.preparation.lookup import manifest_for_training
from babyemo.data.preparation.manifest import Manifest, read_manifest, warn_training_classes
from babyemo.devices import (
    configure_backends,
    default_num_workers,
    resolve_precision,
    set_cpu_threads,
)
from babyemo.errors import ConfigError, DataError
from babyemo.fs import atomic_write_text, remove_stale_temps
from babyemo.models import store
from babyemo.models.registry import ArchInfo, create_model, get_arch
from babyemo.training.distill import (
    TEACHER_FILE,
    Distillation,
    SoftTargetLoss,
    load_teacher,
    prepare_distillation,
    scan_unlabelled,
)
from babyemo.training.finetune import init_from, resolve_init
from babyemo.training.mixing import BatchMix
from babyemo.training.multitask import (
    AuxTask,
    check_aux_manifest,
    check_resumed_aux,
    main_head,
    prepare_aux,
)
from babyemo.training.resume import resumed_config
from babyemo.training.runner import Runner, compiled
from babyemo.transforms import eval_transform, train_transform

log = logging.getLogger(__name__)

RUN_FILES = ("config.json", "metrics.csv", "curves.png", "best.pt", "last.pt", TEACHER_FILE)
"""The files :func:`babyemo.training.train` writes into its run folder (``teacher.npz``
with ``--teacher`` only)."""


@dataclass
class Run:
    """A run set up and ready for its first epoch (made by :func:`prepare_run`).

    Attributes:
        config: The configuration it runs with (``data`` the manifest file itself; on
            ``--resume``, the run's own configuration, see
            :func:`~babyemo.training.resume.resumed_config`).
        arch: The registry entry of ``config.arch`` (looked up once per run).
        arch_kwargs: The builder's keyword arguments (stored in checkpoints).
        device: Where it trains.
        plan: The precision plan (:func:`~babyemo.devices.resolve_precision`).
        run_dir: The run folder (created).
        name: Name ``best.pt`` is registered under.
        manifest: The manifest trained on.
        manifest_source: Why that manifest
            (:func:`~babyemo.data.preparation.lookup.manifest_for_training`).
        class_names: Classes in logit order.
        spec: The model's input.
        faces: Face-crop settings (stored in checkpoints), or ``None`` for whole images.
        model: The model on ``device`` (its own parameters, never the compiled wrapper).
        train_ds: The training images (augmented).
        val_ds: The validation images, or ``None`` (no val split, or trained on it).
        optimizer: The optimizer.
        scheduler: The learning-rate schedule, or ``None`` for a constant rate.
        runner: Runs the passes (on the compiled model with ``--compile``).
        provenance: The checkpoints' ``train`` entry (also ``config.json``).
        saved: ``last.pt``'s dict when resuming, else ``None``.
        fit_ds: What the training passes read: ``train_ds``, or with ``--teacher`` the
            training and unlabelled images with their teacher logits
            (:class:`~babyemo.training.distill.DistillDataset`); ``None``: ``train_ds``.
        ema: The exponential moving average of the weights (``--ema``;
            ``torch.optim.swa_utils.AveragedModel``), or ``None``.
        distill: The teacher targets (``--teacher``), or ``None``.
        dist: This process's place in a distributed run (``torchrun``; one process:
            ``world_size`` 1). ``model`` is then wrapped in ``DistributedDataParallel``
            for the training passes only (``runner.model``).
        aux: The auxiliary task of multi-task training (``--aux-data``; its head is not
            part of ``model`` and never saved in ``model``'s state dict), or ``None``.
    """

    config: TrainConfig
    arch: ArchInfo
    arch_kwargs: dict[str, Any]
    device: torch.device
    plan: Any
    run_dir: Path
    name: str
    manifest: Manifest
    manifest_source: str
    class_names: list[str]
    spec: InputSpec
    faces: dict[str, Any] | None
    model: nn.Module
    train_ds: ManifestDataset
    val_ds: ManifestDataset | None
    optimizer: torch.optim.Optimizer
    scheduler: Any
    runner: Runner
    provenance: dict[str, Any]
    saved: dict[str, Any] | None = None
    fit_ds: Any = None
    ema: Any = None
    distill: Distillation | None = None
    dist: distributed.DistContext = field(default_factory=distributed.DistContext)
    aux: AuxTask | None = None

    def __post_init__(self) -> None:
        if self.fit_ds is None:
            self.fit_ds = self.train_ds

    @property
    def saved_model(self) -> nn.Module:
        """The weights checkpoints hold and evaluation runs: the EMA's with ``--ema``."""
        return self.ema.module if self.ema is not None else self.model


def seed_all(seed: int) -> None:
    """Seed Python's, NumPy's and torch's generators with ``seed``."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_folder(config: TrainConfig) -> Path:
    """The run folder, checked but not created (``config.out`` or ``runs/<time>-<arch>``).

    Raises:
        ConfigError: ``--resume`` without a ``last.pt`` in it; a non-empty folder without
            ``--overwrite`` or ``--resume``; a folder that is a file (see
            :func:`~babyemo.data.loading.folders.check_outputs`).
    """
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


def face_settings(config: TrainConfig, manifest: Manifest) -> dict[str, Any] | None:
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


def make_optimizer(config: TrainConfig, model: nn.Module, lr: float | None = None,
                   extra: tuple[nn.Module, ...] = ()) -> torch.optim.Optimizer:
    """AdamW (or SGD with Nesterov momentum 0.9) at ``lr`` (default ``config.lr``; a
    distributed run scales it, see :func:`babyemo.distributed.lr_scale`); weight decay on
    weights with two or more dimensions only (not on biases and normalisation
    parameters). ``extra`` modules (the auxiliary head of ``--aux-data``) are optimised
    alike, their parameters after ``model``'s."""
    lr = config.lr if lr is None else lr
    decay, no_decay = [], []
    for p in [*model.parameters(), *(q for m in extra for q in m.parameters())]:
        if p.requires_grad:
            (no_decay if p.ndim <= 1 else decay).append(p)
    groups = [{"params": decay, "weight_decay": config.weight_decay},
              {"params": no_decay, "weight_decay": 0.0}]
    if config.optimizer is OptimizerName.sgd:
        return torch.optim.SGD(groups, lr=lr, momentum=0.9, nesterov=True)
    return torch.optim.AdamW(groups, lr=lr)


def make_scheduler(config: TrainConfig, optimizer: torch.optim.Optimizer) -> Any:
    """Cosine annealing over ``config.epochs``, ReduceLROnPlateau on val macro-F1 (halving
    after 3 epochs without gain), or ``None`` (constant rate); stepped once per epoch."""
    if config.scheduler is SchedulerName.cosine:
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=config.epochs)
    if config.scheduler is SchedulerName.plateau:
        return torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, mode="max", factor=0.5,
                                                          patience=3)
    return None


def make_criterion(config: TrainConfig, train_ds: ManifestDataset, num_classes: int,
                   device: torch.device) -> nn.Module:
    """Cross-entropy with ``config.label_smoothing``; with ``config.class_weights``,
    weighted by scikit-learn's ``"balanced"`` class weights of the training targets
    (1 for classes absent from them)."""
    weight = None
    if config.class_weights:
        from sklearn.utils.class_weight import compute_class_weight

        present = np.unique(train_ds.targets)
        w = np.ones(num_classes, dtype=np.float32)
        w[present] = compute_class_weight("balanced", classes=present, y=np.array(train_ds.targets))
        weight = torch.tensor(w, device=device)
    return nn.CrossEntropyLoss(weight=weight, label_smoothing=config.label_smoothing)


def make_soft_loss(config: TrainConfig, criterion: nn.CrossEntropyLoss, num_classes: int
                   ) -> SoftTargetLoss | None:
    """The soft-target loss of MixUp/CutMix and distillation (same label smoothing and
    class weights as ``criterion``), or ``None`` when the recipe uses neither (the
    training step then stays the plain cross entropy on class indices)."""
    if not (config.mixup > 0 or config.cutmix > 0 or config.teacher):
        return None
    return SoftTargetLoss(num_classes, weight=criterion.weight,
                          label_smoothing=config.label_smoothing,
                          temperature=config.distill_temperature, alpha=config.distill_alpha,
                          teacher=bool(config.teacher))


def make_ema(config: TrainConfig, model: nn.Module) -> Any:
    """``AveragedModel(model, get_ema_multi_avg_fn(config.ema), use_buffers=True)`` (the
    batch-norm statistics averaged too), or ``None`` without ``--ema``."""
    if config.ema is None:
        return None
    from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

    return AveragedModel(model, multi_avg_fn=get_ema_multi_avg_fn(config.ema), use_buffers=True)


def prepare_run(config: TrainConfig) -> Run:
    """Check everything, then set up the run: nothing is written before the checks pass.

    With ``config.resume``, the run's configuration is taken from its ``last.pt`` (see
    :func:`~babyemo.training.resume.resumed_config`), which is read into
    :attr:`Run.saved`; the states are restored by the caller.

    Args:
        config: The configuration given.

    Under ``torchrun`` every process checks everything, then waits for the others
    (:func:`babyemo.distributed.barrier`) before rank 0 creates the folder; only rank 0
    writes into it.

    Returns:
        The :class:`Run`, its folder created.

    Raises:
        DataError, ConfigError, DeviceError, RegistryError, CheckpointError,
            DistributedError: See :func:`babyemo.training.train`.
    """
    dist, device = distributed.start(config.device, timeout_s=config.dist_timeout)
    plan = resolve_precision(config.precision, device)
    configure_backends(device)
    run_dir = run_folder(config)
    saved: dict[str, Any] | None = None
    if config.resume:
        saved = read_checkpoint_dict(run_dir / "last.pt")
        config = resumed_config(config, saved["train"], run_dir)
        for stale_file in remove_stale_temps(run_dir) if dist.is_main else ():
            # left by a killed (SIGKILL) run
            log.info("Removed %s, a partial file of the interrupted run", stale_file.name)
    lr = _distributed_lr(config, dist, device, saved)
    info = get_arch(config.arch)
    name = config.name or run_dir.resolve().name
    store.check_name_free(name, run_dir / "best.pt")
    choice = manifest_for_training(config.data)
    manifest: Manifest = read_manifest(choice.path)
    log.info("Manifest: %s (%s)", manifest.path, choice.source)
    warn_training_classes(manifest, config.train_splits)  # logged: a class never trained on
    aux_manifest = check_aux_manifest(config, manifest, dist)
    teacher_file = _existing_file(config.teacher)
    check_outputs(folders={"run folder": run_dir},
                  scanned=[manifest.root, config.unlabelled,
                           aux_manifest.root if aux_manifest else None],
                  folder_files={"run folder": () if config.resume else RUN_FILES},
                  inputs=[manifest.path, None if config.resume else config.init,
                          None if config.resume else teacher_file,
                          aux_manifest.path if aux_manifest else None])
    # record the manifest itself, never "the last prepared": --resume and evaluation must
    # find this one even after another process prepares something else (and so the
    # teacher's and the unlabelled images' files)
    config = replace(config, data=str(manifest.path.resolve()),
                     teacher=str(teacher_file.resolve()) if teacher_file else config.teacher,
                     unlabelled=(str(Path(config.unlabelled).expanduser().resolve())
                                 if config.unlabelled else None),
                     aux_data=str(aux_manifest.path.resolve()) if aux_manifest else None)
    class_names = list(manifest.class_names)
    if len(class_names) < 2:
        raise DataError(f"The manifest {manifest.path} has {len(class_names)} class(es).",
                        "a classifier needs at least two classes")
    teacher = found = None  # checked before anything is written; reused targets need neither
    if config.teacher and not (config.resume and (run_dir / TEACHER_FILE).is_file()):
        teacher = load_teacher(config.teacher, class_names)
        found = scan_unlabelled(config.unlabelled) if config.unlabelled else None
    spec = info.default_input.with_size(config.image_size)
    arch_kwargs = info.builder_kwargs(config.arch_kwargs, spec.size)
    seed_all(config.seed)

    model = create_model(info, num_classes=len(class_names), pretrained=config.pretrained,
                         **arch_kwargs)
    init_info = None
    if saved is None:
        init_ckpt = resolve_init(config, spec)
        if init_ckpt is not None:
            init_info = init_from(model, init_ckpt, class_names, info)
    else:
        init_info = saved.get("train", {}).get("init")
    if aux_manifest is not None:
        main_head(info, model)  # an nn.Linear head, checked before anything is written
    distributed.barrier("checking the run folder")  # every process checked it unchanged
    if dist.is_main:
        run_dir.mkdir(parents=True, exist_ok=True)
    model = model.to(device)
    if device.type in ("cpu", "cuda"):
        model = model.to(memory_format=torch.channels_last)
    if dist.enabled and config.sync_bn:
        model = nn.SyncBatchNorm.convert_sync_batchnorm(model)

    workers = (config.num_workers if config.num_workers is not None else default_num_workers(
        device, processes=dist.local_world_size))
    faces = face_settings(config, manifest)
    crop = None
    if faces is not None:
        from babyemo.faces import CropSpec

        crop = CropSpec(margin=faces["margin"], align=faces["align"])
    cache_mode = resolve_cache_mode(config.cache, workers)
    set_cpu_threads(device, workers, processes=dist.local_world_size)
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

    criterion = make_criterion(config, train_ds, len(class_names), device)
    distill = None
    if config.teacher:
        distill = prepare_distillation(config, run_dir=run_dir, manifest=manifest,
                                       train_ds=train_ds, class_names=class_names,
                                       student_faces=faces, train_transform=train_ds.transform,
                                       cache=train_ds.cache, device=device, teacher=teacher,
                                       found=found)
    soft_loss = make_soft_loss(config, criterion, len(class_names))
    mix = BatchMix(config.mixup, config.cutmix) if config.mixup > 0 or config.cutmix > 0 else None
    ema = make_ema(config, model)
    aux = None
    if aux_manifest is not None:  # its hook on the model after the EMA's copy: not copied
        aux = prepare_aux(config, aux_manifest, info=info, model=model, spec=spec,
                          cache=make_cache(cache_mode), device=device)
        if saved is not None:
            check_resumed_aux(aux, saved["train"])
    optimizer = make_optimizer(config, model, lr, extra=(aux.head,) if aux else ())
    scheduler = make_scheduler(config, optimizer)
    train_model: nn.Module = model
    if dist.enabled:  # averages the gradients over the processes in backward
        from torch.nn.parallel import DistributedDataParallel

        train_model = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    runner = Runner(compiled(train_model) if config.compile else train_model, device, plan,
                    criterion, spec,
                    soft_loss=soft_loss.to(device) if soft_loss is not None else None,
                    mix=mix, ema=ema, module=model, aux=aux)
    provenance = {"config": config.to_dict(), "seed": config.seed,
                  "manifest": str(manifest.path.resolve()), "manifest_sha256": manifest.sha256(),
                  "dataset": manifest.name, "n_train": len(train_ds),
                  "n_val": len(val_ds) if val_ds else 0, "precision": plan.name,
                  "device": str(device), "faces": faces, "cache": cache_mode,
                  "n_train_without_face": train_ds.n_without_face, "init": init_info}
    if distill is not None:
        provenance["distill"] = distill.provenance(config)
    if aux is not None:
        provenance["aux"] = aux.provenance()
    if dist.enabled:
        provenance["distributed"] = {"world_size": dist.world_size, "backend": dist.backend,
                                     "global_batch": config.batch_size * dist.world_size,
                                     "lr_scaling": config.lr_scaling.value, "lr": lr}
    return Run(config=config, arch=info, arch_kwargs=arch_kwargs, device=device, plan=plan,
               run_dir=run_dir, name=name, manifest=manifest, manifest_source=choice.source,
               class_names=class_names, spec=spec, faces=faces, model=model,
               train_ds=train_ds, val_ds=val_ds, optimizer=optimizer, scheduler=scheduler,
               runner=runner, provenance=provenance, saved=saved,
               fit_ds=distill.dataset if distill is not None else train_ds, ema=ema,
               distill=distill, dist=dist, aux=aux)


def _distributed_lr(config: TrainConfig, dist: distributed.DistContext,
                    device: torch.device, saved: dict[str, Any] | None) -> float:
    """The learning rate of a run's processes; in a distributed run, logged as its first
    line with the global batch (``--batch-size`` is per process).

    Raises:
        ConfigError: ``--teacher`` or ``--sync-bn`` on the CPU in a distributed run.
    """
    if saved is not None:
        before = int((saved["train"].get("distributed") or {}).get("world_size", 1))
        if before != dist.world_size:
            log.info("Resuming with %d process%s (the run had %d): the optimizer's state and "
                     "learning-rate schedule continue as saved.", dist.world_size,
                     "es" if dist.world_size != 1 else "", before)
    if not dist.enabled:
        return config.lr
    if config.teacher:
        raise ConfigError("--teacher is not supported in a distributed run yet.",
                          "distil with one process (drop torchrun / --nproc)")
    if config.sync_bn and device.type != "cuda":
        raise ConfigError("--sync-bn needs GPUs: torch.nn.SyncBatchNorm does not run on the "
                          "CPU.", "drop --sync-bn, or train with --device cuda")
    scale = distributed.lr_scale(config.lr_scaling, dist.world_size)
    lr = config.lr * scale
    log.info("Distributed: %d processes (%s, %s), global batch %d = %d x %d per process, "
             "lr %g = %g x %g (--lr-scaling %s)%s", dist.world_size, dist.backend,
             device.type, config.batch_size * dist.world_size, dist.world_size,
             config.batch_size, lr, config.lr, scale, config.lr_scaling.value,
             ", SyncBatchNorm" if config.sync_bn else "")
    return lr


def _existing_file(value: str | None) -> Path | None:
    """``value`` as a path when it names an existing file (``--teacher`` may also be a
    trained model's name), else ``None``."""
    if not value:
        return None
    path = Path(value).expanduser()
    return path if path.is_file() else None


def write_run_config(run: Run) -> None:
    """Write the run's ``config.json`` (its provenance) and log what it trains on."""
    config, spec, faces = run.config, run.spec, run.faces
    atomic_write_text(run.run_dir / "config.json", json.dumps(run.provenance, indent=2))
    log.info("Training %s on %s (%d train / %d val images, %d classes) on %s, %s, %d px, %s",
             config.arch, run.manifest.name, len(run.train_ds), run.provenance["n_val"],
             len(run.class_names), run.device, run.plan.name, spec.size,
             f"face crops ({faces['detector']}, margin {faces['margin']}, "
             f"{run.train_ds.n_without_face} train images without a face used whole)"
             if faces else "whole images")
    aux = run.provenance.get("aux")
    if aux is not None:
        log.info("Auxiliary task: %s (%s: %d classes %s, %d train images, %s), loss = CE + "
                 "%g x CE_aux; best.pt is the main task only", aux["manifest"], aux["dataset"],
                 len(aux["class_names"]), ", ".join(aux["class_names"]), aux["n_train"],
                 f"face crops ({aux['faces']['detector']})" if aux["faces"] else "whole images",
                 aux["weight"])
    distill = run.provenance.get("distill")
    if distill is not None:
        u = distill["unlabelled"]
        log.info("Distilling from %s (T %g, alpha %g)%s", distill["teacher"]["name"],
                 distill["temperature"], distill["alpha"],
                 f" with {u['n_used']} unlabelled images of {u['folder']} ({u['n_unreadable']} "
                 f"unreadable, {u['n_without_face']} without a face skipped)" if u else "")
