import csv
import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from babyemo import __version__
from babyemo.cli import app
from tests.conftest import run_cli_in_subprocess

runner = CliRunner()


@pytest.mark.parametrize("args", [["--help"], ["data", "--help"], ["models", "--help"],
                                  ["train", "--help"], ["evaluate", "--help"],
                                  ["predict", "--help"]])
def test_help_does_not_import_torch(args):
    assert "Usage" in run_cli_in_subprocess(args).stdout


def test_version_and_python_m():
    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0 and __version__ in result.stdout
    proc = subprocess.run([sys.executable, "-m", "babyemo", "--version"], capture_output=True,
                          text=True)
    assert proc.returncode == 0 and __version__ in proc.stdout


def test_models_list_shows_registry():
    result = runner.invoke(app, ["models", "list"])
    assert result.exit_code == 0, result.output
    for name in ("resnet18", "mobilenet_v3_small", "vgg16", "vgg_fer", "custom_resnet",
                 "yunet"):
        assert name in result.stdout


def test_models_info_unknown_suggests():
    result = runner.invoke(app, ["models", "info", "resnet81"])
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "resnet18" in result.stderr
    assert "Traceback" not in result.output


def test_train_evaluate_predict_end_to_end(prepared, tiny_arch, tmp_path):
    run = tmp_path / "run"
    result = runner.invoke(app, ["train", "--data", str(prepared), "--arch", tiny_arch,
                                 "--epochs", "2", "--batch-size", "8", "--precision", "fp32",
                                 "--out", str(run), "--name", "cli-tiny", "--image-size", "24"])
    assert result.exit_code == 0, result.output
    assert "cli-tiny" in result.stdout and (run / "best.pt").is_file()
    result = runner.invoke(app, ["models", "list", "--json"])
    listing = json.loads(result.stdout)
    assert "cli-tiny" in listing["trained"]
    result = runner.invoke(app, ["models", "default", "cli-tiny"])
    assert result.exit_code == 0 and result.stdout.strip() == "cli-tiny"
    assert json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)["default"] == \
        "cli-tiny"
    assert "cli-tiny" in runner.invoke(app, ["models", "list"]).stdout
    result = runner.invoke(app, ["evaluate", "--model", "cli-tiny", "--data", str(prepared),
                                 "--out", str(tmp_path / "ev")])
    assert result.exit_code == 0, result.output
    assert "confusion matrix" in result.stdout and "macro-F1" in result.stdout
    assert (tmp_path / "ev" / "confusion.png").is_file()
    images = prepared.parent.parent / "images"
    out = tmp_path / "pred.csv"
    result = runner.invoke(app, ["predict", str(images), "--csv", str(out)])
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader(out.open()))
    assert len(rows) == 36 and all(r["error"] == "" for r in rows)
    result = runner.invoke(app, ["predict", str(images / "angry" / "angry_000.png"),
                                 "--csv", "-", "--model", "cli-tiny"])
    assert result.exit_code == 0
    assert result.stdout.splitlines()[0].startswith("path,label,confidence,prob_angry")
    assert len(result.stdout.splitlines()) == 2


def test_predict_strict_fails_on_bad_file(prepared, tiny_arch, tmp_path):
    runner.invoke(app, ["train", "--data", str(prepared), "--arch", tiny_arch, "--epochs", "1",
                        "--out", str(tmp_path / "run"), "--image-size", "24"])
    photos = tmp_path / "p"
    photos.mkdir()
    (photos / "bad.jpg").write_bytes(b"garbage")
    result = runner.invoke(app, ["predict", str(photos), "--csv", str(tmp_path / "o.csv"),
                                 "--strict", "--checkpoint", str(tmp_path / "run" / "best.pt")])
    assert result.exit_code == 1 and "1 file could not be read (--strict)" in result.output
    assert (tmp_path / "o.csv").is_file()


