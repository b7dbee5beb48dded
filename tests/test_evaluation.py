import csv
import json

import numpy as np
import pytest
from PIL import Image

from babyemo.config import TrainConfig
from babyemo.errors import DataError, RegistryError
from babyemo.evaluation import evaluate
from babyemo.runtime import Runtime
from babyemo.training import train


@pytest.fixture
def trained(prepared, tiny_arch, tmp_path):
    return train(TrainConfig(data=str(prepared), arch=tiny_arch, image_size=None, epochs=3,
                             batch_size=8, lr=0.05, precision="fp32", out=str(tmp_path / "run"),
                             name="tiny-eval"))


def test_evaluate_writes_reports(trained, prepared, tmp_path):
    report = evaluate(
        trained.best_checkpoint,
        data=prepared,
        split="test",
        out=tmp_path / "ev",
        bootstrap=200,
        runtime=Runtime(precision="fp32"),
    )
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
    assert len(preds) == n and list(preds[0])[:4] == ["path", "true", "label", "confidence"]
    assert "prob_happy" in preds[0] and preds[0]["error"] == ""  # predict's CSV schema


def test_evaluate_by_model_name_and_default(trained, prepared):
    from babyemo.models import store

    by_name = evaluate(
        model="tiny-eval", data=prepared, split="val", runtime=Runtime(precision="fp32")
    )
    store.set_default("tiny-eval")  # else the packaged model (face crops) is the default
    default = evaluate(data=prepared, split="val", runtime=Runtime(precision="fp32"))
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


# ------------------------------------------------- calibration, slices, label map


def _untrained(tmp_path, tiny_arch, classes, temperature=None):
    """An untrained tiny checkpoint (no training needed to test the bookkeeping)."""
    from tests.conftest import make_checkpoint

    return make_checkpoint(tmp_path / f"{'-'.join(classes)}.pt", tiny_arch, classes, temperature)


def test_probs_use_the_stored_temperature_and_ece_is_reported(prepared, tiny_arch, tmp_path):
    plain = evaluate(
        _untrained(tmp_path, tiny_arch, ("angry", "crying", "happy")),
        data=prepared,
        split="all",
        runtime=Runtime(precision="fp32", workers=0),
    )
    hot = evaluate(
        _untrained(tmp_path / "t", tiny_arch, ("angry", "crying", "happy"), 0.25),
        data=prepared,
        split="all",
        out=tmp_path / "ev",
        runtime=Runtime(precision="fp32", workers=0),
    )
    logits = np.log(plain.probs)  # softmax is shift-invariant: log-probs act as logits
    expected = np.exp(logits / 0.25) / np.exp(logits / 0.25).sum(1, keepdims=True)
    assert np.allclose(hot.probs, expected, atol=1e-4)
    assert np.array_equal(hot.y_pred, plain.y_pred) and hot.metrics == plain.metrics
    cal = hot.calibration
    assert cal["temperature"] == 0.25 and cal["calibrated"] and cal["n_bins"] == 15
    assert cal["ece_before"] == pytest.approx(plain.calibration["ece_after"])
    assert plain.calibration["temperature"] == 1.0 and not plain.calibration["calibrated"]
    saved = json.loads((tmp_path / "ev" / "report.json").read_text())
    assert saved["calibration"]["ece_after"] == pytest.approx(cal["ece_after"])
    assert len(saved["calibration"]["reliability"]["after"]["count"]) == 15
    with Image.open(tmp_path / "ev" / "reliability.png") as im:
        assert im.width > 300


