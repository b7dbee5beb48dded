"""K-fold cross-validation of a training recipe: ``train_folds(config, folds) -> FoldsResult``.

A recipe chosen on one small validation split is chosen on noise (154 images give a
macro-F1 that moves by about 0.07 from one draw to another). Cross-validation scores it on
every non-test image instead: each image is predicted once, by the model of the fold that
held it out (its *out-of-fold* prediction), and the out-of-fold metrics get percentile
bootstrap 95% intervals over all those images.

The training side (folds, fold manifests, resumable training, out-of-fold logits) is
:func:`babyemo.training.folds.run_folds`; this module scores the out-of-fold predictions
and writes, beside its ``folds.json``, ``manifests/`` and ``fold-k/`` folders:

- ``oof.csv``: one row per non-test image in the row schema of :mod:`babyemo.rows`
  (``path, true, label, confidence, prob_<class>..., error, error_detail``, as
  evaluation's ``predictions.csv``) plus ``fold``; probabilities are
  ``softmax(logits / T)`` with the fold's temperature (fitted on its held-out rows);
- ``oof_logits.npz``: ``paths`` ``(N,)`` str, ``logits`` ``(N, K) float32`` (before
  temperature), ``targets`` ``(N,) int64``, ``fold`` ``(N,) int64`` (1-based),
  ``class_names`` ``(K,)`` str and ``temperatures`` ``(folds,) float64``; readable with
  ``numpy.load`` (no pickle);
- ``cv.json``: the out-of-fold metrics with their intervals, per-fold metrics, ``K``, the
  seed, the configuration and the manifest (path and SHA-256).

Two such runs (or two ``evaluate --out`` folders) are compared with
:func:`babyemo.evaluation.compare.compare_predictions` (``babyemo compare``).
"""

from __future__ import annotations

import logging
import os
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from babyemo import reports
from babyemo.calibration import softmax
from babyemo.config import TrainConfig
from babyemo.distributed import context_from_env
from babyemo.errors import ConfigError, DataError
from babyemo.fs import atomic_open
from babyemo.metrics import bootstrap_ci, classification_metrics
from babyemo.rows import Prediction, PredictionWriter
from babyemo.training.folds import run_folds

log = logging.getLogger(__name__)

CV_FILES = ("oof.csv", "oof_logits.npz", "cv.json")
"""The files :func:`train_folds` writes into the run folder (beside ``folds.json``)."""
SUMMARY_METRICS = ("accuracy", "balanced_accuracy", "macro_f1")


