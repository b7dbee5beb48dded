"""``babyemo calibrate`` and the calibration / slice / label-map options of evaluate and
predict, through the real Typer app."""

import csv
import json

import pytest
from typer.testing import CliRunner

from babyemo.checkpoint import load_checkpoint
from babyemo.cli import app
from babyemo.data.preparation.manifest import read_manifest
from tests.conftest import make_checkpoint, run_cli_in_subprocess

runner = CliRunner()


def _ok(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


@pytest.mark.parametrize("args", [["calibrate", "--help"], ["data", "metadata", "--help"]])
def test_help_does_not_import_torch(args):
    run_cli_in_subprocess(args)


def test_calibrate_writes_the_temperature(prepared, tiny_arch, tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt", tiny_arch)
    result = _ok(["calibrate", "--checkpoint", str(ckpt), "--data", str(prepared),
                  "--precision", "fp32", "--dry-run"])
    assert "not written" in result.stdout and load_checkpoint(ckpt).calibration is None
    result = _ok(["calibrate", "--checkpoint", str(ckpt), "--data", str(prepared),
                  "--precision", "fp32", "--json"])
    data = json.loads(result.stdout)
    assert data["fitted_on"] == "val" and data["checkpoint"] == str(ckpt)
    assert load_checkpoint(ckpt).temperature == pytest.approx(data["temperature"])
    result = runner.invoke(app, ["calibrate", "--checkpoint", str(tmp_path / "none.pt"),
                                 "--data", str(prepared)])
    assert result.exit_code == 1 and "Error:" in result.stderr


def test_calibrate_oof_fits_on_a_folds_run(tiny_arch, tmp_path):
    import numpy as np

    from babyemo.calibration import fit_temperature
    from tests.evaluation.test_crossval import write_oof

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 90)
    run = write_oof(tmp_path / "run", np.eye(3)[y] * 6 + rng.normal(0, 2, (90, 3)), y)
    ckpt = make_checkpoint(tmp_path / "m.pt", tiny_arch)
    result = _ok(["calibrate", "--checkpoint", str(ckpt), "--oof", str(run)])
    assert f"fitted on the out-of-fold logits of {run} (n=90)" in " ".join(result.stdout.split())
    cal = load_checkpoint(ckpt).calibration
    assert cal["fitted_on"] == "out-of-fold" and cal["n"] == 90
    assert cal["temperature"] == pytest.approx(fit_temperature(np.load(
        run / "oof_logits.npz")["logits"], y))
    data = json.loads(_ok(["calibrate", "--checkpoint", str(ckpt), "--oof", str(run),
                           "--json", "--dry-run"]).stdout)
    assert data["oof_run"] == str(run) and data["manifest"] is None
    assert data["temperature"] == pytest.approx(cal["temperature"])
    result = runner.invoke(app, ["calibrate", "--checkpoint", str(ckpt), "--oof", str(run),
                                 "--split", "test"])
    assert result.exit_code == 2 and "--oof" in result.output
    result = runner.invoke(app, ["calibrate", "--checkpoint", str(ckpt), "--oof",
                                 str(tmp_path)])
    assert result.exit_code == 1 and "did not finish" in result.stderr


def test_evaluate_shows_ece_slices_and_label_map(prepared, tiny_arch, tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt", tiny_arch,
                           classes=("angry", "disgust", "happy", "sad"), temperature=2.0)
    meta = tmp_path / "meta.csv"
    meta.write_text("path,source\n" + "".join(
        f"{r.path},{'stock' if r.label == 'angry' else 'other'}\n"
        for r in read_manifest(prepared).rows))
    base = ["evaluate", "--checkpoint", str(ckpt), "--data", str(prepared), "--split", "all",
            "--precision", "fp32", "--label-map", "crying=sad", "--slice-by", "source",
            "--metadata", str(meta)]
    result = _ok([*base, "--out", str(tmp_path / "ev")])
    out = result.stdout
    assert "temperature 2.000" in out and "ECE (15 bins)" in out
    assert "a perfectly calibrated model with these confidences would show ECE" in \
        " ".join(out.split())
    assert "per source" in out and "stock" in out
    assert "crying->sad" in out and "disgust" in out and "count as wrong" in out
    assert (tmp_path / "ev" / "reliability.png").is_file()
    rows = list(csv.DictReader((tmp_path / "ev" / "slices.csv").open()))
    assert {r["value"]: int(r["n"]) for r in rows} == {"other": 24, "stock": 12}
    data = json.loads(_ok([*base, "--json"]).stdout)
    assert data["calibration"]["temperature"] == 2.0
    floor = data["calibration"]["ece_if_calibrated"]
    assert 0 <= floor["low"] <= floor["median"] <= floor["high"] <= 1
    assert data["label_map"]["outside_classes"] == ["disgust"]
    assert [g["value"] for g in data["slices"]["groups"]] == ["other", "stock"]


def test_predict_min_confidence(prepared, tiny_arch, tmp_path):
    ckpt = make_checkpoint(tmp_path / "m.pt", tiny_arch)
    images = prepared.parent.parent / "images" / "angry"
    out = tmp_path / "pred.csv"
    _ok(["predict", str(images), "--checkpoint", str(ckpt), "--csv", str(out),
         "--min-confidence", "1", "--workers", "0"])
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 12 and all(r["label"] == "uncertain" for r in rows)
    assert all(r["top_class"] in ("angry", "crying", "happy") for r in rows)
    result = runner.invoke(app, ["predict", str(images), "--checkpoint", str(ckpt),
                                 "--min-confidence", "1.5"])
    assert result.exit_code == 2
