"""A small prepared dataset and a fabricated ``babyemo train --folds K`` run for the label
audit tests (no training: ``folds.json`` and ``oof_logits.npz`` are written directly, in
the format of :mod:`babyemo.evaluation.crossval`)."""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from babyemo.data.preparation.manifest import read_manifest, write_manifest
from tests.data.helpers import make_distinct_folder

CLASSES = ("angry", "crying", "happy")
MISLABELLED = {  # given label -> the class the out-of-fold logits favour, and how strongly
    "angry/angry_003.png": ("happy", 9.0),
    "crying/crying_004.png": ("angry", 8.0),
    "happy/happy_005.png": ("crying", 7.0),
}
"""Non-test rows whose logits strongly favour another class (most suspect first)."""
DUP_TRAIN = ("angry/angry_000.png", "happy/dup_of_angry_000.png")
"""A byte-identical pair with conflicting labels, both audited (train split)."""
DUP_TEST = ("crying/crying_001.png", "happy/dup_of_crying_001.png")
"""A byte-identical pair with conflicting labels, both in the test split."""
TEST_ROWS = ("angry/angry_009.png", "crying/crying_009.png", "happy/happy_009.png",
             "angry/angry_010.png") + DUP_TEST
TEMPERATURES = (1.0, 1.5)


@dataclass
class FoldsRun:
    """A fabricated folds run on a prepared manifest."""

    manifest: Path
    run: Path
    root: Path
    paths: list[str]
    logits: np.ndarray
    fold: np.ndarray
    labels: dict[str, str] = field(default_factory=dict)

    def probs(self, path: str) -> np.ndarray:
        """``softmax(logits / T_fold)`` of one row, float64."""
        i = self.paths.index(path)
        z = self.logits[i].astype(np.float64) / TEMPERATURES[int(self.fold[i]) - 1]
        e = np.exp(z - z.max())
        return e / e.sum()


def make_manifest(tmp_path: Path, per_class: int = 12) -> Path:
    """Prepare distinct pattern images (+ two conflicting byte-identical copies) with fixed
    splits: :data:`TEST_ROWS` test, every fourth other row val, the rest train."""
    from babyemo.data.preparation.prepare import prepare

    root = make_distinct_folder(tmp_path / "images", per_class=per_class)
    for src, dst in (DUP_TRAIN, DUP_TEST):
        shutil.copyfile(root / src, root / dst)
    prepared = prepare(root, out=tmp_path / "prepared", seed=0).manifest
    rows = []
    for i, row in enumerate(prepared.rows):
        split = ("test" if row.path in TEST_ROWS
                 else "val" if i % 4 == 3 and row.path not in DUP_TRAIN else "train")
        rows.append(replace(row, split=split))
    return write_manifest(rows, tmp_path / "prepared", info=prepared.info)


def write_folds_run(manifest_path: Path, run: Path, *, drop: int = 0,
                    extra: bool = False) -> FoldsRun:
    """``folds.json`` + ``oof_logits.npz`` for the non-test rows of ``manifest_path``
    (rows in reverse manifest order, 2 folds with :data:`TEMPERATURES`): the given label
    gets logit 4 (plus small noise), except :data:`MISLABELLED` rows whose favoured class
    gets their strength. ``drop``: leave out the last rows; ``extra``: add a foreign row."""
    manifest = read_manifest(manifest_path)
    rng = np.random.default_rng(0)
    rows = [r for r in manifest.rows if r.split != "test"][::-1]
    if drop:
        rows = rows[:-drop]
    paths = [r.path for r in rows]
    classes = list(CLASSES)
    logits = rng.normal(0.0, 0.2, (len(rows), len(classes))).astype(np.float32)
    for i, r in enumerate(rows):
        favoured, strength = MISLABELLED.get(r.path, (r.label, 4.0))
        logits[i, classes.index(favoured)] += strength
    fold = np.array([1 + i % 2 for i in range(len(rows))], dtype=np.int64)
    targets = np.array([classes.index(r.label) for r in rows], dtype=np.int64)
    if extra:
        paths.append("elsewhere/x.png")
        logits = np.vstack([logits, np.zeros((1, 3), np.float32)])
        fold = np.append(fold, 1)
        targets = np.append(targets, 0)
    run.mkdir(parents=True, exist_ok=True)
    (run / "folds.json").write_text(json.dumps({
        "format": "babyemo-folds", "format_version": 1, "folds": 2, "seed": 0, "config": {},
        "manifest": str(manifest.path.resolve()), "manifest_sha256": manifest.sha256(),
        "fold_of": {p: int(k) for p, k in zip(paths, fold, strict=True)},
        "completed": {"1": {}, "2": {}}}))
    np.savez(run / "oof_logits.npz", paths=np.array(paths), logits=logits, targets=targets,
             fold=fold, class_names=np.array(classes),
             temperatures=np.array(TEMPERATURES, dtype=np.float64))
    return FoldsRun(manifest=manifest.path, run=run, root=manifest.root, paths=paths,
                    logits=logits, fold=fold, labels={r.path: r.label for r in manifest.rows})