def test_readers_switch_gives_the_same_results(prepared, checkpoint, tmp_path):
    """``--readers 1`` turns the parallel CPU readers off; the results do not change.
    ``--streams``, the old name, still works (hidden)."""
    from tests.conftest import make_image

    photos = tmp_path / "p"
    for i in range(7):
        make_image(photos / f"{i}.png", color=(30 * i, 200 - 20 * i, 60))
    (photos / "bad.jpg").write_bytes(b"garbage")
    outs = {}
    for n in ("1", "3"):
        out = tmp_path / f"o{n}.csv"
        result = runner.invoke(app, ["predict", str(photos), "--csv", str(out), "--readers", n,
                                     "--batch-size", "2", "--precision", "fp32",
                                     "--checkpoint", str(checkpoint)])
        assert result.exit_code == 0, result.output
        outs[n] = list(csv.DictReader(out.open()))
    assert len(outs["1"]) == 8 and [r["path"] for r in outs["1"]] == [r["path"] for r in outs["3"]]
    for a, b in zip(outs["1"], outs["3"], strict=True):
        assert (a["label"], a["error"]) == (b["label"], b["error"])
    reports = []
    for n in ("1", "2"):
        result = runner.invoke(app, ["evaluate", "--checkpoint", str(checkpoint), "--data",
                                     str(prepared), "--split", "all", "--json", "--streams", n,
                                     "--precision", "fp32", "--batch-size", "5"])
        assert result.exit_code == 0, result.output
        reports.append(json.loads(result.stdout))
    assert reports[0]["confusion_matrix"] == reports[1]["confusion_matrix"]
    assert reports[0]["macro_f1"] == pytest.approx(reports[1]["macro_f1"])
    assert runner.invoke(app, ["predict", str(photos), "--readers", "0"]).exit_code == 2
    both = runner.invoke(app, ["predict", str(photos), "--readers", "1", "--streams", "2",
                               "--checkpoint", str(checkpoint)])
    assert both.exit_code == 2 and "--readers" in both.output


def test_errors_are_one_red_line_exit_1(tmp_path):
    result = runner.invoke(app, ["predict", str(tmp_path / "missing")])
    assert result.exit_code == 1
    assert result.stderr.startswith("Error:") and "Traceback" not in result.output
    result = runner.invoke(app, ["train", "--epochs", "0"])
    assert result.exit_code == 2
    result = runner.invoke(app, ["train", "--device", "tpu", "--out", str(tmp_path / "r")])
    assert result.exit_code == 1 and "Error:" in result.stderr


def test_cli_reference_is_current():
    from pathlib import Path

    root = Path(__file__).resolve().parents[2]
    proc = subprocess.run([sys.executable, str(root / "scripts" / "gen_cli_docs.py"), "--check"],
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    docs = (root / "docs" / "cli.md").read_text()
    # the frictions of issue 12: rich markup ate "[onnx]", HTML entities, "<bool>" on flags
    assert "pip install 'babyemo[onnx]'" in docs
    assert "&#x27;" not in docs and "<bool>" not in docs
    assert "runs/&lt;time&gt;-&lt;arch&gt;" in docs  # bare <tags> would vanish in Markdown


def test_train_on_train_val_evaluate_where_record_tta_and_model_card(prepared, tiny_arch,
                                                                     tmp_path):
    from babyemo.checkpoint import load_checkpoint
    from babyemo.data.preparation.manifest import read_manifest

    base = ["--data", str(prepared), "--arch", tiny_arch, "--epochs", "1", "--batch-size", "8",
            "--precision", "fp32", "--image-size", "24"]
    assert runner.invoke(app, ["train", *base, "--out", str(tmp_path / "a")]).exit_code == 0
    result = runner.invoke(app, ["train", *base, "--out", str(tmp_path / "b"),
                                 "--train-on", "train,val"])
    assert result.exit_code == 0, result.output
    final = tmp_path / "b" / "best.pt"
    assert load_checkpoint(final).train["n_val"] == 0
    result = runner.invoke(app, ["calibrate", "--checkpoint", str(final), "--copy-from",
                                 str(tmp_path / "a" / "best.pt")])
    assert result.exit_code == 0, result.output
    assert load_checkpoint(final).calibration["copied_from"].endswith("best.pt")
    rows = read_manifest(prepared).rows_for("test")
    meta = tmp_path / "meta.csv"
    meta.write_text("path,source\n" + "".join(
        f"{r.path},{'stock' if i % 2 else 'other'}\n" for i, r in enumerate(rows)))
    n_stock = len(rows) // 2
    result = runner.invoke(app, ["evaluate", "--checkpoint", str(final), "--data",
                                 str(prepared), "--metadata", str(meta), "--where",
                                 "source=stock", "--tta", "--record", "--bootstrap", "100"])
    assert result.exit_code == 0, result.output
    assert f"source=stock, n={n_stock}" in result.stdout and "mirror image" in result.stdout
    assert "F1 95% CI" in result.stdout
    result = runner.invoke(app, ["models", "card", str(final), "--out", str(tmp_path / "c.md")])
    assert result.exit_code == 0, result.output
    card = (tmp_path / "c.md").read_text()
    assert "(source=stock)" in card and "flip TTA" in card and "train+val" in card
    printed = runner.invoke(app, ["models", "card", str(final)])
    assert printed.exit_code == 0 and printed.stdout == card
    bad = runner.invoke(app, ["evaluate", "--checkpoint", str(final), "--data", str(prepared),
                              "--metadata", str(meta), "--where", "source"])
    assert bad.exit_code == 1 and "Error:" in bad.output
