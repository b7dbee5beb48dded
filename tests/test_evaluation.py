import csv
import json

import numpy as np
import pytest
from PIL import Image

from babyemo.config import TrainConfig
from babyemo.errors import DataError, RegistryError
from babyemo.evaluation import evaluate
from babyemo.training import train


@pytest.fixture
def trained(prepared, tiny_arch, tmp_path):
    return train(TrainConfig(data=str(prepared), arch=tiny_arch, image_size=None, epochs=3,
                             batch_size=8, lr=0.05, precision="fp32", out=str(tmp_path / "run"),
                             name="tiny-eval"))


def test_evaluate_writes_reports(trained, prepared, tmp_path):
    report = evaluate(trained.best_checkpoint, data=prepared, split="test", out=tmp_path / "ev",
                      precision="fp32", bootstrap=200)
    lo, hi = report.metrics["ci95"]["macro_f1"]
    assert 0 <= lo <= report.metrics["macro_f1"] <= hi <= 1
    n = report.metrics["n"]
    assert n == len(report.y_true) == report.confusion.sum() > 0
    assert report.confusion.shape == (3, 3)
    # rows = true class
    assert list(report.confusion.sum(1)) == [int((report.y_true == k).sum()) for k in range(3)]
    assert np.allclose(report.probs.sum(1), 1, atol=1e-4)
    saved = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert saved["macro_f1"] == pytest.approx(report.metrics["macro_f1"])
    rows = list(csv.reader((tmp_path / "ev" / "confusion.csv").open()))
    assert rows[0][1:] == ["angry", "crying", "happy"]
    assert sum(int(v) for r in rows[1:] for v in r[1:]) == n
    for name in ("confusion.png", "misclassified.png"):
        with Image.open(tmp_path / "ev" / name) as im:
            assert im.width > 100
    preds = list(csv.DictReader((tmp_path / "ev" / "predictions.csv").open()))
    assert len(preds) == n and {"path", "true", "pred", "prob_happy"} <= preds[0].keys()


def test_evaluate_by_model_name_and_default(trained, prepared):
    by_name = evaluate(model="tiny-eval", data=prepared, split="val", precision="fp32")
    default = evaluate(data=prepared, split="val", precision="fp32")
    assert by_name.metrics == default.metrics
    with pytest.raises(RegistryError, match="Unknown trained model"):
        evaluate(model="tiny-evl", data=prepared)


def test_labels_not_in_checkpoint_are_an_error(trained, prepared, tmp_path):
    bad = tmp_path / "bad"
    bad.mkdir()
    text = prepared.read_text().replace(",happy,", ",sleepy,")
    (bad / "manifest.csv").write_text(text)
    info = json.loads((prepared.parent / "dataset.json").read_text())
    (bad / "dataset.json").write_text(json.dumps(info))
    with pytest.raises(DataError, match="sleepy"):
        evaluate(trained.best_checkpoint, data=bad / "manifest.csv", split="all")
