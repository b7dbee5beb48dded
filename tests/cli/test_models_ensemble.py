"""``babyemo models ensemble``: build, register, and use an ensemble from the command line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

from typer.testing import CliRunner

from babyemo import paths
from babyemo.checkpoint import load_checkpoint
from babyemo.cli import app
from babyemo.models import store
from tests.conftest import make_imagefolder, run_cli_in_subprocess
from tests.models.test_ensemble import make_member

runner = CliRunner()


def _ok(*args: str) -> str:
    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_build_register_and_use_an_ensemble(prepared: Path, tiny_arch: str, tmp_path: Path):
    a = make_member(tmp_path / "a.pt", tiny_arch, seed=1, temperature=1.3, manifest=prepared)
    b = make_member(tmp_path / "b.pt", tiny_arch, ["happy", "angry", "crying"], size=32,
                    seed=2, manifest=prepared)
    store.register_trained("fold-b", b)
    # a first ensemble, evaluated: its predictions.csv is held-out data for the second's T
    out = _ok("models", "ensemble", "pair", str(a), "fold-b")
    path = paths.models_cache_dir() / "pair.pt"
    assert f"ensemble pair: {path}" in out and "members (2):" in out
    assert "a: tiny_test_cnn 24 px, temperature 1.300" in out
    assert "fold-b: tiny_test_cnn 32 px" in out and "uncalibrated" in out
    assert store.get_trained("pair")["checkpoint"] == str(path.resolve())
    _ok("evaluate", "--model", "pair", "--split", "val", "--out", str(tmp_path / "eval"),
        "--device", "cpu")
    oof = tmp_path / "eval" / "predictions.csv"
    out = _ok("models", "ensemble", "pair-cal", str(a), str(b), "--oof", str(oof),
              "--out", str(tmp_path / "pair-cal.pt"), "--json")
    result = json.loads(out)
    with open(oof, newline="") as f:
        n = sum(1 for _ in csv.DictReader(f))
    assert result["calibration"]["fitted_on"] == "out-of-fold"
    assert result["calibration"]["n"] == n
    assert result["temperature"] == load_checkpoint(tmp_path / "pair-cal.pt").temperature
    assert [m["name"] for m in result["members"]] == ["a", "fold-b"]

    info = _ok("models", "info", "pair-cal")
    assert "ensemble of 2 members" in info and "fitted on out-of-fold" in info
    card = _ok("models", "card", "pair-cal")
    assert "## Ensemble members" in card and "| fold-b |" in card
    listed = json.loads(_ok("models", "list", "--json"))
    assert listed["trained"]["pair"]["arch"] == "ensemble"
    assert "ensemble" not in [a["name"] for a in listed["architectures"]]

    photos = make_imagefolder(tmp_path / "photos", per_class=1)
    _ok("predict", str(photos), "--model", "pair-cal", "--csv", str(tmp_path / "p.csv"),
        "--device", "cpu")
    with open(tmp_path / "p.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 3 and all(r["label"] in ("angry", "crying", "happy") for r in rows)


def test_refusals(tiny_arch: str, tmp_path: Path):
    a = make_member(tmp_path / "a.pt", tiny_arch, seed=1)
    b = make_member(tmp_path / "b.pt", tiny_arch, ["angry", "crying", "sad"], seed=2)
    result = runner.invoke(app, ["models", "ensemble", "mixed", str(a), str(b)])
    assert result.exit_code == 1 and "classes" in result.output
    assert not (paths.models_cache_dir() / "mixed.pt").exists()
    result = runner.invoke(app, ["models", "ensemble", "bad/name", str(a), str(a)])
    assert result.exit_code == 1 and "Invalid model name" in result.output
    result = runner.invoke(app, ["models", "info", "ensemble"])
    assert result.exit_code == 0 and "not trained" in result.stdout


def test_early_errors_do_not_import_torch(tmp_path: Path):
    proc = run_cli_in_subprocess(["models", "ensemble", "cv", str(tmp_path / "nope.pt"),
                                  str(tmp_path / "nope2.pt")], exit_code=1)
    assert "neither a checkpoint file nor a trained model" in proc.stderr
    proc = run_cli_in_subprocess(["train", "--arch", "ensemble"], exit_code=1)
    assert "not an architecture to train" in proc.stderr
