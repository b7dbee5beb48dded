"""`babyemo train`'s options reach TrainConfig untouched: the CLI and the API take the same
values (issue 14), and the old option name --early-stopping still works, hidden."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from babyemo.cli import app
from babyemo.config import AugmentConfig, TrainConfig

runner = CliRunner()


@pytest.fixture
def captured(monkeypatch, tmp_path):
    """Replace ``babyemo.training.train`` by a stub recording the config it is given."""
    import babyemo.training
    from babyemo.training import TrainResult

    configs: list[TrainConfig] = []

    def fake_train(config: TrainConfig) -> TrainResult:
        configs.append(config)
        return TrainResult(run_dir=tmp_path, best_checkpoint=tmp_path / "best.pt",
                           last_checkpoint=tmp_path / "last.pt", best_epoch=1, best_metrics={},
                           name="stub", manifest=Path("m.csv"), manifest_source="given")

    monkeypatch.setattr(babyemo.training, "train", fake_train)
    return configs


def test_train_cli_and_api_give_the_same_config(captured, tmp_path):
    out = str(tmp_path / "run")
    args = ["train", "--out", out, "--augment", "light", "--train-on", "train, val",
            "--patience", "4", "--epochs", "7"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    api = TrainConfig(out=out, augment="light", train_splits="train, val", patience=4, epochs=7)
    assert captured[-1] == api
    assert api.augment == AugmentConfig.preset("light") and api.train_splits == ("train", "val")
    assert runner.invoke(app, ["train", "--out", out]).exit_code == 0
    assert captured[-1] == TrainConfig(out=out)  # the CLI's defaults are the API's


def test_train_early_stopping_is_a_hidden_alias_of_patience(captured, tmp_path, caplog):
    out = str(tmp_path / "run")
    result = runner.invoke(app, ["train", "--out", out, "--early-stopping", "3"])
    assert result.exit_code == 0, result.output
    assert captured[-1].patience == 3
    assert any("now --patience" in r.getMessage() for r in caplog.records)  # a warning
    both = runner.invoke(app, ["train", "--out", out, "--early-stopping", "3",
                               "--patience", "3"])
    assert both.exit_code == 2 and "--patience" in both.output
    assert len(captured) == 1
    help_text = runner.invoke(app, ["train", "--help"]).output
    assert "--patience" in help_text and "--early-stopping" not in help_text


@pytest.mark.parametrize(("args", "match"), [(["--augment", "heavy"], "augmentation preset"),
                                             (["--train-on", "val"], "train_splits"),
                                             (["--unlabelled", "photos"], "--teacher"),
                                             (["--ema", "1.5"], "'ema'"),
                                             (["--augment", "strong,blur=2"], "probability")])
def test_train_cli_bad_values_are_the_api_errors(captured, tmp_path, args, match):
    result = runner.invoke(app, ["train", "--out", str(tmp_path / "run"), *args])
    assert result.exit_code == 1 and "Error:" in result.stderr and match in result.stderr
    assert not captured


def test_train_recipe_and_distillation_options_reach_the_config(captured, tmp_path):
    """Issue 15: --augment strong/bridge and changes, --mixup, --cutmix, --ema, --teacher,
    --distill-temperature, --distill-alpha, --unlabelled."""
    out = str(tmp_path / "run")
    args = ["train", "--out", out, "--augment", "strong,blur=0.1", "--mixup", "0.2",
            "--cutmix", "1", "--ema", "0.999", "--teacher", "babyemo-infant",
            "--distill-temperature", "2", "--distill-alpha", "0.7",
            "--unlabelled", str(tmp_path / "photos")]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    api = TrainConfig(out=out, augment="strong,blur=0.1", mixup=0.2, cutmix=1.0, ema=0.999,
                      teacher="babyemo-infant", distill_temperature=2.0, distill_alpha=0.7,
                      unlabelled=str(tmp_path / "photos"))
    assert captured[-1] == api
    assert api.augment.auto == "trivialaugment" and api.augment.blur == 0.1
    help_text = runner.invoke(app, ["train", "--help"]).output
    for option in ("--mixup", "--cutmix", "--ema", "--teacher", "--distill-temperature",
                   "--distill-alpha", "--unlabelled", "bridge"):
        assert option in help_text, option


def test_train_cli_aux_options_reach_the_config(captured, tmp_path):
    out = str(tmp_path / "run")
    fer = str(tmp_path / "fer")
    result = runner.invoke(app, ["train", "--out", out, "--aux-data", fer,
                                 "--aux-weight", "0.3"])
    assert result.exit_code == 0, result.output
    assert captured[-1] == TrainConfig(out=out, aux_data=fer, aux_weight=0.3)
    assert runner.invoke(app, ["train", "--out", out]).exit_code == 0
    assert captured[-1].aux_data is None and captured[-1].aux_weight == 0.5
    bad = runner.invoke(app, ["train", "--out", out, "--aux-data", fer, "--aux-weight", "0"])
    assert bad.exit_code == 1 and "'aux_weight'" in bad.stderr
    both = runner.invoke(app, ["train", "--out", out, "--aux-data", fer, "--mixup", "0.2"])
    assert both.exit_code == 1 and "--mixup" in both.stderr
    nproc = runner.invoke(app, ["train", "--out", out, "--aux-data", fer, "--nproc", "2"])
    assert nproc.exit_code == 2 and "--nproc" in nproc.output
    assert len(captured) == 2
    help_text = runner.invoke(app, ["train", "--help"]).output
    assert "--aux-data" in help_text and "--aux-weight" in help_text
    assert "classifier head" in help_text
