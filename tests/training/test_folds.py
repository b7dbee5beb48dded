"""K-fold cross-validation (issue 15): folds that keep duplicate groups together, one
out-of-fold prediction per non-test image, test rows untouched, resume, refusals."""

from __future__ import annotations

import csv
import json
import shutil
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest

from babyemo.checkpoint import load_checkpoint
from babyemo.config import TrainConfig
from babyemo.data.preparation.manifest import read_manifest
from babyemo.errors import ConfigError
from tests.conftest import subset_manifest


def _images(root: Path, per_class: int = 8) -> Path:
    """Random block patterns tinted by class: learnable, and unlike
    :func:`tests.conftest.make_imagefolder`'s not near-duplicates of each other by dHash."""
    from PIL import Image

    rng = np.random.default_rng(0)
    tints = {"angry": (1.0, 0.3, 0.3), "crying": (0.3, 0.3, 1.0), "happy": (0.3, 1.0, 0.3)}
    for cls, tint in tints.items():
        (root / cls).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            grid = rng.integers(0, 256, (6, 6)).astype(np.float64)
            rgb = np.stack([grid * t for t in tint], axis=-1).astype(np.uint8)
            Image.fromarray(rgb).resize((32, 32), Image.Resampling.NEAREST).save(
                root / cls / f"{cls}_{i:03d}.png")
    return root


def _dataset(tmp_path: Path) -> Path:
    """3 classes x 8 images, two byte-identical pairs and one subject of three images."""
    from babyemo.data.preparation.prepare import prepare

    root = _images(tmp_path / "images")
    for c in ("angry", "happy"):
        shutil.copy(root / c / f"{c}_000.png", root / c / f"{c}_dup.png")
    meta = tmp_path / "meta.csv"
    meta.write_text("path,subject_id\n" + "".join(f"crying/crying_00{i}.png,s1\n"
                                                  for i in (1, 2, 3)))
    return prepare(root, out=tmp_path / "prepared", split=(0.6, 0.2, 0.2), seed=0,
                   metadata=meta).manifest_path


def _config(manifest: Path, arch: str, out: Path, **kw) -> TrainConfig:
    return TrainConfig(**{"data": str(manifest), "arch": arch, "epochs": 1, "batch_size": 8,
                          "precision": "fp32", "device": "cpu", "num_workers": 0,
                          "out": str(out), **kw})


def _groups_of_non_test(manifest) -> list[list[str]]:
    """The non-test paths of each group of two or more (as the folds must keep them)."""
    from babyemo.training.folds import fold_groups

    ids, _ = fold_groups(manifest)
    members: dict[int, list[str]] = defaultdict(list)
    for row, g in zip(manifest.rows, ids, strict=True):
        if row.split != "test":
            members[g].append(row.path)
    return [m for m in members.values() if len(m) > 1]


def test_assign_folds_keeps_groups_stratifies_and_is_seeded(tmp_path):
    from babyemo.training.folds import assign_folds

    manifest = read_manifest(_dataset(tmp_path))
    folds, _ = assign_folds(manifest, 3, seed=0)
    fold_of = dict(zip((r.path for r in manifest.rows), folds, strict=True))
    for row, k in zip(manifest.rows, folds, strict=True):
        assert (k is None) == (row.split == "test")
    assert {k for k in folds if k is not None} == {1, 2, 3}
    groups = _groups_of_non_test(manifest)
    assert groups, "the dataset should have a duplicate or subject group outside test"
    for members in groups:
        assert len({fold_of[p] for p in members}) == 1, members
    for k in (1, 2, 3):  # stratified: every class in every fold
        assert {r.label for r, f in zip(manifest.rows, folds, strict=True) if f == k} == {
            "angry", "crying", "happy"}
    assert assign_folds(manifest, 3, seed=0)[0] == folds
    assert any(assign_folds(manifest, 3, seed=s)[0] != folds for s in (1, 2, 3))


