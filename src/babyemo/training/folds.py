"""K-fold cross-validation, the training side: which images form each fold, the fold
manifests, one training run per fold (resumable) and each fold's out-of-fold logits.

The non-test rows of a manifest (its ``train`` and ``val`` splits together) are split into
``K`` folds by scikit-learn's ``StratifiedGroupKFold(n_splits=K, shuffle=True,
random_state=seed)``: stratified by label, and grouped exactly as ``data prepare`` groups
its splits (:func:`fold_groups`: byte-identical copies, near-duplicates by dHash at the
manifest's own distance, and the images of one ``subject_id`` of its ``metadata.csv``), so
no group spans two folds. Fold ``k`` is trained by :func:`babyemo.training.train` on a
derived manifest whose fold-``k`` rows are ``val`` and the other non-test rows ``train``;
``test`` rows stay ``test`` and are never read. Its ``val`` is therefore its out-of-fold
part: its temperature is fitted on it, and its predictions there are the fold's
out-of-fold predictions. ``best.pt`` is the last epoch (``select="last"``), not the epoch
with the best score on that part: choosing the epoch on the images it is then scored on
made the out-of-fold macro-F1 of the default recipe optimistic by 0.024 (5 folds of
infant-emotions, docs/recipes.md).

A folds run folder holds::

    folds.json                  the plan: parent manifest (path, SHA-256), K, seed, the
                                configuration, each image's fold, the completed folds
    manifests/fold-k/           the derived manifest of fold k (manifest.csv, dataset.json
                                recording the parent and the fold, metadata.csv if any)
    fold-k/                     fold k's training run (best.pt, last.pt, metrics.csv, ...)

and, written by :func:`babyemo.evaluation.crossval.train_folds` (which runs
:func:`run_folds`), ``oof.csv``, ``oof_logits.npz`` and ``cv.json``.

Resuming (``config.resume`` with ``config.out`` the run folder) skips completed folds,
continues an unfinished fold from its ``last.pt`` and starts the others.

``exclude_train`` (``train --folds K --exclude-train FILE``) leaves listed images out of
every fold's *training* part while keeping the folds themselves: each is still held out by
its own fold and predicted there. Two runs with the same seed, one with and one without
exclusions, therefore score the same images by the same folds, and their out-of-fold
predictions compare pairwise (``babyemo compare``): this is how cleaning the labels found by
``babyemo data audit`` is measured without editing a validation or test label.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as _dt
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from babyemo.checkpoint import load_checkpoint
from babyemo.config import EpochSelection, TrainConfig
from babyemo.data.loading.folders import check_outputs
from babyemo.data.preparation.lookup import manifest_for_training
from babyemo.data.preparation.manifest import (
    MANIFEST_FILE,
    METADATA_FILE,
    Manifest,
    ManifestRow,
    new_info,
    now_iso,
    read_manifest,
    write_manifest,
)
from babyemo.data.preparation.metadata import read_metadata, subject_groups
from babyemo.data.preparation.relabel import EXCLUDE
from babyemo.data.preparation.split import duplicate_ids
from babyemo.errors import ConfigError, DataError, ManifestError
from babyemo.fs import atomic_write_bytes, atomic_write_text, sha256_file
from babyemo.inference import InferenceModel, checkpoint_dataset
from babyemo.models import store
from babyemo.runtime import Runtime
from babyemo.training.loop import TrainResult, train
from babyemo.training.resume import resumed_config

log = logging.getLogger(__name__)

FOLDS_FILE = "folds.json"
"""The plan of a folds run (:class:`FoldPlan`)."""
FOLDS_FORMAT = "babyemo-folds"
FOLDS_VERSION = 1
MANIFESTS_DIR = "manifests"
"""Subfolder of a folds run holding the derived manifests, one folder per fold."""
OOF_SPLIT = "val"
"""The split of a fold manifest that holds the fold's held-out (out-of-fold) rows."""