@dataclass
class FoldResult:
    """One fold of a cross-validation.

    Attributes:
        fold: ``k`` (1-based).
        run_dir: Its training run folder (``RUN/fold-k``).
        checkpoint: Its ``best.pt``.
        n_train: Images it trained on.
        n_val: Its held-out images (out-of-fold predictions).
        metrics: :func:`babyemo.metrics.classification_metrics` of its held-out images.
        best_epoch: The epoch of ``best.pt``.
        temperature: ``best.pt``'s temperature.
        seconds: Its training time (in the call that trained it).
        skipped: Whether it was trained in an earlier call (resume).
        name: Its name in the model store (``NAME-fold-k``), or ``""``: not registered.
    """

    fold: int
    run_dir: Path
    checkpoint: Path
    n_train: int
    n_val: int
    metrics: dict[str, Any]
    best_epoch: int
    temperature: float
    seconds: float
    skipped: bool
    name: str = ""

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (an entry of ``cv.json``'s ``per_fold``)."""
        return {"fold": self.fold, "run_dir": str(self.run_dir),
                "checkpoint": str(self.checkpoint), "n_train": self.n_train,
                "n_val": self.n_val, "best_epoch": self.best_epoch,
                "temperature": self.temperature, "seconds": self.seconds,
                "skipped": self.skipped, "name": self.name, "metrics": self.metrics}


@dataclass
class FoldsResult:
    """What a cross-validation produced (:func:`train_folds`).

    Attributes:
        run_dir: The folds run folder.
        folds: ``K``.
        seed: Seed of the folds (and of every fold's training and the bootstrap).
        manifest: The parent manifest.
        manifest_sha256: Its SHA-256.
        manifest_source: Why that manifest.
        class_names: Class names in logit order.
        n: Out-of-fold images (every non-test row once).
        metrics: :func:`~babyemo.metrics.classification_metrics` of the out-of-fold
            predictions.
        ci: ``{metric: [low, high]}`` percentile bootstrap intervals
            (:func:`~babyemo.metrics.bootstrap_ci`, ``per_class`` too).
        n_bootstrap: Bootstrap resamples.
        per_fold: One :class:`FoldResult` per fold.
        config: The configuration every fold trained with.
        files: ``{"folds", "oof", "oof_logits", "cv"}`` -> path.
        seconds: Wall time of this call.
        exclude_train: Images left out of every fold's training part (still scored).
        exclude_source: ``{"path", "sha256"}`` of the file listing them, or ``{}``.
    """

    run_dir: Path
    folds: int
    seed: int
    manifest: Path
    manifest_sha256: str
    manifest_source: str
    class_names: list[str]
    n: int
    metrics: dict[str, Any]
    ci: dict[str, Any]
    n_bootstrap: int
    per_fold: list[FoldResult] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0
    exclude_train: int = 0
    exclude_source: dict[str, str] = field(default_factory=dict)

    def fold_spread(self, metric: str = "macro_f1") -> dict[str, float]:
        """Mean, standard deviation (sample), min and max of a metric over the folds."""
        values = [f.metrics[metric] for f in self.per_fold]
        return {"mean": statistics.fmean(values),
                "std": statistics.stdev(values) if len(values) > 1 else 0.0,
                "min": min(values), "max": max(values)}

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (the ``cv.json`` content)."""
        return {"format": "babyemo-cv", "folds": self.folds, "seed": self.seed,
                "n": self.n, "class_names": self.class_names,
                "oof": {**self.metrics, "ci95": self.ci,
                        "bootstrap_resamples": self.n_bootstrap},
                "fold_spread": {m: self.fold_spread(m) for m in SUMMARY_METRICS},
                "per_fold": [f.to_dict() for f in self.per_fold],
                "manifest": str(self.manifest), "manifest_sha256": self.manifest_sha256,
                "manifest_source": self.manifest_source, "run_dir": str(self.run_dir),
                "config": self.config, "files": {k: str(v) for k, v in self.files.items()},
                "exclude_train": self.exclude_train, "exclude_source": self.exclude_source,
                "seconds": self.seconds}


def train_folds(config: TrainConfig, folds: int, *, n_bootstrap: int = 1000,
                exclude_train: str | Path | None = None) -> FoldsResult:
    """Cross-validate the recipe ``config`` with ``folds`` folds (``babyemo train --folds``).

    The non-test rows of the manifest are split into ``folds`` stratified folds that keep
    duplicates, near-duplicates and subjects together; fold ``k`` trains with ``config``
    into ``RUN/fold-k/`` on the others and validates (``best.pt``, temperature) on its own
    (see :mod:`babyemo.training.folds`). Each fold's ``best.pt`` then predicts its
    held-out rows through :class:`babyemo.inference.InferenceModel`; the out-of-fold
    predictions of all non-test rows are scored and written (see the module doc). Test
    rows are never trained on nor predicted.

    With ``config.resume`` (``config.out`` the run folder), completed folds are skipped
    and an interrupted one continues from its ``last.pt``. The folds are registered in
    the model store (as ``NAME-fold-k``) only when ``config.name`` is given.

    Args:
        config: The recipe (every :class:`~babyemo.config.TrainConfig` option; ``out``:
            the run folder, default ``runs/<time>-<arch>-<K>folds``).
        folds: ``K``, between 2 and the number of duplicate groups of the smallest class.
        n_bootstrap: Bootstrap resamples of the out-of-fold intervals (>= 100; seeded with
            ``config.seed``).
        exclude_train: A CSV of images left out of every fold's training part but still
            held out and scored by their own fold
            (:func:`babyemo.training.folds.read_exclusions`); ``None``: none.

    Returns:
        The :class:`FoldsResult`.

    Raises:
        ConfigError: ``K < 2`` or more folds than the smallest class has groups of images;
            ``train_splits`` with ``val`` (``--train-on train,val``); a non-empty run
            folder without ``overwrite``; ``resume`` without a folds run, with another
            ``K``, or with conflicting options; and what
            :func:`babyemo.training.train` raises.
        ManifestError: No manifest, or (on resume) one changed since the folds were made.
        DataError, DeviceError, RegistryError, CheckpointError: As
            :func:`babyemo.training.train`.
    """
    start = time.perf_counter()
    if context_from_env().enabled:
        raise ConfigError("Cross-validation (--folds) runs in one process, not under torchrun.",
                          "drop torchrun / --nproc, or train each fold's manifest "
                          "(--out/manifests/fold-k) as its own distributed run")
    if not isinstance(n_bootstrap, int) or n_bootstrap < 100:
        raise ConfigError(f"The number of bootstrap resamples must be an int >= 100. Got "
                          f"{n_bootstrap!r}.")
    run = run_folds(config, folds, run_files=CV_FILES, exclude_train=exclude_train)
    plan = run.plan
    class_names = run.folds[0].class_names
    by_path: dict[str, tuple[int, int]] = {}  # path -> (fold index, row in the fold)
    for i, fold in enumerate(run.folds):
        for j, path in enumerate(fold.paths):
            by_path[path] = (i, j)
    order = [p for p in plan.fold_of if p in by_path]  # the parent manifest's row order
    if len(order) != len(plan.fold_of) or len(by_path) != len(order):
        raise DataError(f"The fold manifests of {plan.run_dir} do not hold out each non-test "
                        f"image once ({len(by_path)} held out, {len(plan.fold_of)} in "
                        f"{plan.run_dir / 'folds.json'}).",
                        "start the folds run again with --overwrite")
    logits = np.stack([run.folds[by_path[p][0]].logits[by_path[p][1]] for p in order]
                      ).astype(np.float32)
    targets = np.array([run.folds[by_path[p][0]].targets[by_path[p][1]] for p in order],
                       dtype=np.int64)
    fold_no = np.array([run.folds[by_path[p][0]].fold for p in order], dtype=np.int64)
    temps = np.array([f.temperature for f in run.folds], dtype=np.float64)
    files = {"folds": plan.run_dir / "folds.json", "oof": plan.run_dir / "oof.csv",
             "oof_logits": plan.run_dir / "oof_logits.npz", "cv": plan.run_dir / "cv.json"}
    probs = OutOfFold(path=files["oof_logits"], paths=order, logits=logits, targets=targets,
                      fold=fold_no, class_names=class_names, temperatures=temps).probs()
    y_pred = probs.argmax(axis=1)
    metrics = classification_metrics(targets, y_pred, class_names)
    ci = bootstrap_ci(targets, y_pred, class_names, n=n_bootstrap, seed=config.seed)
    per_fold = []
    for fold in run.folds:
        summary = fold.summary
        per_fold.append(FoldResult(
            fold=fold.fold, run_dir=fold.run_dir, checkpoint=fold.checkpoint,
            n_train=fold.n_train, n_val=len(fold.paths),
            metrics=classification_metrics(fold.targets, fold.logits.argmax(axis=1),
                                           class_names),
            best_epoch=int(summary.get("best_epoch", 0)), temperature=fold.temperature,
            seconds=float(summary.get("seconds", 0.0)), skipped=fold.skipped,
            name=str(summary.get("name", ""))))
    _write_oof_csv(files["oof"], order, targets, probs, fold_no, class_names)
    with atomic_open(files["oof_logits"], "wb") as f:
        np.savez(f, paths=np.array(order, dtype=str), logits=logits, targets=targets,
                 fold=fold_no, class_names=np.array(class_names, dtype=str),
                 temperatures=temps)
    result = FoldsResult(run_dir=plan.run_dir, folds=plan.folds, seed=plan.seed,
                         manifest=plan.manifest, manifest_sha256=plan.manifest_sha256,
                         manifest_source=run.manifest_source, class_names=class_names,
                         n=len(order), metrics=metrics, ci=ci, n_bootstrap=n_bootstrap,
                         per_fold=per_fold, config=run.config.to_dict(), files=files,
                         seconds=time.perf_counter() - start,
                         exclude_train=len(plan.exclude_train),
                         exclude_source=dict(plan.exclude_source))
    reports.write_json(result.to_dict(), files["cv"])
    log.info("Out-of-fold (n=%d, %d folds): accuracy %.3f, balanced accuracy %.3f, "
             "macro-F1 %.3f", result.n, result.folds, metrics["accuracy"],
             metrics["balanced_accuracy"], metrics["macro_f1"])
    return result


@dataclass
class OutOfFold:
    """The out-of-fold logits of a cross-validation run (its ``oof_logits.npz``).

    Attributes:
        path: The ``oof_logits.npz`` file.
        paths: ``(N,)`` manifest paths of the held-out images.
        logits: ``(N, K) float64`` logits before any temperature, each from the model of
            the fold that held the image out.
        targets: ``(N,) int64`` true class indices.
        fold: ``(N,) int64`` 1-based fold of each row.
        class_names: ``(K,)`` class names in logit order.
        temperatures: ``(folds,) float64`` each fold model's temperature (fitted on its own
            held-out rows).
    """

    path: Path
    paths: list[str]
    logits: np.ndarray
    targets: np.ndarray
    fold: np.ndarray
    class_names: list[str]
    temperatures: np.ndarray

    def probs(self) -> np.ndarray:
        """``(N, K) float32`` ``softmax(logits / T_k)`` with each row's fold temperature,
        exactly as ``oof.csv`` holds them."""
        out = np.empty(self.logits.shape, dtype=np.float32)
        for k in np.unique(self.fold):
            rows = self.fold == k
            out[rows] = softmax(self.logits[rows], float(self.temperatures[int(k) - 1]))
        return out


def read_oof_logits(run_dir: str | os.PathLike[str]) -> OutOfFold:
    """Read the ``oof_logits.npz`` of a ``babyemo train --folds K`` run (without pickle).

    Args:
        run_dir: The run folder.

    Returns:
        Its :class:`OutOfFold`.

    Raises:
        DataError: The file is missing (an unfinished run) or malformed: arrays of
            inconsistent shapes, a fold without a temperature, a target outside the
            classes, a temperature that is not positive.
    """
    run_dir = Path(run_dir)
    path = run_dir / "oof_logits.npz"
    if not path.is_file():
        raise DataError(f"{run_dir} has no out-of-fold predictions ({path.name}): the folds "
                        "run did not finish, or the folder is not one.",
                        f"run or finish it with `babyemo train --folds K --out {run_dir}` "
                        "(add --resume to continue an unfinished one)")
    try:
        with np.load(path, allow_pickle=False) as z:
            oof = OutOfFold(
                path=path, paths=[str(p) for p in z["paths"]],
                logits=np.asarray(z["logits"], dtype=np.float64),
                targets=np.asarray(z["targets"], dtype=np.int64),
                fold=np.asarray(z["fold"], dtype=np.int64),
                class_names=[str(c) for c in z["class_names"]],
                temperatures=np.asarray(z["temperatures"], dtype=np.float64))
        n, k = len(oof.paths), len(oof.class_names)
        if oof.logits.shape != (n, k) or oof.fold.shape != (n,) or oof.targets.shape != (n,):
            raise ValueError(f"logits {oof.logits.shape}, folds {oof.fold.shape} and targets "
                             f"{oof.targets.shape} for {n} paths and {k} classes")
        if n and (oof.fold.min() < 1 or oof.fold.max() > oof.temperatures.size):
            raise ValueError(f"folds {oof.fold.min()}..{oof.fold.max()} for "
                             f"{oof.temperatures.size} temperatures")
        if n and (oof.targets.min() < 0 or oof.targets.max() >= k):
            raise ValueError(f"targets {oof.targets.min()}..{oof.targets.max()} for {k} classes")
        if not np.all(np.isfinite(oof.temperatures) & (oof.temperatures > 0)):
            raise ValueError(f"temperatures {oof.temperatures.tolist()} are not all > 0")
    except (OSError, ValueError, KeyError, IndexError) as e:
        raise DataError(f"{path} is not readable ({e}).",
                        "run `babyemo train --folds K` again with --overwrite") from e
    return oof


def _write_oof_csv(path: Path, paths: list[str], targets: np.ndarray, probs: np.ndarray,
                   fold_no: np.ndarray, class_names: list[str]) -> None:
    """``oof.csv``: the rows of :class:`babyemo.rows.PredictionWriter` with ``true`` and a
    ``fold`` column."""
    with atomic_open(path, "w", newline="") as stream:
        writer = PredictionWriter(class_names, csv_stream=stream, with_true=True,
                                  extra_columns=["fold"])
        for p, t, pr, k in zip(paths, targets, probs, fold_no, strict=True):
            q = int(pr.argmax())
            writer.write(Prediction(p, class_names[q], float(pr[q]),
                                    tuple(float(v) for v in pr), top_class=class_names[q]),
                         true=class_names[int(t)], extra={"fold": int(k)})
        writer.close()


__all__ = ["CV_FILES", "FoldResult", "FoldsResult", "OutOfFold", "read_oof_logits", "train_folds"]
