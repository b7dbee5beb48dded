"""``babyemo export`` and ``--backend onnxruntime`` of predict / evaluate."""

from __future__ import annotations

import csv
import sys

import pytest
from typer.testing import CliRunner

from babyemo.cli import app
from babyemo.config import TrainConfig
from babyemo.training import train
from tests.conftest import run_cli_in_subprocess

runner = CliRunner()


def test_export_help_imports_no_heavy_module():
    proc = run_cli_in_subprocess(["export", "--help"], heavy=(
        "torch", "torchvision", "onnx", "onnxruntime", "onnxscript"))
    assert "--int8" in proc.stdout and "--quantization-data" in proc.stdout
    assert "--calibration-data" not in proc.stdout  # the old name is hidden


def test_export_int8_then_predict_and_evaluate_with_onnxruntime(prepared, tiny_arch, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    ckpt = train(TrainConfig(data=str(prepared), arch=tiny_arch, image_size=None, epochs=2,
                             batch_size=8, precision="fp32", out=str(tmp_path / "run"))
                 ).best_checkpoint
    out = tmp_path / "exp" / "tiny.onnx"
    result = runner.invoke(app, ["export", str(ckpt), "--format", "onnx", "--out", str(out),
                                 "--int8", "--quantization-images", "6"])
    assert result.exit_code == 0, result.output
    int8 = tmp_path / "exp" / "tiny.int8.onnx"
    assert out.is_file() and int8.is_file()
    assert "max |diff|" in result.stdout and "macro-F1 fp32" in result.stdout
    assert "6 images of the train split" in result.stdout

    images = prepared.parent.parent / "images"
    labels = {}
    for args in ([], ["--backend", "onnxruntime", "--onnx", str(out)]):
        csv_out = tmp_path / f"pred{len(args)}.csv"
        result = runner.invoke(app, ["predict", str(images), "--checkpoint", str(ckpt),
                                     "--precision", "fp32", "--csv", str(csv_out), *args])
        assert result.exit_code == 0, result.output
        labels[len(args)] = [r["label"] for r in csv.DictReader(csv_out.open())]
    assert len(labels[0]) == 36 and labels[0] == labels[4]
    assert "backend: onnxruntime cpu fp32" in result.stdout

    result = runner.invoke(app, ["evaluate", "--checkpoint", str(ckpt), "--data", str(prepared),
                                 "--split", "val", "--backend", "onnxruntime", "--onnx",
                                 str(int8)])
    assert result.exit_code == 0, result.output
    assert "backend: onnxruntime (int8)" in result.stdout and "at export, on val" in result.stdout
    assert "macro-F1" in result.stdout

    # nothing exported beside the checkpoint: one red line with the command to run
    result = runner.invoke(app, ["predict", str(images), "--checkpoint", str(ckpt),
                                 "--backend", "onnxruntime"])
    assert result.exit_code == 1
    assert "Error:" in result.stderr and "babyemo export" in result.stderr
    assert "Traceback" not in result.output


def test_missing_onnxruntime_is_one_line(prepared, tiny_arch, tmp_path, monkeypatch):
    ckpt = train(TrainConfig(data=str(prepared), arch=tiny_arch, image_size=None, epochs=1,
                             batch_size=8, precision="fp32", out=str(tmp_path / "run"))
                 ).best_checkpoint
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    for args in (["export", str(ckpt)],
                 ["evaluate", "--checkpoint", str(ckpt), "--data", str(prepared),
                  "--backend", "onnxruntime"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        lines = [x for x in result.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and "pip install 'babyemo[onnx]'" in lines[0]


def test_old_option_names_are_hidden_aliases(tmp_path):
    """Issue 14: "calibration" now means temperature scaling only; the int8 sample's options
    were renamed, the old names still parse (hidden) and may not contradict the new ones."""
    ckpt = tmp_path / "m.pt"
    ckpt.write_bytes(b"")
    result = runner.invoke(app, ["export", str(ckpt), "--quantization-images", "7",
                                 "--calibration-images", "6"])
    assert result.exit_code == 2 and "--quantization-images" in result.output
    result = runner.invoke(app, ["export", str(ckpt), "--quantization-data", str(tmp_path / "a"),
                                 "--calibration-data", str(tmp_path / "b")])
    assert result.exit_code == 2 and "--quantization-data" in result.output