def fold_groups(manifest: Manifest) -> tuple[list[int], int]:
    """The groups no fold may split, as ``data prepare`` and ``data split`` group rows.

    Byte-identical images (``sha256``), near-duplicates (``dhash`` within the manifest's
    recorded ``near_duplicate_distance``, else the distance chosen from the data), and the
    images of one ``subject_id`` of the manifest's ``metadata.csv`` (see
    :func:`babyemo.data.preparation.split.duplicate_ids`).

    Args:
        manifest: The dataset (every row, test included: groups are found over all).

    Returns:
        ``(group id per row, near-duplicate distance used)``.

    Raises:
        ManifestError: A row without a valid ``dhash`` (:meth:`Manifest.dhashes`).
    """
    hashes = manifest.dhashes()
    extra: list[list[int]] = []
    meta_file = manifest.metadata_path()
    if meta_file is not None:
        _, meta_rows = read_metadata(meta_file)
        extra = subject_groups([r.path for r in manifest.rows], meta_rows)
    distance = manifest.info.get("near_duplicate_distance")
    return duplicate_ids([r.sha256 for r in manifest.rows], hashes, extra,
                         distance if isinstance(distance, int) else None)


def check_folds(folds: Any, labels: Sequence[str], groups: Sequence[int]) -> None:
    """Refuse a number of folds the data cannot fill.

    Args:
        folds: ``K``.
        labels: Label of each non-test row.
        groups: Group id of each non-test row.

    Raises:
        ConfigError: ``K`` is not an int >= 2, or exceeds the number of groups of the
            smallest class (some fold would hold none of its images).
    """
    if not isinstance(folds, int) or isinstance(folds, bool) or folds < 2:
        raise ConfigError(f"Cross-validation needs at least 2 folds. Got {folds!r}.",
                          "use e.g. --folds 5")
    per_class: dict[str, set[int]] = {}
    for label, group in zip(labels, groups, strict=True):
        per_class.setdefault(label, set()).add(group)
    if not per_class:
        raise ConfigError("The manifest has no rows outside its test split to cross-validate.",
                          "prepare it with train and val splits")
    rarest, n = min(((c, len(g)) for c, g in per_class.items()), key=lambda cn: (cn[1], cn[0]))
    if folds > n:
        raise ConfigError(f"{folds} folds need at least {folds} groups of images of every "
                          f"class outside the test split; '{rarest}' has {n}.",
                          f"use --folds {n} or fewer" if n >= 2
                          else f"add images of '{rarest}' (duplicates count as one)")


def assign_folds(manifest: Manifest, folds: int, seed: int) -> tuple[list[int | None], int]:
    """The fold (1..K) of each row; ``None`` for ``test`` rows.

    ``StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed)`` over the
    non-test rows, labels as strata and :func:`fold_groups` as groups: each group lies in
    one fold, and each fold's class mix is close to the whole's. A pure function of the
    manifest's rows, ``folds`` and ``seed``.

    Args:
        manifest: The dataset.
        folds: ``K`` (see :func:`check_folds`).
        seed: The shuffle's seed.

    Returns:
        ``(fold per row, near-duplicate distance used)``.

    Raises:
        ConfigError: See :func:`check_folds`.
        ManifestError: See :func:`fold_groups`.
    """
    from sklearn.model_selection import StratifiedGroupKFold

    groups, distance = fold_groups(manifest)
    index = [i for i, r in enumerate(manifest.rows) if r.split != "test"]
    labels = [manifest.rows[i].label for i in index]
    held = [groups[i] for i in index]
    check_folds(folds, labels, held)
    out: list[int | None] = [None] * len(manifest.rows)
    splitter = StratifiedGroupKFold(n_splits=folds, shuffle=True, random_state=seed % 2**32)
    for k, (_, held_out) in enumerate(splitter.split(np.zeros(len(index)), labels, held),
                                      start=1):
        for j in held_out:
            out[index[j]] = k
    return out, distance