def test_slices_from_metadata_csv_and_from_the_manifest(prepared, tiny_arch, tmp_path):
    from babyemo.data.preparation.manifest import read_manifest
    from babyemo.data.preparation.prepare import prepare
    from babyemo.metrics import classification_metrics

    ckpt = _untrained(tmp_path, tiny_arch, ("angry", "crying", "happy"))
    rows = read_manifest(prepared).rows
    meta = tmp_path / "meta.csv"
    meta.write_text(
        "path,source\n"
        + "".join(f"{r.path},{'stock' if i % 3 else 'other'}\n" for i, r in enumerate(rows[:-2]))
    )
    report = evaluate(
        ckpt,
        data=prepared,
        split="all",
        slice_by="source",
        metadata=meta,
        bootstrap=100,
        out=tmp_path / "ev",
        runtime=Runtime(workers=0, precision="fp32"),
    )
    groups = {g["value"]: g for g in report.slices["groups"]}
    assert set(groups) == {"other", "stock", "(missing)"} and groups["(missing)"]["n"] == 2
    assert sum(g["n"] for g in groups.values()) == report.metrics["n"]
    idx = [i for i, p in enumerate(report.paths) if p in {r.path for r in rows[0:-2:3]}]
    ref = classification_metrics(report.y_true[idx], report.y_pred[idx], report.class_names)
    assert groups["other"]["macro_f1"] == pytest.approx(ref["macro_f1"])
    assert set(groups["stock"]["ci95"]) == {
        "accuracy",
        "balanced_accuracy",
        "macro_f1",
        "per_class",
    }
    table = list(csv.DictReader((tmp_path / "ev" / "slices.csv").open()))
    assert [t["value"] for t in table] == ["(missing)", "other", "stock"]
    assert {"column", "n", "macro_f1", "ece", "macro_f1_ci_low"} <= table[0].keys()
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["slices"]["column"] == "source"
    with pytest.raises(DataError, match="no column 'age'"):
        evaluate(
            ckpt,
            data=prepared,
            split="all",
            slice_by="age",
            metadata=meta,
            runtime=Runtime(workers=0),
        )
    with pytest.raises(DataError, match="needs metadata"):
        evaluate(ckpt, data=prepared, split="all", slice_by="source", runtime=Runtime(workers=0))
    # metadata attached at prepare time is used without --metadata
    again = prepare(
        prepared.parent.parent / "images",
        out=tmp_path / "prep2",
        split=(0.5, 0.25, 0.25),
        seed=0,
        metadata=meta,
    )
    by_manifest = evaluate(
        ckpt, data=again.manifest_path, split="all", slice_by="source", runtime=Runtime(workers=0)
    )
    assert [(g["value"], g["n"], g["macro_f1"]) for g in by_manifest.slices["groups"]] == [
        (g["value"], g["n"], g["macro_f1"]) for g in report.slices["groups"]
    ]


def test_label_map_model_classes_on_another_dataset(tiny_arch, tmp_path):
    """Infant model (angry/crying/happy) on adult-like data (angry/fear/happy/sad)."""
    from babyemo.data.preparation.prepare import prepare
    from tests.conftest import make_imagefolder

    adult = make_imagefolder(
        tmp_path / "adult", classes=("angry", "fear", "happy", "sad"), per_class=4
    )
    manifest = prepare(adult, out=tmp_path / "adult-prep", split=(0.5, 0.25, 0.25)).manifest_path
    ckpt = _untrained(tmp_path, tiny_arch, ("angry", "crying", "happy"))
    with pytest.raises(DataError, match="fear"):
        evaluate(ckpt, data=manifest, split="all", runtime=Runtime(workers=0))
    report = evaluate(
        ckpt,
        data=manifest,
        split="all",
        label_map="crying=sad",
        out=tmp_path / "ev",
        runtime=Runtime(workers=0),
    )
    lm = report.label_map
    assert lm["pairs"] == {"angry": "angry", "happy": "happy", "sad": "crying"}
    assert lm["dropped"] == {"fear": 4} and lm["n_kept"] == 12 == report.metrics["n"]
    assert lm["outside_classes"] == [] and lm["n_pred_outside"] == 0
    assert report.metrics["per_class"]["crying"]["support"] == 4
    # the same pair in the other order, as a list, gives the same result
    same = evaluate(
        ckpt, data=manifest, split="all", label_map=["sad=crying"], runtime=Runtime(workers=0)
    )
    assert same.metrics == report.metrics
    assert json.loads((tmp_path / "ev" / "report.json").read_text())["label_map"]["n_dropped"] == 4
    from babyemo.errors import ConfigError

    with pytest.raises(ConfigError, match="sadd=crying"):
        evaluate(
            ckpt, data=manifest, split="all", label_map="sadd=crying", runtime=Runtime(workers=0)
        )
    with pytest.raises(ConfigError, match="Bad label-map entry"):
        evaluate(ckpt, data=manifest, split="all", label_map="crying", runtime=Runtime(workers=0))


def test_label_map_model_with_more_classes(prepared, tiny_arch, tmp_path):
    """A 5-class adult model on the 3-class infant-like set: extra classes count wrong."""
    from sklearn.metrics import f1_score

    classes = ("angry", "disgust", "fear", "happy", "sad")
    ckpt = _untrained(tmp_path, tiny_arch, classes)
    report = evaluate(
        ckpt,
        data=prepared,
        split="all",
        label_map="crying=sad",
        bootstrap=100,
        runtime=Runtime(workers=0),
    )
    lm = report.label_map
    assert lm["evaluated_classes"] == ["angry", "happy", "sad"]
    assert lm["outside_classes"] == ["disgust", "fear"] and lm["n_dropped"] == 0
    outside = np.isin(report.y_pred, [1, 2])
    assert lm["n_pred_outside"] == int(outside.sum())
    assert report.metrics["accuracy"] == pytest.approx(np.mean(report.y_pred == report.y_true))
    labels = sorted({0, 3, 4} & (set(report.y_true) | set(report.y_pred)))
    assert report.metrics["macro_f1"] == pytest.approx(
        f1_score(report.y_true, report.y_pred, labels=labels, average="macro", zero_division=0)
    )
    assert report.confusion.shape == (5, 5)


