"""Real-data tests of the training, evaluation and prediction pipeline.

They read ``../shared/data`` in place (skipped when absent, failing in CI when absent) and
use small fixed subsets and few epochs: they check real outcomes on real photos, not
accuracy targets (those are in docs/results.md).
"""

from __future__ import annotations

import csv
import math

import pytest

from babyemo.config import TrainConfig
from babyemo.data.preparation.manifest import read_manifest
from babyemo.evaluation import evaluate
from babyemo.prediction import Predictor, predict_to_files
from babyemo.runtime import Runtime
from babyemo.training import train
from tests.conftest import subset_manifest

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def infant_subset(infant_dir, tmp_path_factory):
    """The real infant set prepared in full, then cut to 40/12/12 images per class and split."""
    home = tmp_path_factory.mktemp("home")
    mp = pytest.MonkeyPatch()
    mp.setenv("BABYEMO_HOME", str(home))
    path = subset_manifest(infant_dir, home, {"train": 40, "val": 12, "test": 12})
    mp.undo()
    return path


def test_train_evaluate_on_real_infant_subset(infant_subset, tmp_path):
    manifest = read_manifest(infant_subset)
    assert manifest.class_names == ["angry", "crying", "happy"]
    assert len(manifest.rows_for("train")) == 120
    result = train(TrainConfig(data=str(infant_subset), arch="custom_resnet", image_size=64,
                               epochs=2, batch_size=16, out=str(tmp_path / "run"), seed=0))
    assert [r["epoch"] for r in result.history] == [1, 2]
    for row in result.history:
        assert math.isfinite(row["train_loss"]) and 0 <= row["val_macro_f1"] <= 1
    report = evaluate(result.best_checkpoint, data=infant_subset, split="test",
                      out=tmp_path / "eval")
    assert report.metrics["n"] == 36 and report.confusion.sum() == 36
    assert list(report.confusion.sum(1)) == [12, 12, 12]  # rows = true class
    assert (tmp_path / "eval" / "confusion.png").stat().st_size > 1000
    # the checkpoint alone rebuilds the preprocessing used in training
    assert report.metrics["n"] == len(report.paths)


def test_predict_over_real_baby_photos(infant_subset, baby_photos_dir, tmp_path):
    result = train(TrainConfig(data=str(infant_subset), arch="skip_cnn", image_size=48,
                               epochs=1, batch_size=16, out=str(tmp_path / "run")))
    out = tmp_path / "pred.csv"
    summary = predict_to_files(
        [baby_photos_dir],
        Predictor(result.best_checkpoint, runtime=Runtime(batch_size=32)),
        csv_out=out,
    )
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    n_files = sum(1 for p in baby_photos_dir.iterdir() if p.is_file())
    assert len(rows) == n_files == summary.n_files == 300
    assert summary.n_failed == sum(bool(r["error"]) for r in rows) == 0
    for r in rows:
        assert r["label"] in ("angry", "crying", "happy")
        total = sum(float(r[f"prob_{c}"]) for c in ("angry", "crying", "happy"))
        assert abs(total - 1) < 2e-3


def test_packaged_model_predicts_real_infant_photos_with_no_training(
    infant_subset, shared_data, tmp_path, monkeypatch
):
    """`babyemo predict PHOTOS` right after install: the packaged model, faces found by
    YuNet (model file from ../shared/models), on 36 held-out test photos."""
    from typer.testing import CliRunner

    from babyemo.cli import app
    from babyemo.models import store

    if store.PACKAGED_MODEL not in store.packaged_models():
        pytest.fail("the packaged model is missing from src/babyemo/models/weights")
    monkeypatch.setenv("BABYEMO_MODELS", str(shared_data.parent / "models"))
    manifest = read_manifest(infant_subset)
    rows = manifest.rows_for("test")
    out = tmp_path / "pred.csv"
    result = CliRunner().invoke(
        app,
        [
            "predict",
            *[str(manifest.resolve(r)) for r in rows],
            "--csv",
            str(out),
            "--no-face-fallback",
            "full",
        ],
    )
    assert result.exit_code == 0, result.output
    pred = list(csv.DictReader(out.open(encoding="utf-8")))
    truth = {str(manifest.resolve(r)): r.label for r in rows}
    first = {}
    for r in pred:  # one row per face: keep each photo's first face (face_index 0)
        first.setdefault(r["path"], r)
    assert set(first) == set(truth) and all(not r["error"] for r in first.values())
    correct = sum(first[p]["label"] == truth[p] for p in truth)
    assert correct / len(truth) >= 0.5  # test accuracy 0.747 on all 154 (results.md)