@pytest.mark.parametrize("folds", [1, 0, -2, 5])
def test_impossible_fold_counts_are_refused_before_any_work(tiny_arch, tmp_path, folds):
    from babyemo.evaluation.crossval import train_folds
    from babyemo.training.folds import assign_folds

    manifest = _dataset(tmp_path)
    out = tmp_path / "cv"
    with pytest.raises(ConfigError) as info:
        train_folds(_config(manifest, tiny_arch, out), folds)
    assert info.value.hint and "--folds" in info.value.hint
    if folds == 5:  # crying has 4 groups outside test (a subject of three images is one)
        assert "'crying' has 4" in info.value.message and "--folds 4" in info.value.hint
        assert len(set(assign_folds(read_manifest(manifest), 4, seed=0)[0]) - {None}) == 4
    assert not out.exists()


def test_train_on_train_val_and_bad_resumes_are_refused(prepared, tiny_arch, tmp_path):
    from babyemo.evaluation.crossval import train_folds

    out = tmp_path / "cv"
    with pytest.raises(ConfigError, match="train,val"):
        train_folds(_config(prepared, tiny_arch, out, train_splits="train,val"), 2)
    with pytest.raises(ConfigError, match="folds.json"):
        train_folds(_config(prepared, tiny_arch, out, resume=True), 2)
    out.mkdir()
    (out / "x.txt").write_text("x")
    with pytest.raises(ConfigError, match="not empty"):
        train_folds(_config(prepared, tiny_arch, out), 2)


