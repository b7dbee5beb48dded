"""Two babyemo processes, one home (issue 12): the README's main job stopped at `evaluate`
because another process prepared (and removed) a dataset while it trained."""

from __future__ import annotations

import os
import subprocess
import sys

from typer.testing import CliRunner

from babyemo.cli import app
from tests.conftest import make_imagefolder

runner = CliRunner()


def test_evaluate_uses_the_models_manifest_while_another_process_prepares(tmp_path, tiny_arch):
    home = os.environ["BABYEMO_HOME"]
    root = make_imagefolder(tmp_path / "mine", per_class=8)
    assert runner.invoke(app, ["data", "prepare", str(root), "--out",
                               str(tmp_path / "prep")]).exit_code == 0
    result = runner.invoke(app, ["train", "--arch", tiny_arch, "--epochs", "1",
                                 "--batch-size", "8", "--precision", "fp32", "--out",
                                 str(tmp_path / "run"), "--name", "mine"])
    assert result.exit_code == 0, result.output
    assert f"manifest: {tmp_path / 'prep' / 'manifest.csv'} (last prepared)" in result.stdout

    # meanwhile, a second process on the same home prepares another dataset, then removes it
    other = make_imagefolder(tmp_path / "other", per_class=4)
    script = ("import shutil, sys\nfrom babyemo.data.preparation.prepare import prepare\n"
              "r = prepare(sys.argv[1], out=sys.argv[2])\nshutil.rmtree(sys.argv[2])\n")
    proc = subprocess.run([sys.executable, "-c", script, str(other), str(tmp_path / "gone")],
                          env={**os.environ, "BABYEMO_HOME": home}, capture_output=True,
                          text=True)
    assert proc.returncode == 0, proc.stderr

    result = runner.invoke(app, ["evaluate", "--model", "mine", "--split", "test"])
    assert result.exit_code == 0, result.output
    assert (f"on {(tmp_path / 'prep' / 'manifest.csv').resolve()} (recorded in the "
            "checkpoint), split test") in result.stdout
    result = runner.invoke(app, ["calibrate", "--model", "mine", "--dry-run"])
    assert result.exit_code == 0, result.output
    assert "(recorded in the checkpoint)" in result.stdout

    # train itself defaults to the last prepared, which is now gone: an honest message
    result = runner.invoke(app, ["train", "--arch", tiny_arch, "--epochs", "1",
                                 "--out", str(tmp_path / "run2")])
    assert result.exit_code == 1
    assert "no longer exists (deleted or moved since)" in result.stderr
    assert "--data MANIFEST" in result.stderr


def test_resume_keeps_its_manifest_when_the_last_prepared_changes(tmp_path, tiny_arch):
    mine = runner.invoke(app, ["data", "prepare", str(make_imagefolder(tmp_path / "a",
                                                                       per_class=8)),
                               "--out", str(tmp_path / "pa")])
    assert mine.exit_code == 0
    args = ["train", "--arch", tiny_arch, "--batch-size", "8", "--precision", "fp32", "--out",
            str(tmp_path / "run")]
    assert runner.invoke(app, [*args, "--epochs", "1"]).exit_code == 0
    runner.invoke(app, ["data", "prepare", str(make_imagefolder(tmp_path / "b", per_class=5)),
                        "--out", str(tmp_path / "pb")])
    result = runner.invoke(app, [*args, "--epochs", "2", "--resume"])
    assert result.exit_code == 0, result.output
    assert f"manifest: {(tmp_path / 'pa' / 'manifest.csv').resolve()}" in result.stdout


def test_calibrate_refuses_a_split_the_model_trained_on(tmp_path, tiny_arch, caplog):
    """A train+val model fitted on val (the packaged model's case) gets a temperature from
    images it has seen; evaluate on such a split warns that it is not held out."""
    root = make_imagefolder(tmp_path / "mine", per_class=8)
    runner.invoke(app, ["data", "prepare", str(root), "--out", str(tmp_path / "prep")])
    result = runner.invoke(app, ["train", "--arch", tiny_arch, "--epochs", "1",
                                 "--precision", "fp32", "--train-on", "train,val",
                                 "--out", str(tmp_path / "run"), "--name", "final"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["calibrate", "--model", "final", "--dry-run"])
    assert result.exit_code == 1
    assert "was trained on the 'val' split" in result.stderr and "--copy-from" in result.stderr
    result = runner.invoke(app, ["evaluate", "--model", "final", "--split", "val"])
    assert result.exit_code == 0, result.output
    assert "these metrics are not held-out estimates" in caplog.text
