"""The label audit trains its own fold models when no folds run is given (issue 19)."""

from __future__ import annotations

import csv
import json

import pytest
from typer.testing import CliRunner

from babyemo.data.preparation.manifest import read_manifest
from tests.training.test_folds import _config, _dataset

pytest.importorskip("cleanlab")


def test_audit_trains_quick_folds_then_resumes_them(tmp_path, tiny_arch):
    from babyemo.evaluation.audit import FOLDS_DIR, audit_labels

    manifest_path = _dataset(tmp_path)
    manifest = read_manifest(manifest_path)
    out = tmp_path / "audit"
    result = audit_labels(manifest_path, out=out, folds=2,
                          config=_config(manifest_path, tiny_arch, tmp_path / "ignored"))
    run = out / FOLDS_DIR
    assert result.oof_run == run and not (tmp_path / "ignored").exists()
    plan = json.loads((run / "folds.json").read_text())
    assert plan["folds"] == 2 and plan["manifest_sha256"] == manifest.sha256()
    non_test = [r.path for r in manifest.rows if r.split != "test"]
    with open(out / "label_issues.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["path"] for r in rows) == sorted(non_test)
    assert [int(r["rank"]) for r in rows] == list(range(1, len(non_test) + 1))
    assert json.loads((out / "audit.json").read_text())["oof_run"] == str(run)

    assert result.test_flagged is None and not (out / "test_label_issues.csv").exists()

    best = (run / "fold-1" / "best.pt").stat().st_mtime_ns
    again = audit_labels(manifest_path, out=out, folds=2, test_report=True,
                         config=_config(manifest_path, tiny_arch, run, resume=True))
    assert (run / "fold-1" / "best.pt").stat().st_mtime_ns == best  # not trained again
    assert [r.path for r in again.rows] == [r["path"] for r in rows]

    # the test rows, for the report: the mean of the fold models' calibrated probabilities
    from babyemo.inference import probabilities
    from babyemo.training.folds import FoldPlan, fold_logits

    plan = FoldPlan.load(run)
    folds = [fold_logits(plan, _config(manifest_path, tiny_arch, run), k, split="test")
             for k in (1, 2)]
    mean = sum(probabilities(f.logits, f.temperature) for f in folds) / 2
    test = [r for r in manifest.rows if r.split == "test"]
    assert folds[0].paths == [r.path for r in test]
    want = {r.path: float(mean[i, again.class_names.index(r.label)])
            for i, r in enumerate(test)}
    with open(out / "test_label_issues.csv", newline="") as f:
        test_rows = list(csv.DictReader(f))
    assert sorted(r["path"] for r in test_rows) == sorted(want)
    assert all(float(r["quality"]) == pytest.approx(want[r["path"]], abs=1e-5)
               for r in test_rows)
    assert again.test_flagged == sum(r["issue"] == "True" for r in test_rows)
    assert json.loads((out / "audit.json").read_text())["test_flagged"] == again.test_flagged


def test_audit_cli_trains_folds_and_refuses_a_recipe_for_a_finished_run(tmp_path, tiny_arch):
    from babyemo.cli import app

    manifest_path = _dataset(tmp_path)
    out = tmp_path / "audit"
    result = CliRunner().invoke(app, ["data", "audit", str(manifest_path), "--out", str(out),
                                      "--folds", "2", "--arch", tiny_arch, "--epochs", "1",
                                      "--init", "none", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "Label issues per given class" in result.output
    assert (out / "folds" / "oof_logits.npz").is_file() and (out / "label_issues.csv").is_file()
    refused = CliRunner().invoke(app, ["data", "audit", "--folds-run", str(out / "folds"),
                                       "--out", str(tmp_path / "again"), "--epochs", "3"])
    assert refused.exit_code == 2 and "already trained" in refused.output