def test_train_folds_predicts_every_non_test_image_once(tmp_path, tiny_arch):
    from babyemo.evaluation.crossval import train_folds
    from babyemo.inference import probabilities
    from babyemo.models import store

    manifest_path = _dataset(tmp_path)
    manifest = read_manifest(manifest_path)
    out = tmp_path / "cv"
    result = train_folds(_config(manifest_path, tiny_arch, out), 2)

    non_test = [r.path for r in manifest.rows if r.split != "test"]
    test = {r.path for r in manifest.rows if r.split == "test"}
    with open(out / "oof.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert list(rows[0])[:3] == ["path", "true", "label"] and list(rows[0])[-1] == "fold"
    assert [r["path"] for r in rows] == non_test  # each once, in manifest order, no test row
    assert result.n == len(non_test) and not test & {r["path"] for r in rows}
    labels = {r.path: r.label for r in manifest.rows}
    assert all(r["true"] == labels[r["path"]] for r in rows)

    plan = json.loads((out / "folds.json").read_text())
    assert plan["manifest"] == str(manifest_path.resolve())
    assert plan["manifest_sha256"] == manifest.sha256() and plan["folds"] == 2
    assert set(plan["fold_of"]) == set(non_test)
    assert all(int(r["fold"]) == plan["fold_of"][r["path"]] for r in rows)
    for members in _groups_of_non_test(manifest):
        assert len({plan["fold_of"][p] for p in members}) == 1

    for k in (1, 2):  # fold k: its rows val, the other non-test rows train, test kept
        fold_manifest = read_manifest(out / "manifests" / f"fold-{k}")
        assert fold_manifest.root == manifest.root
        assert fold_manifest.info["folds"]["parent"] == str(manifest_path.resolve())
        assert fold_manifest.info["folds"]["parent_sha256"] == manifest.sha256()
        for row in fold_manifest.rows:
            want = ("test" if row.path in test
                    else "val" if plan["fold_of"][row.path] == k else "train")
            assert row.split == want
        trained = json.loads((out / f"fold-{k}" / "config.json").read_text())
        n_val = sum(1 for p in non_test if plan["fold_of"][p] == k)
        assert (trained["n_train"], trained["n_val"]) == (len(non_test) - n_val, n_val)
        assert result.per_fold[k - 1].n_val == n_val

    npz = np.load(out / "oof_logits.npz")  # no pickle needed
    assert npz["logits"].shape == (len(non_test), 3) and npz["logits"].dtype == np.float32
    assert npz["paths"].tolist() == non_test and npz["class_names"].tolist() == result.class_names
    assert npz["fold"].tolist() == [int(r["fold"]) for r in rows]
    first = probabilities(npz["logits"][:1], npz["temperatures"][npz["fold"][0] - 1])[0]
    assert [float(rows[0][f"prob_{c}"]) for c in result.class_names] == pytest.approx(
        first.tolist(), abs=1e-4)

    cv = json.loads((out / "cv.json").read_text())
    assert cv["folds"] == 2 and cv["seed"] == 0 and cv["n"] == len(non_test)
    assert cv["manifest_sha256"] == manifest.sha256() and len(cv["per_fold"]) == 2
    assert cv["config"]["epochs"] == 1
    for m in ("accuracy", "balanced_accuracy", "macro_f1"):
        lo, hi = result.ci[m]
        assert lo <= result.metrics[m] <= hi
        assert cv["oof"][m] == result.metrics[m] and cv["oof"]["ci95"][m] == [lo, hi]
    assert not [n for n in store.list_trained() if "fold" in n]  # unregistered without a name


def test_an_interrupted_folds_run_resumes_where_it_stopped(tmp_path, tiny_arch, monkeypatch):
    from typer.testing import CliRunner

    import babyemo.training.loop as loop
    from babyemo.cli import app
    from babyemo.evaluation.crossval import train_folds
    from babyemo.models import store

    manifest_path = _dataset(tmp_path)
    out = tmp_path / "cv"
    real = loop.write_history

    def interrupted(run_dir, history, class_names):  # fold 2 stops after its epoch 1
        real(run_dir, history, class_names)
        if Path(run_dir).name == "fold-2" and len(history) == 1:
            raise KeyboardInterrupt

    monkeypatch.setattr(loop, "write_history", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_folds(_config(manifest_path, tiny_arch, out, epochs=2, name="cvx"), 2)
    monkeypatch.setattr(loop, "write_history", real)
    assert list(json.loads((out / "folds.json").read_text())["completed"]) == ["1"]
    fold1 = (out / "fold-1" / "best.pt").stat().st_mtime_ns
    epoch1 = (out / "fold-2" / "metrics.csv").read_text().splitlines()[1]

    result = CliRunner().invoke(app, ["train", "--folds", "2", "--resume", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "fold 1/2" in result.output and "trained earlier" in result.output
    assert "out-of-fold (n=" in result.output and f"run folder: {out}" in result.output
    assert (out / "fold-1" / "best.pt").stat().st_mtime_ns == fold1  # skipped, not retrained
    history = (out / "fold-2" / "metrics.csv").read_text().splitlines()
    assert len(history) == 3 and history[1] == epoch1  # continued from its last.pt
    assert list(json.loads((out / "folds.json").read_text())["completed"]) == ["1", "2"]
    assert {"cvx-fold-1", "cvx-fold-2"} <= set(store.list_trained())
    for k in (1, 2):  # each fold keeps its last epoch, never one chosen on its own fold
        assert load_checkpoint(out / f"fold-{k}" / "best.pt").metrics["epoch"] == 2
    refused = CliRunner().invoke(app, ["train", "--folds", "2", "--select", "best",
                                       "--out", str(tmp_path / "cv-best")])
    assert refused.exit_code == 2 and "last epoch" in refused.output
    again = CliRunner().invoke(app, ["train", "--folds", "3", "--resume", "--out", str(out)])
    assert again.exit_code == 1 and "2-fold run" in again.output


def test_folds_on_a_real_infant_subset(infant_dir, tiny_arch, tmp_path):
    """Real photos (their SHA-256/dHash groups): 2 folds x 1 epoch of 42 images."""
    from babyemo.evaluation.crossval import train_folds

    manifest_path = subset_manifest(infant_dir, tmp_path, {"train": 10, "val": 4})
    manifest = read_manifest(manifest_path)
    result = train_folds(_config(manifest_path, tiny_arch, tmp_path / "cv"), 2)
    assert result.n == len(manifest.rows) == 42
    assert sum(f.n_val for f in result.per_fold) == 42 and all(f.n_val for f in result.per_fold)
    with open(tmp_path / "cv" / "oof.csv", newline="") as f:
        assert sorted(r["path"] for r in csv.DictReader(f)) == sorted(r.path for r in
                                                                      manifest.rows)
    assert 0 <= result.ci["macro_f1"][0] <= result.metrics["macro_f1"] <= result.ci[
        "macro_f1"][1] <= 1


def _exclusions(path: Path, rows: list[tuple[str, str]]) -> Path:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label"])
        writer.writerows(rows)
    return path


def test_exclude_train_leaves_images_out_of_training_but_scores_them(tmp_path, tiny_arch):
    """Issue 19: the same folds with and without exclusions; excluded images are held out
    and predicted by their own fold, never trained on by another."""
    from babyemo.evaluation.crossval import train_folds
    from babyemo.training.folds import assign_folds

    manifest_path = _dataset(tmp_path)
    manifest = read_manifest(manifest_path)
    non_test = [r for r in manifest.rows if r.split != "test"]
    excluded = [non_test[0].path, non_test[-1].path]
    review = _exclusions(tmp_path / "review.csv", [(excluded[0], "exclude"),
                                                   (non_test[1].path, non_test[1].label),
                                                   (excluded[1], "exclude")])
    out = tmp_path / "cv"
    result = train_folds(_config(manifest_path, tiny_arch, out), 2, exclude_train=review)

    plan = json.loads((out / "folds.json").read_text())
    fold_per_row, _ = assign_folds(manifest, 2, 0)  # the folds a run without exclusions gets
    assert plan["fold_of"] == {r.path: k for r, k in zip(manifest.rows, fold_per_row,
                                                         strict=True) if k is not None}
    assert plan["exclude_train"] == excluded  # manifest order; the relabel row is not one
    assert plan["exclude_source"]["path"] == str(review.resolve())
    for k in (1, 2):
        rows = {r.path: r.split for r in read_manifest(out / "manifests" / f"fold-{k}").rows}
        for p in excluded:
            if plan["fold_of"][p] == k:
                assert rows[p] == "val"  # held out by its own fold
            else:
                assert p not in rows  # never trained on
        trained = json.loads((out / f"fold-{k}" / "config.json").read_text())
        n_val = sum(1 for r in non_test if plan["fold_of"][r.path] == k)
        n_out = sum(1 for p in excluded if plan["fold_of"][p] != k)
        assert (trained["n_train"], trained["n_val"]) == (len(non_test) - n_val - n_out, n_val)
    with open(out / "oof.csv", newline="") as f:
        assert [r["path"] for r in csv.DictReader(f)] == [r.path for r in non_test]
    cv = json.loads((out / "cv.json").read_text())
    assert cv["exclude_train"] == 2 == result.exclude_train and cv["n"] == len(non_test)

    other = _exclusions(tmp_path / "other.csv", [(non_test[2].path, "exclude")])
    with pytest.raises(ConfigError, match="not the exclusion file"):
        train_folds(_config(manifest_path, tiny_arch, out, resume=True), 2, exclude_train=other)


def test_bad_exclusion_files_are_refused_before_training(tmp_path):
    from babyemo.errors import DataError
    from babyemo.training.folds import read_exclusions

    manifest = read_manifest(_dataset(tmp_path))
    test_row = next(r for r in manifest.rows if r.split == "test")
    train_row = next(r for r in manifest.rows if r.split == "train")
    plain = tmp_path / "plain.csv"  # a path column only: every listed row
    plain.write_text(f"path\n{train_row.path}\n")
    assert read_exclusions(plain, manifest)[0] == [train_row.path]
    cases = {"test image": [(test_row.path, "exclude")],
             "not in": [("nowhere/x.png", "exclude")],
             "excludes nothing": [(train_row.path, "happy")]}
    for match, rows in cases.items():
        with pytest.raises(DataError, match=match):
            read_exclusions(_exclusions(tmp_path / "bad.csv", rows), manifest)
    (tmp_path / "nopath.csv").write_text("file,label\na.png,exclude\n")
    with pytest.raises(DataError, match="no path column"):
        read_exclusions(tmp_path / "nopath.csv", manifest)
    with pytest.raises(DataError, match="Cannot read"):
        read_exclusions(tmp_path / "missing.csv", manifest)


def test_exclude_train_needs_folds_on_the_command_line(tmp_path):
    from typer.testing import CliRunner

    from babyemo.cli import app

    review = _exclusions(tmp_path / "review.csv", [("a.png", "exclude")])
    result = CliRunner().invoke(app, ["train", "--exclude-train", str(review)])
    assert result.exit_code == 2 and "data relabel" in result.output
