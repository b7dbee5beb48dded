"""Multi-task training (`train --aux-data MANIFEST --aux-weight W`, issue 15): an auxiliary
task with its own head on the shared backbone, batched with every main batch; the saved
model is the main task only; resume continues exactly; refusals before anything is
written; the CLI options."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from babyemo.checkpoint import load_checkpoint, read_checkpoint_dict
from babyemo.cli import app
from babyemo.config import InputSpec, TrainConfig
from babyemo.distributed import DistContext
from babyemo.errors import ConfigError, DataError
from babyemo.training import train
from tests.conftest import make_image

runner = CliRunner()


@pytest.fixture
def aux_manifest(tmp_path: Path) -> Path:
    """A prepared 2-class grayscale 16 px auxiliary task (dark vs bright faces, 14 each):
    separable, and of another size and channel count than the main task's 24 px RGB."""
    from babyemo.data.preparation.prepare import prepare

    root = tmp_path / "aux-images"
    for label, level in (("neutral", 40), ("surprise", 215)):
        for i in range(14):
            v = level + (i % 7) * 4 - 12
            make_image(root / label / f"{label}_{i:02d}.png", color=(v, v, v), size=(16, 16),
                       mode="L")
    return prepare(root, out=tmp_path / "aux-prepared", split=(0.8, 0.1, 0.1),
                   seed=0).manifest_path


def _config(prepared, aux, tiny_arch, out, **kw):
    base = dict(data=str(prepared), arch=tiny_arch, image_size=None, epochs=2, batch_size=8,
                lr=0.05, precision="fp32", out=str(out), seed=1, label_smoothing=0.0,
                aux_data=str(aux) if aux else None, aux_weight=1.0)
    base.update(kw)
    return TrainConfig(**base)


def test_aux_run_learns_the_aux_task_and_reports_both(prepared, aux_manifest, tiny_arch,
                                                      tmp_path, caplog):
    caplog.set_level("INFO", logger="babyemo.training")
    result = train(_config(prepared, aux_manifest, tiny_arch, tmp_path / "run", epochs=4,
                           augment="none"))
    last = result.history[-1]
    assert last["aux_train_acc"] >= 0.9, result.history  # chance is 0.5
    assert last["aux_train_loss"] < result.history[0]["aux_train_loss"]
    assert {"val_macro_f1", "train_loss", "train_acc"} <= last.keys()
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == list(range(1, 5))
    header = list(rows[0].keys())
    assert header.index("aux_train_loss") == header.index("train_acc") + 1
    assert float(rows[-1]["aux_train_acc"]) == pytest.approx(last["aux_train_acc"])
    messages = [r.getMessage() for r in caplog.records]
    aux_line = next(m for m in messages if m.startswith("Auxiliary task:"))
    assert str(aux_manifest.resolve()) in aux_line and "neutral, surprise" in aux_line
    assert "train images" in aux_line and "1 x CE_aux" in aux_line
    assert sum(" aux loss " in m for m in messages if m.startswith("epoch ")) == 4
    # the aux images were read with the main run's spec: 16 px gray -> 24 px RGB
    assert json.loads((result.run_dir / "config.json").read_text())["aux"]["n_train"] > 0


def test_best_pt_is_the_main_task_only_and_predicts(prepared, aux_manifest, tiny_arch,
                                                    tmp_path):
    aux = train(_config(prepared, aux_manifest, tiny_arch, tmp_path / "aux", epochs=1,
                        aux_weight=0.3))
    plain = train(_config(prepared, None, tiny_arch, tmp_path / "plain", epochs=1))
    raw = torch.load(aux.best_checkpoint, map_location="cpu", weights_only=True)
    assert raw["state_dict"].keys() == torch.load(plain.best_checkpoint, map_location="cpu",
                                                  weights_only=True)["state_dict"].keys()
    ckpt = load_checkpoint(aux.best_checkpoint)
    assert ckpt.class_names == ["angry", "crying", "happy"]
    config = ckpt.train["config"]
    assert config["aux_data"] == str(aux_manifest.resolve()) and config["aux_weight"] == 0.3
    assert ckpt.train["aux"]["class_names"] == ["neutral", "surprise"]
    last = read_checkpoint_dict(aux.last_checkpoint)
    assert last["resume"]["aux_head"]["weight"].shape == (2, 8)  # tiny arch: 8 features
    assert last["state_dict"].keys() == raw["state_dict"].keys()

    from babyemo.inference import InferenceModel
    from babyemo.runtime import Runtime

    model = InferenceModel(ckpt, Runtime(device="cpu"))
    probs = model.probs(torch.rand(2, 3, 24, 24))
    assert probs.shape == (2, 3) and torch.allclose(probs.sum(1), torch.ones(2), atol=1e-5)
    photo = make_image(tmp_path / "photos" / "a.png", size=(24, 24))
    result = runner.invoke(app, ["predict", str(photo.parent), "--checkpoint",
                                 str(aux.best_checkpoint), "--csv", "-", "--faces", "none"])
    assert result.exit_code == 0, result.output
    assert "a.png" in result.stdout and "prob_crying" in result.stdout