@dataclass
class FoldPlan:
    """What a folds run does, saved as its ``folds.json`` (read back on resume).

    Attributes:
        run_dir: The folds run folder.
        folds: ``K``.
        seed: Seed of the fold assignment (the configuration's seed).
        manifest: The parent manifest (absolute).
        manifest_sha256: SHA-256 of its bytes when the folds were made.
        config: The configuration (:meth:`TrainConfig.to_dict`, ``data`` the parent).
        fold_of: ``{row path: fold}`` for every non-test row.
        near_duplicate_distance: The dHash distance that grouped near-duplicates.
        completed: ``{fold: summary}`` of the folds whose training finished
            (``best_epoch``, ``best_val_macro_f1``, ``stopped_early``, ``seconds``,
            ``name``).
        created: When the folds were made (UTC, ISO 8601).
        exclude_train: Row paths left out of every fold's training part (still held out
            and predicted by their own fold); see :func:`read_exclusions`.
        exclude_source: ``{"path", "sha256"}`` of the file they came from, or ``{}``.
    """

    run_dir: Path
    folds: int
    seed: int
    manifest: Path
    manifest_sha256: str
    config: dict[str, Any]
    fold_of: dict[str, int]
    near_duplicate_distance: int = 0
    completed: dict[int, dict[str, Any]] = field(default_factory=dict)
    created: str = ""
    exclude_train: list[str] = field(default_factory=list)
    exclude_source: dict[str, str] = field(default_factory=dict)

    def fold_dir(self, k: int) -> Path:
        """Fold ``k``'s training run folder."""
        return self.run_dir / f"fold-{k}"

    def manifest_path(self, k: int) -> Path:
        """Fold ``k``'s derived ``manifest.csv``."""
        return self.run_dir / MANIFESTS_DIR / f"fold-{k}" / MANIFEST_FILE

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (the ``folds.json`` content)."""
        return {"format": FOLDS_FORMAT, "format_version": FOLDS_VERSION, "folds": self.folds,
                "seed": self.seed, "manifest": str(self.manifest),
                "manifest_sha256": self.manifest_sha256, "created": self.created,
                "near_duplicate_distance": self.near_duplicate_distance,
                "config": self.config,
                "completed": {str(k): v for k, v in sorted(self.completed.items())},
                "exclude_train": self.exclude_train, "exclude_source": self.exclude_source,
                "fold_of": self.fold_of}

    def save(self) -> None:
        """Write ``folds.json`` (atomically)."""
        atomic_write_text(self.run_dir / FOLDS_FILE, json.dumps(self.to_dict(), indent=1) + "\n")

    @classmethod
    def load(cls, run_dir: Path) -> FoldPlan:
        """Read a folds run's ``folds.json``.

        Raises:
            ConfigError: No ``folds.json`` there (not a folds run, or one killed before
                its folds were made).
            ManifestError: The file is not a readable plan.
        """
        path = run_dir / FOLDS_FILE
        if not path.is_file():
            raise ConfigError(f"Cannot resume: {path} does not exist.",
                              "pass --out with the folder of the folds run to resume, or "
                              "start it again without --resume")
        try:
            d = json.loads(path.read_text(encoding="utf-8"))
            if d.get("format") != FOLDS_FORMAT or int(d["format_version"]) > FOLDS_VERSION:
                raise ValueError(f"format {d.get('format')!r} {d.get('format_version')!r}")
            return cls(run_dir=run_dir, folds=int(d["folds"]), seed=int(d["seed"]),
                       manifest=Path(d["manifest"]), manifest_sha256=str(d["manifest_sha256"]),
                       config=dict(d["config"]),
                       fold_of={str(p): int(k) for p, k in d["fold_of"].items()},
                       near_duplicate_distance=int(d.get("near_duplicate_distance", 0)),
                       completed={int(k): dict(v) for k, v in d.get("completed", {}).items()},
                       created=str(d.get("created", "")),
                       exclude_train=[str(p) for p in d.get("exclude_train", [])],
                       exclude_source={str(k): str(v)
                                       for k, v in d.get("exclude_source", {}).items()})
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ManifestError(f"{path} is not a readable folds plan ({e}).",
                                "start the folds run again with --overwrite") from e


def fold_manifest_rows(manifest: Manifest, fold_of: dict[str, int], k: int,
                       exclude_train: Sequence[str] = ()) -> list[ManifestRow]:
    """The rows of fold ``k``'s manifest: its rows ``val``, other non-test rows ``train``
    (except those in ``exclude_train``, left out), test rows ``test`` (each a copy; the
    manifest is unchanged)."""
    excluded = set(exclude_train)
    out = []
    for row in manifest.rows:
        split = "test" if row.split == "test" else (OOF_SPLIT if fold_of[row.path] == k
                                                     else "train")
        if split != "train" or row.path not in excluded:
            out.append(dataclasses.replace(row, split=split))
    return out


def read_exclusions(path: str | Path, manifest: Manifest) -> tuple[list[str], dict[str, str]]:
    """The images a review file leaves out of training (``train --folds --exclude-train``).

    The file is a CSV with a ``path`` column (the manifest's paths, as in
    ``label_issues.csv``): with a ``label`` column too (a ``babyemo data relabel`` review
    file), the rows labelled ``exclude`` are taken; without one, every listed row.

    Args:
        path: The CSV.
        manifest: The parent manifest.

    Returns:
        ``(paths in manifest order, {"path", "sha256"} of the file)``.

    Raises:
        DataError: A missing or unreadable file, no ``path`` column, a path not in the
            manifest or of a test image (never trained on anyway), or nothing to exclude.
    """
    file = Path(path).expanduser()
    hint = ("give a CSV with a path column (the manifest's paths), e.g. the top rows of "
            "label_issues.csv, or a review file with label=exclude")
    try:
        with open(file, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            columns = reader.fieldnames or []
            if "path" not in columns:
                raise DataError(f"{file} has no path column.", hint)
            wanted = {row["path"] for row in reader
                      if "label" not in columns or (row.get("label") or "").strip() == EXCLUDE}
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"Cannot read the exclusions {file} ({e}).", hint) from e
    split_of = {r.path: r.split for r in manifest.rows}
    unknown = sorted(p for p in wanted if p not in split_of)
    test = sorted(p for p in wanted if split_of.get(p) == "test")
    if unknown or test:
        raise DataError(f"{file} lists {len(unknown)} image(s) not in {manifest.path} (e.g. "
                        f"{unknown[:2]}) and {len(test)} test image(s) (e.g. {test[:2]}).",
                        "list non-test images of this manifest only (test images are never "
                        "trained on)")
    if not wanted:
        raise DataError(f"{file} excludes nothing.", hint)
    paths = [r.path for r in manifest.rows if r.path in wanted]
    return paths, {"path": str(file.resolve()), "sha256": sha256_file(file)}


def write_fold_manifests(plan: FoldPlan, manifest: Manifest) -> list[Path]:
    """Write the ``K`` derived manifests of ``plan`` under ``run_dir/manifests/``.

    Each ``dataset.json`` is the parent's, with the parent's image ``root`` (absolute), a
    ``folds`` entry (``parent``, ``parent_sha256``, ``folds``, ``fold``, ``seed``,
    ``near_duplicate_distance``) and ``split`` describing the fold; the parent's
    ``metadata.csv`` is copied beside it.

    Returns:
        The ``manifest.csv`` paths, fold 1 first.
    """
    info = dict(manifest.info) or new_info(manifest.name, manifest.root, str(manifest.path),
                                           manifest.class_names)
    meta_file = manifest.metadata_path()
    meta_bytes = meta_file.read_bytes() if meta_file is not None else None
    paths = []
    for k in range(1, plan.folds + 1):
        out_dir = plan.manifest_path(k).parent
        fold_info = {**info, "root": str(manifest.root),
                     "metadata": METADATA_FILE if meta_bytes is not None else None,
                     "split": {"given": False, "folds": plan.folds, "fold": k,
                               "seed": plan.seed, "created": now_iso()},
                     "folds": {"parent": str(plan.manifest),
                               "parent_sha256": plan.manifest_sha256, "folds": plan.folds,
                               "fold": k, "seed": plan.seed,
                               "near_duplicate_distance": plan.near_duplicate_distance}}
        if meta_bytes is not None:
            out_dir.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(out_dir / METADATA_FILE, meta_bytes)
        if plan.exclude_train:
            fold_info["folds"]["exclude_train"] = len(plan.exclude_train)
        paths.append(write_manifest(fold_manifest_rows(manifest, plan.fold_of, k,
                                                       plan.exclude_train), out_dir,
                                    fold_info))
    return paths


def fold_name(config: TrainConfig, run_dir: Path, k: int) -> str:
    """Fold ``k``'s model name: ``NAME-fold-k`` with ``config.name`` (registered), else
    ``<run folder>-fold-k`` (not registered)."""
    return f"{config.name or run_dir.resolve().name}-fold-{k}"


def _default_run_dir(config: TrainConfig, folds: int) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}-{config.arch}-{folds}folds"


def _check_config(config: TrainConfig) -> None:
    if "val" in config.train_splits:
        raise ConfigError("--train-on train,val cannot be cross-validated: each fold trains "
                          "on the other folds and validates on its own, and the test split "
                          "is never trained on.",
                          "drop --train-on (or --folds); train the final model on train,val "
                          "once the recipe is chosen")


def new_plan(config: TrainConfig, folds: int, run_files: Sequence[str] = (),
             exclude_train: str | Path | None = None) -> tuple[FoldPlan, TrainConfig, str]:
    """Check everything, then make the folds: ``folds.json`` and the fold manifests.

    Args:
        config: The configuration (``out``: the run folder, default
            ``runs/<time>-<arch>-<K>folds``; ``data``: the manifest, default the last
            prepared).
        folds: ``K``.
        run_files: The files written beside ``folds.json`` later (checked now).
        exclude_train: A CSV of images to leave out of every fold's training part
            (:func:`read_exclusions`), or ``None``.

    Returns:
        ``(plan, configuration with data and out resolved, why that manifest)``.

    Raises:
        ConfigError: A bad ``K`` or option, a non-empty run folder without ``overwrite``,
            a run folder that is a file or lies in the dataset's image root.
        ManifestError: No or a bad manifest.
        RegistryError: A fold's name (``NAME-fold-k``) names another model.
        DataError: A bad ``exclude_train`` file (see :func:`read_exclusions`).
    """
    _check_config(config)
    run_dir = Path(config.out) if config.out else _default_run_dir(config, folds)
    names = (FOLDS_FILE, *run_files)
    check_outputs(folders={"run folder": run_dir}, folder_files={"run folder": names})
    if run_dir.exists() and any(run_dir.iterdir()) and not config.overwrite:
        raise ConfigError(f"The run folder {run_dir} is not empty.",
                          "pass --overwrite, --resume, or another --out")
    choice = manifest_for_training(config.data)
    manifest = read_manifest(choice.path)
    log.info("Manifest: %s (%s)", manifest.path, choice.source)
    check_outputs(folders={"run folder": run_dir}, scanned=[manifest.root],
                  inputs=[manifest.path])
    fold_per_row, distance = assign_folds(manifest, folds, config.seed)
    excluded, source = (read_exclusions(exclude_train, manifest) if exclude_train is not None
                        else ([], {}))
    config = dataclasses.replace(config, data=str(manifest.path.resolve()), out=str(run_dir),
                                 select=EpochSelection.last)
    for k in range(1, folds + 1):
        store.check_name_free(fold_name(config, run_dir, k),
                              run_dir / f"fold-{k}" / "best.pt")
    run_dir.mkdir(parents=True, exist_ok=True)
    plan = FoldPlan(run_dir=run_dir, folds=folds, seed=config.seed,
                    manifest=manifest.path.resolve(), manifest_sha256=manifest.sha256(),
                    config=config.to_dict(), near_duplicate_distance=distance,
                    fold_of={r.path: k for r, k in zip(manifest.rows, fold_per_row, strict=True)
                             if k is not None},
                    created=now_iso(), exclude_train=excluded, exclude_source=source)
    if excluded:
        log.info("Left out of every fold's training: %d images (%s)", len(excluded),
                 source["path"])
    write_fold_manifests(plan, manifest)
    plan.save()
    return plan, config, choice.source


def resumed_plan(config: TrainConfig, folds: int) -> tuple[FoldPlan, TrainConfig]:
    """Read the plan of the folds run ``config.out`` to continue it.

    The run's configuration is kept; options given with ``resume`` are taken or refused
    as ``babyemo train --resume`` takes them (see
    :func:`babyemo.training.resume.resumed_config`).

    Returns:
        ``(plan, the configuration the run continues with)``.

    Raises:
        ConfigError: No ``config.out``, no ``folds.json`` there, another ``K``, an option
            that conflicts with the run, or other ``epochs`` or ``patience`` (which
            ``train --resume`` of one run allows).
        ManifestError: The parent manifest is gone or changed since the folds were made.
    """
    if not config.out:
        raise ConfigError("--resume needs the folds run folder.",
                          "pass --out with the folder of the folds run to resume")
    run_dir = Path(config.out)
    plan = FoldPlan.load(run_dir)
    if folds != plan.folds:
        raise ConfigError(f"{run_dir} is a {plan.folds}-fold run; --folds {folds} was given.",
                          f"resume it with --folds {plan.folds}, or start a new run with "
                          "another --out")
    if not plan.manifest.is_file():
        raise ManifestError(f"The manifest of the folds run {run_dir} is gone: "
                            f"{plan.manifest}.", "restore it, or start a new folds run")
    manifest = read_manifest(plan.manifest)
    if manifest.sha256() != plan.manifest_sha256:
        raise ManifestError(f"{plan.manifest} changed since the folds of {run_dir} were made.",
                            "start a new folds run (another --out, or --overwrite)")
    config = resumed_config(config, {"config": plan.config, "manifest": str(plan.manifest)},
                            run_dir)
    for name in ("epochs", "patience"):  # every fold of a run trains by one recipe
        if getattr(config, name) != plan.config.get(name):
            raise ConfigError(f"--{name} {getattr(config, name)} differs from the folds run's "
                              f"{plan.config.get(name)}: its folds all train the same way.",
                              f"drop --{name}, or start a new folds run with another --out")
    return plan, config


@dataclass
class FoldRun:
    """One fold of a folds run, trained, with its out-of-fold logits.

    Attributes:
        fold: ``k`` (1-based).
        run_dir: Its training run folder.
        checkpoint: Its ``best.pt``.
        summary: Its entry of :attr:`FoldPlan.completed`.
        skipped: Whether its training had finished in an earlier call (not run again).
        paths: Its held-out rows' paths (relative to the image root), ``(n,)``.
        targets: Their true class indices, ``(n,) int64``.
        logits: ``best.pt``'s logits on them, ``(n, K) float32`` (temperature not applied).
        temperature: ``best.pt``'s temperature (fitted on those rows).
        class_names: Class names in logit order.
        n_train: Images it was trained on.
    """

    fold: int
    run_dir: Path
    checkpoint: Path
    summary: dict[str, Any]
    skipped: bool
    paths: list[str]
    targets: np.ndarray
    logits: np.ndarray
    temperature: float
    class_names: list[str]
    n_train: int = 0


@dataclass
class FoldsRun:
    """The folds of a run, all trained (:func:`run_folds`).

    Attributes:
        plan: The plan (``folds.json``).
        config: The configuration the folds ran with.
        manifest_source: Why that manifest (given, last prepared, or ``"recorded in
            folds.json"`` on resume).
        folds: One :class:`FoldRun` per fold, fold 1 first.
    """

    plan: FoldPlan
    config: TrainConfig
    manifest_source: str
    folds: list[FoldRun]


def _train_fold(plan: FoldPlan, config: TrainConfig, k: int) -> TrainResult:
    """Train fold ``k`` (continued from its ``last.pt`` when there is one)."""
    fold_dir = plan.fold_dir(k)
    resume = (fold_dir / "last.pt").is_file() and config.resume
    fold_config = dataclasses.replace(
        config, data=str(plan.manifest_path(k).resolve()), out=str(fold_dir),
        name=fold_name(config, plan.run_dir, k), resume=resume, overwrite=not resume,
        select=EpochSelection.last)
    log.info("Fold %d/%d: %s %s", k, plan.folds, "resuming" if resume else "training", fold_dir)
    return train(fold_config, register=bool(config.name))


def fold_logits(plan: FoldPlan, config: TrainConfig, k: int, split: str = OOF_SPLIT
                ) -> FoldRun:
    """Fold ``k``'s ``best.pt`` on its held-out rows (or on ``split`` of its manifest, e.g.
    ``test``, which no fold trained on), through the inference seam.

    The fold manifest's ``split`` as the checkpoint sees it at evaluation
    (:func:`babyemo.inference.checkpoint_dataset`: its classes, input and face crops),
    run by an :class:`~babyemo.inference.InferenceModel` on the configuration's device,
    precision, batch size and workers.
    """
    ckpt_path = plan.fold_dir(k) / "best.pt"
    ckpt = load_checkpoint(ckpt_path)
    dataset = checkpoint_dataset(read_manifest(plan.manifest_path(k)), split, ckpt)
    model = InferenceModel(ckpt, Runtime(device=config.device, precision=config.precision,
                                         batch_size=config.batch_size,
                                         workers=config.num_workers))
    what = "out-of-fold" if split == OOF_SPLIT else split
    logits = model.dataset_logits(dataset, what=f"fold {k}/{plan.folds} {what}")
    return FoldRun(fold=k, run_dir=plan.fold_dir(k), checkpoint=ckpt_path,
                   summary=plan.completed.get(k, {}), skipped=False,
                   paths=list(dataset.rel_paths),
                   targets=np.asarray(dataset.targets, dtype=np.int64),
                   logits=np.asarray(logits, dtype=np.float32),
                   temperature=float(model.temperature), class_names=list(model.class_names),
                   n_train=int((ckpt.train or {}).get("n_train", 0)))


def run_folds(config: TrainConfig, folds: int, run_files: Sequence[str] = (),
              exclude_train: str | Path | None = None) -> FoldsRun:
    """Make (or, with ``config.resume``, read) the folds, train each, and get each fold's
    out-of-fold logits.

    Folds finished in an earlier call are skipped (resume); the one interrupted continues
    from its ``last.pt``; each finished fold is recorded in ``folds.json`` at once. Fold
    ``k`` is registered as ``NAME-fold-k`` only when ``config.name`` is given.

    Args:
        config: The training configuration, the same for every fold (``out``: the folds
            run folder; ``train_splits`` must be ``("train",)``).
        folds: ``K`` >= 2.
        run_files: Files the caller writes into the run folder afterwards (checked first).
        exclude_train: Images left out of every fold's training part (a CSV, see
            :func:`read_exclusions`); on resume, the run's own (another file is refused).

    Returns:
        The :class:`FoldsRun`.

    Raises:
        ConfigError: See :func:`new_plan` and :func:`resumed_plan`; and anything
            :func:`babyemo.training.train` raises.
        ManifestError: See :func:`new_plan` and :func:`resumed_plan`.
    """
    _check_config(config)
    if config.resume:
        plan, config = resumed_plan(config, folds)
        source = f"recorded in {FOLDS_FILE}"
        given = Path(exclude_train).expanduser() if exclude_train is not None else None
        if given is not None and (not given.is_file() or sha256_file(given)
                                  != plan.exclude_source.get("sha256")):
            raise ConfigError(f"--exclude-train {exclude_train} is not the exclusion file the "
                              f"folds run {plan.run_dir} was made with.",
                              "drop --exclude-train when resuming (the run keeps its own)")
    else:
        plan, config, source = new_plan(config, folds, run_files, exclude_train)
    skipped = set()
    k = 0
    try:
        for k in range(1, plan.folds + 1):
            if k in plan.completed and (plan.fold_dir(k) / "best.pt").is_file():
                log.info("Fold %d/%d: finished earlier, skipped", k, plan.folds)
                skipped.add(k)
                continue
            result = _train_fold(plan, config, k)
            plan.completed[k] = {
                "best_epoch": result.best_epoch,
                "best_val_macro_f1": result.best_metrics.get("macro_f1"),
                "stopped_early": result.stopped_early, "seconds": result.seconds,
                "name": result.name}
            plan.save()
    except KeyboardInterrupt:
        log.warning("Interrupted in fold %d/%d; continue the folds with `babyemo train "
                    "--folds %d --resume --out %s`.", k, plan.folds, plan.folds, plan.run_dir)
        raise
    runs = []
    for k in range(1, plan.folds + 1):
        fold = fold_logits(plan, config, k)
        fold.skipped = k in skipped
        runs.append(fold)
    return FoldsRun(plan=plan, config=config, manifest_source=source, folds=runs)


__all__ = ["FOLDS_FILE", "MANIFESTS_DIR", "OOF_SPLIT", "FoldPlan", "FoldRun", "FoldsRun",
           "assign_folds", "check_folds", "fold_groups", "fold_logits", "fold_manifest_rows",
           "fold_name", "new_plan", "read_exclusions", "resumed_plan", "run_folds",
           "write_fold_manifests"]
