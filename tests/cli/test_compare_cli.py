"""`babyemo compare` (torch-free) and `babyemo train --folds` refusals (issue 15)."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from babyemo.cli import app
from tests.conftest import run_cli_in_subprocess
from tests.evaluation.test_compare import write_predictions

runner = CliRunner()


def _pair(tmp_path):
    rng = np.random.default_rng(0)
    true = rng.integers(0, 3, 200)
    random_ = write_predictions(tmp_path / "a" / "oof.csv", true, rng.integers(0, 3, 200),
                                fold=1)
    perfect = write_predictions(tmp_path / "b.csv", true, true)
    return random_, perfect


def test_compare_prints_the_paired_difference_and_verdict(tmp_path):
    a, b = _pair(tmp_path)
    out = tmp_path / "cmp.json"
    result = runner.invoke(app, ["compare", str(a.parent), str(b), "--bootstrap", "200",
                                 "--json", str(out)])
    assert result.exit_code == 0, result.output
    assert f"A: {a}" in result.output and "200 images paired by path" in result.output
    assert "macro-F1" in result.output and "verdict (macro-F1): B better" in result.output
    saved = json.loads(out.read_text())
    assert saved["verdict"] == "B better" and saved["n"] == 200 and saved["n_bootstrap"] == 200
    assert saved["metrics"]["macro_f1"]["ci"][0] > 0
    printed = runner.invoke(app, ["compare", str(b), str(b), "--json", "-"])
    assert printed.exit_code == 0
    same = json.loads(printed.output)
    assert same["verdict"] == "no difference the data can show"
    assert same["metrics"]["accuracy"]["difference"] == 0


def test_compare_refuses_files_of_other_images_and_loads_no_torch(tmp_path):
    a, b = _pair(tmp_path)
    fewer = write_predictions(tmp_path / "c.csv", [0, 1], [0, 1])
    result = runner.invoke(app, ["compare", str(a), str(fewer)])
    assert result.exit_code == 1
    assert "Error:" in result.output and "not predictions of the same images" in result.output
    result = runner.invoke(app, ["compare", str(a), str(b), "--json", str(a)])
    assert result.exit_code == 1 and "--json" in result.output  # would overwrite an input
    proc = run_cli_in_subprocess(["compare", str(a), str(b), "--bootstrap", "100"],
                                 heavy=("torch", "torchvision", "matplotlib"))
    assert "verdict (macro-F1): B better" in proc.stdout


def test_train_folds_refusals_and_help(prepared, tmp_path):
    out = str(tmp_path / "cv")
    result = runner.invoke(app, ["train", "--data", str(prepared), "--out", out,
                                 "--folds", "1"])
    assert result.exit_code == 1 and "at least 2 folds" in result.output
    result = runner.invoke(app, ["train", "--data", str(prepared), "--out", out,
                                 "--folds", "2", "--train-on", "train,val"])
    assert result.exit_code == 1 and "train,val" in result.output
    assert not (tmp_path / "cv").exists()
    assert "--folds" in runner.invoke(app, ["train", "--help"]).output
    assert "compare" in runner.invoke(app, ["--help"]).output
