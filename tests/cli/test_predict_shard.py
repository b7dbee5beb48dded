"""``babyemo predict --shard I/N``, ``babyemo predict merge`` and ``predict`` under
``torchrun`` (issue 16): the parts join into the CSV one run writes."""

from __future__ import annotations

import csv
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from babyemo.cli import app
from tests.conftest import REPO, SHARED_MODELS, make_checkpoint, make_image, run_cli_in_subprocess

runner = CliRunner()

COLORS = [(220, 40, 40), (40, 40, 220), (40, 200, 40), (200, 200, 40)]


def _photos(root: Path, n: int = 10) -> Path:
    """``n`` images in a folder and a sub-folder, and a truncated JPEG (an error row)."""
    for i in range(n):
        make_image(root / ("sub" if i % 3 == 0 else "") / f"img_{i:02d}.png",
                   color=COLORS[i % len(COLORS)])
    (root / "cut.jpg").write_bytes(b"\xff\xd8\xff\xe0 cut short")
    return root


@pytest.fixture
def model(tiny_arch, tmp_path):
    return make_checkpoint(tmp_path / "m.pt", tiny_arch)


def _ok(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def _error_line(result, code: int = 1) -> str:
    assert result.exit_code == code, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_shards_then_merge_write_the_files_of_one_run(model, tmp_path):
    photos = _photos(tmp_path / "photos")
    common = [str(photos), "--checkpoint", str(model), "--device", "cpu", "--batch-size", "1"]
    _ok(["predict", *common, "--csv", str(tmp_path / "whole.csv"),
         "--json", str(tmp_path / "whole.json")])
    for i in range(3):
        result = _ok(["predict", *common, "--shard", f"{i}/3",
                      "--csv", str(tmp_path / f"p{i}.csv"), "--json", str(tmp_path / f"p{i}.json")])
        first, last = [(1, 4), (5, 8), (9, 11)][i]
        assert f"shard {i}/3: entries {first}-{last} of 11" in " ".join(result.stdout.split())
        assert f"{(tmp_path / f'p{i}.csv.shard.json').name}" in result.stdout
    result = _ok(["predict", "merge", str(tmp_path / "m.csv"),
                  *[str(tmp_path / f"p{i}.csv") for i in (2, 0, 1)]])
    assert result.stdout.strip() == (f"merged 3 shards (11 files, 11 rows) into "
                                     f"{tmp_path / 'm.csv'}")
    assert (tmp_path / "m.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    _ok(["predict", "merge", str(tmp_path / "m.json"), *[str(tmp_path / f"p{i}.json")
                                                          for i in range(3)]])
    assert (tmp_path / "m.json").read_text() == (tmp_path / "whole.json").read_text()


def test_an_empty_shard_writes_the_header_only(model, tmp_path):
    make_image(tmp_path / "one.png")
    _ok(["predict", str(tmp_path / "one.png"), "--checkpoint", str(model), "--shard", "1/2",
         "--csv", str(tmp_path / "p1.csv")])
    assert (tmp_path / "p1.csv").read_text().splitlines()[0].startswith("path,label,")
    assert len((tmp_path / "p1.csv").read_text().splitlines()) == 1


def test_merge_refusals_are_one_red_line_and_write_nothing(model, tmp_path):
    photos = _photos(tmp_path / "photos", n=4)
    for i in (0, 2):
        _ok(["predict", str(photos), "--checkpoint", str(model), "--shard", f"{i}/3",
             "--csv", str(tmp_path / f"p{i}.csv")])
    parts = [str(tmp_path / f"p{i}.csv") for i in (0, 2)]
    line = _error_line(runner.invoke(app, ["predict", "merge", str(tmp_path / "m.csv"), *parts]))
    assert "1 of 3 shards missing: 1/3" in line and "--shard" in line
    (tmp_path / "loose.csv").write_text("path,label\n")
    line = _error_line(runner.invoke(app, ["predict", "merge", str(tmp_path / "m.csv"),
                                           *parts, str(tmp_path / "loose.csv")]))
    assert "loose.csv has no sidecar loose.csv.shard.json" in line
    assert not (tmp_path / "m.csv").exists()