def test_aux_batches_cycle_reproducibly_with_the_main_spec(prepared, aux_manifest, tiny_arch):
    from babyemo.data.preparation.manifest import read_manifest
    from babyemo.models.registry import create_model, get_arch
    from babyemo.training.multitask import prepare_aux

    info = get_arch(tiny_arch)
    model = create_model(info, num_classes=3)
    cfg = _config(prepared, aux_manifest, tiny_arch, None, batch_size=8)
    task = prepare_aux(cfg, read_manifest(aux_manifest), info=info, model=model,
                       spec=info.default_input, cache=None, device=torch.device("cpu"))
    assert task.class_names == ["neutral", "surprise"] and task.head.in_features == 8
    n = len(task.dataset)  # 22 train images: 2 full batches per pass (the last dropped)

    def labels(epoch, k):
        torch.manual_seed(0)  # the augmentations: the loop reseeds torch every epoch
        it = task.batches(cfg, torch.device("cpu"), epoch)
        out = []
        for _ in range(k):
            x, y = next(it)
            assert x.shape == (8, 3, 24, 24) and x.dtype == torch.uint8  # 16 px gray -> 24 RGB
            out.append(y.tolist())
        return out

    k = 2 * (n // 8) + 1  # more batches than two passes: it cycles
    assert labels(3, k) == labels(3, k)
    assert labels(3, k) != labels(4, k)
    with task.tap.capture() as tap:
        model(torch.rand(5, 3, 24, 24))
        assert tap.take().shape == (5, 8)
    model(torch.rand(2, 3, 24, 24))
    assert task.tap.features is None  # nothing kept outside capture()


def test_aux_run_with_ema_and_bf16_autocast(prepared, aux_manifest, tiny_arch, tmp_path):
    result = train(_config(prepared, aux_manifest, tiny_arch, tmp_path / "run", epochs=1,
                           ema=0.9, precision="bf16"))
    assert torch.isfinite(torch.tensor(result.history[-1]["aux_train_loss"]))
    last = read_checkpoint_dict(result.last_checkpoint)
    assert last["resume"]["ema"]["model"].keys() == last["state_dict"].keys()
    assert not any(k.startswith("aux") for k in last["state_dict"])


def test_resume_matches_uninterrupted_aux_run(prepared, aux_manifest, tiny_arch, tmp_path):
    full = train(_config(prepared, aux_manifest, tiny_arch, tmp_path / "full"))
    cfg = _config(prepared, aux_manifest, tiny_arch, tmp_path / "resumed")
    _interrupt_after_epoch_one(cfg)
    assert read_checkpoint_dict(tmp_path / "resumed" / "last.pt")["resume"]["epoch"] == 1
    # the manifest's folder names the same file: not a change
    resumed = train(TrainConfig(**{**cfg.to_dict(), "resume": True,
                                   "aux_data": str(aux_manifest.parent)}))
    assert [r["epoch"] for r in resumed.history] == [1, 2]
    a, b = (read_checkpoint_dict(r.last_checkpoint) for r in (full, resumed))
    assert all(torch.equal(a["state_dict"][k], b["state_dict"][k]) for k in a["state_dict"])
    assert all(torch.equal(a["resume"]["aux_head"][k], b["resume"]["aux_head"][k])
               for k in ("weight", "bias"))
    assert resumed.history[-1]["aux_train_loss"] == pytest.approx(
        full.history[-1]["aux_train_loss"])
    # another auxiliary task, or none on a plain run, is a conflicting option
    other = tmp_path / "other.csv"
    other.write_bytes(aux_manifest.read_bytes())
    with pytest.raises(ConfigError, match="--aux-data"):
        train(TrainConfig(**{**cfg.to_dict(), "resume": True, "aux_data": str(other)}))
    with pytest.raises(ConfigError, match="--aux-weight"):
        train(TrainConfig(**{**cfg.to_dict(), "resume": True, "aux_weight": 0.2}))
    plain = _config(prepared, None, tiny_arch, tmp_path / "plain", epochs=1)
    train(plain)
    with pytest.raises(ConfigError, match="--aux-data"):
        train(TrainConfig(**{**plain.to_dict(), "resume": True,
                             "aux_data": str(aux_manifest)}))


def _interrupt_after_epoch_one(cfg):
    from tests.test_training import _interrupt_after_epoch_one as interrupt

    interrupt(cfg)


@pytest.fixture
def no_linear_arch():
    """An arch whose classifier is a 1x1 convolution (no nn.Linear head), unregistered
    afterwards."""
    from torch import nn

    from babyemo.models import registry

    name = "tiny_conv_head_test"

    @registry.register_arch(name, default_input=InputSpec(size=24, channels=3,
                                                          mean=(0.5,) * 3, std=(0.5,) * 3),
                            description="conv-head test CNN")
    def _build(*, num_classes: int, in_channels: int, pretrained: bool = False) -> nn.Module:
        return nn.Sequential(nn.Conv2d(in_channels, num_classes, 1), nn.AdaptiveAvgPool2d(1),
                             nn.Flatten())

    yield name
    registry._ARCHS.pop(name, None)


def test_refusals_come_before_anything_is_written(prepared, aux_manifest, tiny_arch,
                                                  no_linear_arch, tmp_path):
    from babyemo.data.preparation.manifest import read_manifest, write_manifest
    from babyemo.training.multitask import check_aux_manifest

    out = tmp_path / "run"
    m = read_manifest(aux_manifest)
    no_train = write_manifest([dataclasses.replace(r, split="val") for r in m.rows],
                              tmp_path / "no-train", info=m.info)
    copy = tmp_path / "copy"
    copy.mkdir()
    (copy / "manifest.csv").write_bytes(prepared.read_bytes())
    (copy / "dataset.json").write_bytes((prepared.parent / "dataset.json").read_bytes())
    cases = [
        (dict(aux_data=str(no_train)), DataError, "no 'train' rows"),
        (dict(aux_data=str(prepared)), DataError, "is the main manifest"),
        (dict(aux_data=str(prepared.parent)), DataError, "is the main manifest"),
        (dict(aux_data=str(copy)), DataError, "is the main manifest"),  # same bytes
        (dict(arch=no_linear_arch, init="none"), ConfigError, "nn.Linear"),
    ]
    for change, error, match in cases:
        with pytest.raises(error, match=match) as err:
            train(_config(prepared, aux_manifest, tiny_arch, out, **change))
        assert err.value.hint
        assert not out.exists(), change
    for change, match in ((dict(teacher="some-model"), "--teacher"),
                          (dict(teacher="m", unlabelled="photos"), "--teacher, --unlabelled"),
                          (dict(mixup=0.2), "--mixup"), (dict(cutmix=1.0), "--cutmix"),
                          (dict(aux_weight=0.0), "'aux_weight'"),
                          (dict(aux_weight=-1.0), "'aux_weight'")):
        with pytest.raises(ConfigError, match=match):
            _config(prepared, aux_manifest, tiny_arch, out, **change)
    # without --aux-data, --aux-weight is just unused; --mixup alone is fine
    assert _config(prepared, None, tiny_arch, out, mixup=0.2).aux_weight == 1.0
    # torchrun / --nproc
    main = read_manifest(prepared)
    cfg = _config(prepared, aux_manifest, tiny_arch, out)
    with pytest.raises(ConfigError, match="distributed") as err:
        check_aux_manifest(cfg, main, DistContext(rank=0, world_size=2))
    assert "--nproc" in err.value.hint
    assert check_aux_manifest(cfg, main, DistContext()).path == aux_manifest
    assert check_aux_manifest(_config(prepared, None, tiny_arch, out), main) is None
    assert not out.exists()


def test_folds_train_each_fold_with_the_same_aux_task(prepared, aux_manifest, tiny_arch,
                                                      tmp_path):
    from babyemo.training import run_folds
    from babyemo.training.folds import FoldPlan  # noqa: F401 (the folds API in use)

    cfg = _config(prepared, aux_manifest, tiny_arch, tmp_path / "cv", epochs=1,
                  select="last")
    folds = run_folds(cfg, 2)
    for k in (1, 2):
        ckpt = load_checkpoint(tmp_path / "cv" / f"fold-{k}" / "best.pt")
        assert ckpt.train["aux"]["manifest"] == str(aux_manifest.resolve())
    assert folds is not None
    # the folds' parent manifest as the auxiliary task: its held-out rows would leak
    with pytest.raises(DataError, match="cross-validation parent"):
        train(TrainConfig(**{**cfg.to_dict(), "out": str(tmp_path / "leak"),
                             "data": str(tmp_path / "cv" / "manifests" / "fold-1"),
                             "aux_data": str(prepared)}))
