"""``babyemo train``."""

from __future__ import annotations

import logging
from pathlib import Path

import typer

from babyemo.cli._common import cli_errors, say
from babyemo.config import (
    CacheMode,
    EpochSelection,
    LRScaling,
    OptimizerName,
    Precision,
    SchedulerName,
    TrainConfig,
)

_D = TrainConfig()


@cli_errors
def train_command(
    data: Path = typer.Option(None, "--data", help="Manifest (CSV or its folder). "
                              "Default: the last dataset prepared in this babyemo home."),
    arch: str = typer.Option(_D.arch, "--arch", help="Architecture (see `babyemo models list`)."),
    device: str = typer.Option(_D.device, "--device", help="auto, cpu, cuda, cuda:N or mps."),
    epochs: int = typer.Option(_D.epochs, "--epochs", min=1),
    batch_size: int = typer.Option(_D.batch_size, "--batch-size", min=1),
    lr: float = typer.Option(_D.lr, "--lr", help="Peak learning rate."),
    weight_decay: float = typer.Option(_D.weight_decay, "--weight-decay"),
    optimizer: OptimizerName = typer.Option(_D.optimizer, "--optimizer"),
    scheduler: SchedulerName = typer.Option(_D.scheduler, "--scheduler"),
    image_size: int = typer.Option(_D.image_size, "--image-size",
                                   help="Input side in pixels (default: the arch's default input, "
                                   "see `babyemo models list`)."),
    augment: str = typer.Option("default", "--augment", help="none, light, default, strong "
                                "(default + TrivialAugment + random erasing) or bridge "
                                "(default + grayscale, blur, downscale: infant photos made "
                                "like 48 px gray adult faces now and then); then ,FIELD=VALUE "
                                "changes, e.g. default,random_erasing=0.25,auto=randaugment."),
    mixup: float = typer.Option(_D.mixup, "--mixup", min=0, metavar="ALPHA",
                                help="MixUp of each batch with Beta(ALPHA, ALPHA), e.g. 0.2 "
                                "(0: off)."),
    cutmix: float = typer.Option(_D.cutmix, "--cutmix", min=0, metavar="ALPHA",
                                 help="CutMix of each batch with Beta(ALPHA, ALPHA), e.g. 1.0 "
                                 "(0: off; with --mixup, one of the two per batch)."),
    ema: float = typer.Option(None, "--ema", metavar="DECAY", help="Validate and save an "
                              "exponential moving average of the weights, e.g. 0.999."),
    teacher: str = typer.Option(None, "--teacher", metavar="MODEL_OR_FILE",
                                help="Distil from this model (a trained model's name or .pt "
                                "file): its logits on each training image, computed once."),
    distill_temperature: float = typer.Option(_D.distill_temperature, "--distill-temperature",
                                              metavar="T", help="Softening temperature of "
                                              "the distillation term."),
    distill_alpha: float = typer.Option(_D.distill_alpha, "--distill-alpha", metavar="A",
                                        help="Weight of the distillation term: (1 - A) CE + "
                                        "A T^2 KL."),
    unlabelled: Path = typer.Option(None, "--unlabelled", metavar="FOLDER",
                                    help="Also train on these unlabelled images, with the "
                                    "teacher's targets only (needs --teacher)."),
    aux_data: Path = typer.Option(None, "--aux-data", metavar="MANIFEST",
                                  help="Multi-task training: an auxiliary task (e.g. a "
                                  "prepared FER-2013; a manifest CSV or its folder) with its "
                                  "own classifier head on the shared backbone; a batch of its "
                                  "train split joins every main batch, and the loss is "
                                  "CE(main) + W x CE(aux). The saved model is the main task "
                                  "only."),
    aux_weight: float = typer.Option(_D.aux_weight, "--aux-weight", metavar="W",
                                     help="Weight W of the auxiliary loss (with --aux-data)."),
    label_smoothing: float = typer.Option(_D.label_smoothing, "--label-smoothing"),
    class_weights: bool = typer.Option(False, "--class-weights/--no-class-weights",
                                       help="Weight the loss by inverse class frequency."),
    patience: int = typer.Option(None, "--patience", min=1, metavar="N",
                                 help="Stop after N epochs without val macro-F1 gain "
                                 "(early stopping)."),
    early_stopping: int = typer.Option(None, "--early-stopping", min=1, hidden=True,
                                       help="Old name of --patience (deprecated)."),
    train_on: str = typer.Option("train", "--train-on", help="Splits to train on: train, or "
                                 "train,val for a final model once the recipe is chosen on val "
                                 "(no validation then: best.pt is the last epoch)."),
    seed: int = typer.Option(_D.seed, "--seed"),
    precision: Precision = typer.Option(_D.precision, "--precision"),
    pretrained: bool = typer.Option(False, "--pretrained", help="Start from ImageNet weights."),
    init: str = typer.Option(_D.init, "--init", help="Fine-tune from a babyemo checkpoint: "
                             "auto (the packaged babyemo-fer2013 adult-face model when the "
                             "arch matches), none, a .pt file or a trained model's name."),
    out: Path = typer.Option(None, "--out", help="Run folder (default runs/<time>-<arch>)."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Reuse a non-empty --out."),
    resume: bool = typer.Option(False, "--resume", help="Continue the run in --out."),
    folds: int = typer.Option(None, "--folds", metavar="K", help="K-fold cross-validation of "
                              "this recipe instead of one run: the train and val images in K "
                              "stratified folds (duplicates kept together), one run per fold "
                              "in --out/fold-k, out-of-fold predictions (oof.csv) and metrics "
                              "with 95% CIs (cv.json); the test split is never used. Folds "
                              "are registered only with --name (NAME-fold-k)."),
    exclude_train: Path = typer.Option(None, "--exclude-train", metavar="CSV", help="With "
                                       "--folds: leave these images out of every fold's "
                                       "training (still held out and scored by their own "
                                       "fold), e.g. suspects of `babyemo data audit`; a CSV "
                                       "with a path column (a label column: its rows "
                                       "labelled exclude)."),
    select: EpochSelection = typer.Option(None, "--select", help="Which epoch best.pt keeps: "
                                          "best (highest val macro-F1; the default) or last "
                                          "(the final epoch; always with --folds)."),
    name: str = typer.Option(None, "--name", help="Register the model under this name."),
    workers: int = typer.Option(None, "--workers", min=0, help="DataLoader worker processes "
                                "(default: 0 on a CPU with up to 4 cores)."),
    cache: CacheMode = typer.Option(_D.cache, "--cache", help="Keep decoded, resized images "
                                    "so later epochs skip decoding: ram, disk (shared by "
                                    "workers and later runs), none; auto = ram with 0 workers, "
                                    "else disk."),
    compile_model: bool = typer.Option(_D.compile, "--compile/--no-compile",
                                       help="torch.compile the model (slow first epoch)."),
    faces: str = typer.Option(_D.faces, "--faces", help="auto (crop to the manifest's face "
                              "boxes when it has them), none (whole images), or the detector "
                              "the manifest was prepared with."),
    face_margin: float = typer.Option(_D.face_margin, "--face-margin",
                                      help="Margin around the face box, as a fraction of its "
                                      "size on each side."),
    face_align: bool = typer.Option(_D.face_align, "--face-align/--no-face-align",
                                    help="Rotate face crops so the eyes are level."),
    nproc: int = typer.Option(None, "--nproc", min=1, metavar="N",
                              help="Train in N processes on this machine (one per GPU): "
                              "starts `torchrun --standalone --nproc-per-node N -m babyemo "
                              "train ...`. For several machines, start torchrun yourself "
                              "(docs/distributed.md)."),
    sync_bn: bool = typer.Option(_D.sync_bn, "--sync-bn/--no-sync-bn",
                                 help="Distributed on GPUs: batch-norm statistics over the "
                                 "global batch (torch.nn.SyncBatchNorm)."),
    lr_scaling: LRScaling = typer.Option(_D.lr_scaling, "--lr-scaling",
                                         help="Distributed: --lr times the number of "
                                         "processes (linear) or as given (none); "
                                         "--batch-size is per process."),
    dist_timeout: float = typer.Option(_D.dist_timeout, "--dist-timeout", min=1,
                                       metavar="SECONDS", help="Distributed: how long a "
                                       "process waits for the others before the run fails."),
) -> None:
    """Train an architecture on a prepared dataset (best.pt, last.pt, metrics, curves).

    Runs unchanged under torchrun (`torchrun --nproc-per-node N -m babyemo train ...`):
    DistributedDataParallel, only rank 0 writes files and shows progress.
    """
    from babyemo.data.loading.folders import check_outputs
    from babyemo.models.registry import check_arch_name

    if nproc is not None and nproc > 1:
        if aux_data is not None:
            raise typer.BadParameter("multi-task training (--aux-data) runs in one process "
                                     "only", param_hint="--nproc")
        _launch(nproc)

    if early_stopping is not None:
        if patience is not None:
            raise typer.BadParameter("--early-stopping is the old name of --patience; "
                                     "give --patience only", param_hint="--early-stopping")
        patience = early_stopping
        logging.getLogger(__name__).warning(
            "--early-stopping is now --patience; the old name will be removed in the next "
            "release.")
    if exclude_train is not None and folds is None:
        raise typer.BadParameter("leaving images out of training is measured with --folds "
                                 "(same folds, every image still scored); to train without "
                                 "them, write a new manifest with `babyemo data relabel`",
                                 param_hint="--exclude-train")
    if folds is not None and select is EpochSelection.best:
        raise typer.BadParameter("cross-validation keeps each fold's last epoch: an epoch "
                                 "chosen on the fold it is scored on inflates the out-of-fold "
                                 "score", param_hint="--select")
    check_arch_name(arch)  # before importing torch: a typo fails in well under a second
    check_outputs(folders={"--out": out})  # train() also checks it against the data
    config = TrainConfig(
        data=str(data) if data else None, arch=arch, pretrained=pretrained,
        image_size=image_size, epochs=epochs, batch_size=batch_size, lr=lr,
        weight_decay=weight_decay, optimizer=optimizer, scheduler=scheduler,
        augment=augment, label_smoothing=label_smoothing,
        class_weights=class_weights, patience=patience, seed=seed, device=device,
        precision=precision, num_workers=workers, cache=cache, compile=compile_model,
        out=str(out) if out else None,
        overwrite=overwrite, resume=resume, init=init or None, name=name,
        faces=faces, face_margin=face_margin, face_align=face_align, train_splits=train_on,
        mixup=mixup, cutmix=cutmix, ema=ema, teacher=teacher,
        distill_temperature=distill_temperature, distill_alpha=distill_alpha,
        unlabelled=str(unlabelled) if unlabelled else None,
        select=select or (EpochSelection.last if folds is not None else EpochSelection.best),
        sync_bn=sync_bn, lr_scaling=lr_scaling, dist_timeout=dist_timeout,
        aux_data=str(aux_data) if aux_data else None, aux_weight=aux_weight)
    if folds is not None:
        _train_folds(config, folds, exclude_train)
        return
    from babyemo.training import train

    result = train(config)
    if not _is_main_process():
        return  # rank 0 says it
    m = result.best_metrics
    nan = float("nan")
    say(f"best epoch {result.best_epoch}: val accuracy {m.get('accuracy', nan):.3f}"
        f", macro-F1 {m.get('macro_f1', nan):.3f}"
        f" ({result.seconds / 60:.1f} min)")
    say(f"model '{result.name}': {result.best_checkpoint}")
    say(f"run folder: {result.run_dir}")
    say(f"manifest: {result.manifest} ({result.manifest_source})")


def _is_main_process() -> bool:
    """Rank 0 of a torchrun run, or a single process (read from torchrun's variables)."""
    from babyemo.distributed import context_from_env

    return context_from_env().is_main


def _launch(nproc: int) -> None:
    """``--nproc N``: run this same command under torchrun in N processes; exit with its
    code."""
    import sys

    from babyemo.distributed import launch

    args, skip = [], False
    for a in sys.argv[1:]:
        if skip:
            skip = False
        elif a == "--nproc":
            skip = True
        elif not a.startswith("--nproc="):
            args.append(a)
    raise typer.Exit(launch(nproc, args))


def _train_folds(config: TrainConfig, folds: int, exclude_train: Path | None) -> None:
    """``--folds K``: cross-validate, then one line per fold and the out-of-fold summary."""
    from babyemo.evaluation.crossval import train_folds

    result = train_folds(config, folds, exclude_train=exclude_train)
    for f in result.per_fold:
        m = f.metrics
        done = ", trained earlier" if f.skipped else f", {f.seconds / 60:.1f} min"
        say(f"fold {f.fold}/{result.folds}: {f.n_val} held out, accuracy {m['accuracy']:.3f}, "
            f"macro-F1 {m['macro_f1']:.3f} (best epoch {f.best_epoch}{done})")
    m, ci = result.metrics, result.ci
    say(f"out-of-fold (n={result.n}, {result.folds} folds): " + ", ".join(
        f"{label} {m[k]:.3f} [{ci[k][0]:.3f}, {ci[k][1]:.3f}]"
        for k, label in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
                         ("macro_f1", "macro-F1")))
        + f" (95% bootstrap CIs, {result.n_bootstrap} resamples)")
    spread = result.fold_spread()
    say(f"macro-F1 over folds: mean {spread['mean']:.3f}, sd {spread['std']:.3f}, "
        f"{spread['min']:.3f}-{spread['max']:.3f}")
    say(f"run folder: {result.run_dir} (oof.csv, oof_logits.npz, cv.json; "
        f"{result.seconds / 60:.1f} min)")
    say(f"manifest: {result.manifest} ({result.manifest_source})")
    if result.exclude_train:
        say(f"left out of training: {result.exclude_train} images "
            f"({result.exclude_source.get('path')})")
