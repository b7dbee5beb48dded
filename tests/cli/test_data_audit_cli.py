"""``babyemo data audit`` and ``babyemo data relabel`` through the real Typer app (issue 19).

The folds run is fabricated (see :mod:`tests.evaluation.audit_helpers`): no training.
"""

from __future__ import annotations

import csv
import json
import re

import pytest
from typer.testing import CliRunner

from babyemo.cli import app
from babyemo.data.preparation.manifest import read_manifest
from tests.evaluation.audit_helpers import MISLABELLED, TEST_ROWS, make_manifest, write_folds_run

runner = CliRunner()


@pytest.fixture(scope="module")
def folds_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("audit-cli")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BABYEMO_HOME", str(tmp / "home"))
        manifest = make_manifest(tmp)
    return write_folds_run(manifest, tmp / "run")


def _ok(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def _fails(args: list[str], code: int = 1):
    result = runner.invoke(app, args)
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    if code == 1:
        assert result.stderr.count("Error:") == 1
    return result


def test_audit_prints_the_table_and_writes_the_files(folds_run, tmp_path):
    out = tmp_path / "audit"
    result = _ok(["data", "audit", "--folds-run", str(folds_run.run), "--out", str(out),
                  "--top", "5"])
    text = " ".join(re.sub("[│┃]", " ", result.stdout).split())  # table cells, wrapped lines
    assert "Label issues per given class" in text
    n = len(folds_run.paths)
    assert f"all {n} 3 {3 / n:.1%}" in text
    for cls in ("angry", "crying", "happy"):
        count = sum(1 for p in folds_run.paths if folds_run.labels[p] == cls)
        assert f"{cls} {count} 1 {1 / count:.1%}" in text
    assert "Most suspect:" in text
    for rank, (path, (suggested, _)) in enumerate(MISLABELLED.items(), start=1):
        assert f"#{rank} {path}: {folds_run.labels[path]} -> {suggested}" in text
    assert "Duplicate groups with conflicting labels: 2" in text
    check = json.loads((out / "audit.json").read_text())["conflict_check"]["exact"]
    assert (f"byte-identical: 2; a member flagged in {check['with_audited_flagged']} of the 1 "
            "with audited images (a random ranking: "
            f"{check['if_random']['with_audited_flagged']:.1f})") in text
    assert f"median at {check['best_percentile_median']:.0%} of the ranking" in text
    assert f"Test images: {len(TEST_ROWS)}, not audited" in text
    assert f"Audited {n} non-test images of {folds_run.manifest}" in text
    with open(out / "label_issues.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["path"] for r in rows[:3]] == list(MISLABELLED) and len(rows) == n
    report = json.loads((out / "audit.json").read_text())
    assert report["n_issues"] == 3 and report["top"] == 5
    assert len(list(out.glob("suspects-*.png"))) == 3


def test_audit_errors(folds_run, tmp_path):
    _fails(["data", "audit", "--folds-run", str(tmp_path / "missing"), "--out",
            str(tmp_path / "a")])
    _fails(["data", "audit", "--folds-run", str(tmp_path), "--out", str(tmp_path / "a")])
    bad = tmp_path / "bad-run"
    bad.mkdir()
    (bad / "folds.json").write_text("[1, 2]")
    result = _fails(["data", "audit", "--folds-run", str(bad), "--out", str(tmp_path / "a")])
    assert "folds plan" in " ".join(result.stderr.split())
    _fails(["data", "audit", str(tmp_path / "nowhere"), "--folds-run", str(folds_run.run),
            "--out", str(tmp_path / "a")])  # no such manifest
    _fails(["data", "audit", "--folds-run", str(folds_run.run), "--out",
            str(folds_run.root / "audit")])  # inside the image root
    assert not (tmp_path / "a").exists() and not (folds_run.root / "audit").exists()
    # usage errors: exit 2
    _fails(["data", "audit", "--folds-run", str(folds_run.run), "--out", str(tmp_path / "a"),
            "--top", "0"], code=2)
    _fails(["data", "audit", "--folds-run", str(folds_run.run)], code=2)  # no --out


def test_relabel_happy_path_and_test_refusal(folds_run, tmp_path):
    manifest = read_manifest(folds_run.manifest)
    before = folds_run.manifest.read_bytes()
    wrong, = [p for p in MISLABELLED if p.startswith("angry/")]
    review = tmp_path / "review.csv"
    dropped = next(iter(MISLABELLED.keys() - {wrong}))
    review.write_text(f"path,label\n{wrong},happy\n{dropped},exclude\n", encoding="utf-8")
    out = tmp_path / "relabelled"
    result = _ok(["data", "relabel", str(folds_run.manifest), "--from", str(review),
                  "--out", str(out)])
    text = " ".join(result.stdout.split())
    assert f"Manifest: {out / 'manifest.csv'}" in text
    assert "1 relabelled, 1 excluded, 0 confirmed, 0 undecided" in text
    assert "angry -> happy: 1" in text and "-> exclude: 1" in text
    new = read_manifest(out)
    assert {r.path: r.label for r in new.rows}[wrong] == "happy"
    assert len(new.rows) == len(manifest.rows) - 1
    assert folds_run.manifest.read_bytes() == before

    test_row = TEST_ROWS[0]
    review.write_text(f"path,label\n{test_row},happy\n", encoding="utf-8")
    result = _fails(["data", "relabel", str(folds_run.manifest), "--from", str(review),
                     "--out", str(tmp_path / "refused")])
    assert "test image" in result.stderr and "--allow-test" in result.stderr
    assert not (tmp_path / "refused").exists()
    result = _ok(["data", "relabel", str(folds_run.manifest), "--from", str(review),
                  "--out", str(tmp_path / "allowed"), "--allow-test"])
    assert {r.path: r.label for r in read_manifest(tmp_path / "allowed").rows}[test_row] == \
        "happy"