def test_a_folder_named_merge_is_predicted_as_dot_merge(model, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    make_image(tmp_path / "merge" / "a.png")
    _ok(["predict", "./merge", "--checkpoint", str(model), "--csv", "o.csv"])
    rows = list(csv.DictReader((tmp_path / "o.csv").open()))
    assert [r["path"] for r in rows] == ["merge/a.png"] and rows[0]["label"]
    # a bare `merge` first is the subcommand: its arguments, not predict's options
    result = runner.invoke(app, ["predict", "merge", "--checkpoint", str(model)])
    assert result.exit_code == 2 and "No such option: --checkpoint" in result.output
    # options may still come before the paths of the predict command itself
    _ok(["predict", "--checkpoint", str(model), "--csv", "o2.csv", "merge/a.png"])
    assert (tmp_path / "o2.csv").read_bytes() == (tmp_path / "o.csv").read_bytes()


@pytest.mark.parametrize("value, fragment", [
    ("3/3", "Shard 3/3 does not exist: the index is 0-based, 0 to 2"),
    ("1/0", "at least 1 shard"), ("-1/2", "is not a shard"), ("half", "is not a shard")])
def test_a_bad_shard_is_a_usage_error(tmp_path, value, fragment):
    make_image(tmp_path / "a.png")
    result = runner.invoke(app, ["predict", str(tmp_path / "a.png"), "--shard", value,
                                 "--csv", str(tmp_path / "o.csv")])
    assert result.exit_code == 2 and fragment in " ".join(result.output.split())


def test_shards_and_torchrun_refuse_stdout_and_shard_under_torchrun_before_torch(tmp_path,
                                                                               monkeypatch):
    make_image(tmp_path / "a.png")
    image = str(tmp_path / "a.png")
    proc = run_cli_in_subprocess(["predict", image, "--shard", "0/2"], exit_code=1)
    assert "--shard writes its rows to a file, not to stdout" in proc.stderr
    proc = run_cli_in_subprocess(["predict", image, "--shard", "0/2", "--csv", "-"], exit_code=1)
    assert "not to stdout" in proc.stderr
    for name, value in {"WORLD_SIZE": "2", "RANK": "0", "LOCAL_RANK": "0"}.items():
        monkeypatch.setenv(name, value)
    proc = run_cli_in_subprocess(["predict", image, "--shard", "0/2", "--csv",
                                  str(tmp_path / "o.csv")], exit_code=1)
    assert "--shard 0/2 cannot be used under torchrun (2 processes)" in proc.stderr
    proc = run_cli_in_subprocess(["predict", image], exit_code=1)
    assert "Prediction under torchrun writes its rows to a file" in proc.stderr
    assert not (tmp_path / "o.csv").exists()


def test_help_names_the_subcommand_and_imports_no_torch():
    text = run_cli_in_subprocess(["predict", "--help"]).stdout
    assert "--shard I/N" in text and "merge" in text.split("Commands:")[1]
    assert "./merge" in " ".join(text.split())
    text = run_cli_in_subprocess(["predict", "merge", "--help"]).stdout
    assert "predict merge [OPTIONS]" in text and ".shard.json" in text


def _same_rows(merged: Path, whole: Path) -> int:
    """Assert two prediction CSVs hold the same rows in the same order: every column
    equal, the probabilities to their last printed digit (a model's batches hold other
    images when the list is cut, and float rounding may then differ in the last bit, as
    with another --batch-size). Returns the number of rows."""
    a = list(csv.DictReader(merged.open(encoding="utf-8")))
    b = list(csv.DictReader(whole.open(encoding="utf-8")))
    assert len(a) == len(b) and a[0].keys() == b[0].keys()
    numeric = [k for k in a[0] if k == "confidence" or k.startswith("prob_")]
    for x, y in zip(a, b, strict=True):
        assert {k: v for k, v in x.items() if k not in numeric} == \
            {k: v for k, v in y.items() if k not in numeric}
        assert all(abs(float(x[k]) - float(y[k])) <= 1.5e-4 for k in numeric if x[k] or y[k])
    return len(a)


def test_real_baby_photos_in_three_shards_merge_into_the_unsharded_csv(baby_photos_dir,
                                                                       tmp_path):
    """All 300 real photos, the packaged model on whole images (--faces none keeps it
    fast): one run, then three shards and a merge."""
    common = [str(baby_photos_dir), "--faces", "none", "--device", "cpu"]
    _ok(["predict", *common, "--csv", str(tmp_path / "whole.csv")])
    for i in range(3):
        _ok(["predict", *common, "--shard", f"{i}/3", "--csv", str(tmp_path / f"p{i}.csv")])
    result = _ok(["predict", "merge", str(tmp_path / "merged.csv"),
                  *[str(tmp_path / f"p{i}.csv") for i in range(3)]])
    assert "merged 3 shards (300 files, 300 rows)" in result.stdout
    assert _same_rows(tmp_path / "merged.csv", tmp_path / "whole.csv") == 300


def test_real_photos_with_several_faces_keep_every_row_across_shards(baby_photos_dir,
                                                                     tmp_path, monkeypatch):
    """Twelve real photos given as files (YuNet: one row per face, or the whole photo),
    among them one with several faces and one without a face found."""
    if not any(SHARED_MODELS.glob("face_detection_yunet*.onnx")):
        pytest.skip(f"no YuNet model file in {SHARED_MODELS}")
    monkeypatch.setenv("BABYEMO_MODELS", str(SHARED_MODELS))
    photos = sorted(baby_photos_dir.glob("*.jpg"))
    files = [str(p) for p in photos[:4] + photos[52:60]]
    _ok(["predict", *files, "--device", "cpu", "--csv", str(tmp_path / "whole.csv")])
    for i in range(3):
        _ok(["predict", *files, "--device", "cpu", "--shard", f"{i}/3",
             "--csv", str(tmp_path / f"p{i}.csv")])
    _ok(["predict", "merge", str(tmp_path / "merged.csv"),
         *[str(tmp_path / f"p{i}.csv") for i in range(3)]])
    n_rows = _same_rows(tmp_path / "merged.csv", tmp_path / "whole.csv")
    rows = list(csv.DictReader((tmp_path / "merged.csv").open(encoding="utf-8")))
    assert [r["path"] for r in rows if r["face_index"] in ("", "0")] == files
    assert n_rows > len(files)  # a photo with several faces: several rows
    assert {"detected", "whole_image"} <= {r["face"] for r in rows}


def test_torchrun_two_processes_write_the_csv_of_one_run(tmp_path):
    """Real torchrun: two CPU processes (Gloo) predict a part each; rank 0 merges into
    out.csv and removes the parts; only rank 0 prints the summary."""
    photos = _photos(tmp_path / "photos", n=12)
    model = make_checkpoint(tmp_path / "skip.pt", "skip_cnn")  # a built-in arch: the
    # processes are fresh interpreters, without the tests' registered tiny arch
    common = [str(photos), "--checkpoint", str(model), "--device", "cpu", "--batch-size", "1"]
    _ok(["predict", *common, "--csv", str(tmp_path / "whole.csv")])
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO / "src")}
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                           "--nproc-per-node", "2", "-m", "babyemo", "predict", *common,
                           "--csv", str(tmp_path / "out.csv")],
                          capture_output=True, text=True, env=env, cwd=tmp_path, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert time.perf_counter() - start < 120
    assert (tmp_path / "out.csv").read_bytes() == (tmp_path / "whole.csv").read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.csv", "photos", "skip.pt",
                                                          "whole.csv"]  # no part left
    assert proc.stdout.count("13 files, 13 rows in ") == 1  # rank 0 alone, the whole run
    assert "processes: 2 (torchrun)" in proc.stdout and "csv: " in proc.stdout