def test_where_restricts_rows_and_record_stores_a_summary_in_the_checkpoint(
    prepared, tiny_arch, tmp_path
):
    from babyemo.checkpoint import load_checkpoint
    from babyemo.data.preparation.manifest import read_manifest
    from babyemo.errors import ConfigError
    from babyemo.evaluation import parse_where

    ckpt = _untrained(tmp_path, tiny_arch, ("angry", "crying", "happy"))
    rows = read_manifest(prepared).rows
    meta = tmp_path / "meta.csv"
    meta.write_text(
        "path,subset,dup\n"
        + "".join(
            f"{r.path},{'A' if i % 2 else 'B'},{'yes' if i % 3 == 0 else 'no'}\n"
            for i, r in enumerate(rows)
        )
    )
    want = {r.path for i, r in enumerate(rows) if i % 2 and i % 3}
    report = evaluate(
        ckpt,
        data=prepared,
        split="all",
        metadata=meta,
        where=["subset=A", "dup=no"],
        bootstrap=100,
        record=True,
        runtime=Runtime(workers=0, precision="fp32"),
    )
    assert set(report.paths) == want and report.metrics["n"] == len(want)
    assert report.where == {"subset": "A", "dup": "no"}
    assert report.to_dict()["where"] == {"subset": "A", "dup": "no"}
    whole = evaluate(
        ckpt, data=prepared, split="all", record=True, runtime=Runtime(workers=0, precision="fp32")
    )
    again = evaluate(
        ckpt, data=prepared, split="all", record=True, runtime=Runtime(workers=0, precision="fp32")
    )  # same key: replaces, does not pile up
    stored = load_checkpoint(ckpt).evaluations
    assert [e["n"] for e in stored] == [len(want), whole.metrics["n"]]
    assert stored[1]["macro_f1"] == pytest.approx(again.metrics["macro_f1"])
    first = stored[0]
    assert first["where"] == {"subset": "A", "dup": "no"} and first["split"] == "all"
    assert (
        first["ci95"]["per_class"]["angry"]["f1"][0] <= first["ci95"]["per_class"]["angry"]["f1"][1]
    )
    assert first["calibration"]["ece_before"] == pytest.approx(report.calibration["ece_before"])
    for where, match in (("subset=C", "No 'all' row"), ("age=3", "no column")):
        with pytest.raises(DataError, match=match):
            evaluate(ckpt, data=prepared, split="all", metadata=meta, where=where,
                     runtime=Runtime(workers=0))
    with pytest.raises(ConfigError, match="COLUMN=VALUE"):
        parse_where(["subset"])
    assert parse_where({"a": 1}) == {"a": "1"} and parse_where(None) == {}


def test_tta_is_recorded_and_changes_predictions_only_through_the_mirror(
    prepared, tiny_arch, tmp_path
):
    ckpt = _untrained(tmp_path, tiny_arch, ("angry", "crying", "happy"))
    plain = evaluate(ckpt, data=prepared, split="all", runtime=Runtime(workers=0, precision="fp32"))
    tta = evaluate(
        ckpt, data=prepared, split="all", runtime=Runtime(workers=0, precision="fp32", tta=True)
    )
    assert tta.engine["tta"] is True and plain.engine["tta"] is False
    assert tta.paths == plain.paths and tta.probs.shape == plain.probs.shape
    assert np.allclose(tta.probs.sum(1), 1.0, atol=1e-5)


def test_a_mistyped_split_lists_the_valid_ones_before_loading_anything(trained, prepared, tmp_path):
    """Issue 12: `--split testt` said "re-split it with babyemo data split"."""
    from babyemo.errors import ConfigError

    with pytest.raises(ConfigError, match="Unknown split 'testt'") as err:
        evaluate(tmp_path / "no-such.pt", data=prepared, split="testt")  # not even loaded
    assert err.value.hint == "use one of train, val, test, all"
    only_train = tmp_path / "only-train"
    only_train.mkdir()
    (only_train / "manifest.csv").write_text(
        prepared.read_text().replace(",val,", ",train,").replace(",test,", ",train,")
    )
    (only_train / "dataset.json").write_text((prepared.parent / "dataset.json").read_text())
    with pytest.raises(DataError, match=r"has no 'test' rows \(its splits: train\)"):
        evaluate(
            model="tiny-eval", data=only_train, split="test", runtime=Runtime(precision="fp32")
        )
