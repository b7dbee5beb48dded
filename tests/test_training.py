import csv
import json

import pytest
import torch

from babyemo.checkpoint import load_checkpoint, read_checkpoint_dict
from babyemo.config import InputSpec, TrainConfig
from babyemo.errors import ConfigError, DataError
from babyemo.models import store
from babyemo.training import train


def _config(prepared, tiny_arch, out, **kw):
    base = dict(data=str(prepared), arch=tiny_arch, image_size=None, epochs=2, batch_size=8,
                lr=0.01, precision="fp32", out=str(out), seed=1)
    base.update(kw)
    return TrainConfig(**base)


def test_train_writes_run_and_registers_model(prepared, tiny_arch, tmp_path, caplog):
    caplog.set_level("INFO", logger="babyemo.training")
    result = train(_config(prepared, tiny_arch, tmp_path / "run", name="tiny"))
    # each epoch's per-class figures are labelled (issue 12: "[angry 0.85 ...]" unlabelled)
    epoch_lines = [r.message for r in caplog.records if r.message.startswith("epoch ")]
    assert len(epoch_lines) == 2
    assert all("(val recall per class: angry " in line for line in epoch_lines)
    assert result.manifest == prepared and result.manifest_source == "given"
    run = result.run_dir
    for name in ("config.json", "metrics.csv", "curves.png", "best.pt", "last.pt"):
        assert (run / name).is_file(), name
    rows = list(csv.DictReader((run / "metrics.csv").open()))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert {"val_macro_f1", "val_acc_angry", "val_acc_happy", "lr"} <= rows[0].keys()
    ckpt = load_checkpoint(result.best_checkpoint)
    assert ckpt.class_names == ["angry", "crying", "happy"]
    assert ckpt.arch == tiny_arch and ckpt.input_spec.size == 24
    assert ckpt.train["manifest_sha256"] and ckpt.train["config"]["epochs"] == 2
    assert ckpt.train["config"]["data"] == str(prepared.resolve())  # the file, not "last"
    assert "resume" not in ckpt.raw and "resume" in read_checkpoint_dict(result.last_checkpoint)
    assert store.get_trained("tiny")["checkpoint"] == str(result.best_checkpoint.resolve())
    assert store.default_model() in ("tiny", store.PACKAGED_MODEL)
    assert json.loads((run / "config.json").read_text())["n_train"] > 0


def test_training_learns_a_separable_task(prepared, tiny_arch, tmp_path):
    result = train(_config(prepared, tiny_arch, tmp_path / "run", epochs=12, lr=0.05,
                           augment={"hflip": 0.5, "rotation": 0.0, "translate": 0.0,
                                    "scale": (0.9, 1.0), "color_jitter": 0.0},
                           label_smoothing=0.0))
    assert result.best_metrics["accuracy"] >= 0.9, result.history[-1]


def test_refuses_non_empty_run_dir(prepared, tiny_arch, tmp_path):
    out = tmp_path / "run"
    out.mkdir()
    (out / "x").write_text("keep me")
    with pytest.raises(ConfigError, match="not empty"):
        train(_config(prepared, tiny_arch, out))
    assert (out / "x").read_text() == "keep me"


def test_resume_matches_uninterrupted_run(prepared, tiny_arch, tmp_path):
    full = train(_config(prepared, tiny_arch, tmp_path / "full", epochs=3))
    cfg = _config(prepared, tiny_arch, tmp_path / "resumed", epochs=3)
    _interrupt_after_epoch_one(cfg)
    assert read_checkpoint_dict(tmp_path / "resumed" / "last.pt")["resume"]["epoch"] == 1
    resumed = train(TrainConfig(**{**cfg.to_dict(), "resume": True}))
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    a = load_checkpoint(full.last_checkpoint).state_dict
    b = load_checkpoint(resumed.last_checkpoint).state_dict
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert resumed.history[-1]["train_loss"] == pytest.approx(full.history[-1]["train_loss"])
    assert resumed.best_metrics == full.best_metrics


def test_resume_refuses_options_that_conflict_with_the_run(prepared, tiny_arch, tmp_path):
    """Issue 13: `train --resume` ignored --arch, --lr, --image-size given with it."""
    cfg = _config(prepared, tiny_arch, tmp_path / "run", epochs=1)
    train(cfg)
    base = {**cfg.to_dict(), "resume": True}
    for change, text in (({"arch": "custom_resnet", "lr": 0.5}, "--lr 0.5 (the run has 0.01)"),
                         ({"image_size": 48}, "--image-size 48 (the run has None)"),
                         ({"epochs": 1, "seed": 9}, "--seed 9")):
        with pytest.raises(ConfigError, match="conflict with it") as err:
            train(TrainConfig(**{**base, **change}))
        assert text in err.value.message and "--epochs" in err.value.hint
        assert "--patience" in err.value.hint and "--early-stopping" not in err.value.hint
    other = tmp_path / "other.csv"
    other.write_bytes(prepared.read_bytes())
    with pytest.raises(ConfigError, match="--data"):
        train(TrainConfig(**{**base, "data": str(other)}))
    # more epochs extend the run; how it runs (precision, workers) may change
    longer = train(TrainConfig(**{**base, "epochs": 3, "num_workers": 0}))
    assert [r["epoch"] for r in longer.history] == [1, 2, 3]
    resume = read_checkpoint_dict(longer.last_checkpoint)
    assert resume["train"]["config"]["epochs"] == 3
    assert resume["resume"]["scheduler"]["T_max"] == 3


def _interrupt_after_epoch_one(cfg):
    """Run ``cfg`` and raise KeyboardInterrupt when epoch 1's summary is logged."""
    import logging

    class Stop(logging.Handler):
        def emit(self, record):
            if record.getMessage().startswith("epoch 1/"):
                raise KeyboardInterrupt

    handler = Stop()
    logger = logging.getLogger("babyemo.training")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        with pytest.raises(KeyboardInterrupt):
            train(cfg)
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def test_init_loads_backbone_and_replaces_head_when_classes_differ(prepared, tiny_arch,
                                                                    tmp_path):
    from babyemo.models.registry import create_model, get_arch
    from babyemo.training.finetune import init_from

    first = train(_config(prepared, tiny_arch, tmp_path / "a", epochs=1))
    donor = load_checkpoint(first.best_checkpoint)
    src = donor.state_dict
    arch = get_arch(tiny_arch)
    model = create_model(tiny_arch, num_classes=2)
    head_before = model.state_dict()["5.weight"].clone()
    init_from(model, donor, ["angry", "crying"], arch)
    state = model.state_dict()
    assert torch.equal(state["0.weight"], src["0.weight"])
    # head rows are copied for the shared classes (angry, crying), by name
    assert state["5.weight"].shape == (2, 8) and not torch.equal(state["5.weight"], head_before)
    assert torch.equal(state["5.weight"], src["5.weight"][:2])
    other = create_model(tiny_arch, num_classes=2)
    fresh = other.state_dict()["5.weight"].clone()
    init_from(other, donor, ["happy", "sleepy"], arch)
    assert torch.equal(other.state_dict()["5.weight"][0], src["5.weight"][2])  # happy
    assert torch.equal(other.state_dict()["5.weight"][1], fresh[1])  # sleepy: fresh
    same = create_model(tiny_arch, num_classes=3)
    info = init_from(same, donor, ["angry", "crying", "happy"], arch)
    assert torch.equal(same.state_dict()["5.weight"], src["5.weight"])
    assert info["head_classes"] == ["angry", "crying", "happy"] and info["epoch"] == 1
    assert info["tensors_loaded"] == info["tensors"]  # the head merged by class name
    # a fine-tuned model records what it was initialised from
    tuned = train(_config(prepared, tiny_arch, tmp_path / "b", epochs=1,
                          init=str(first.best_checkpoint)))
    init = load_checkpoint(tuned.best_checkpoint).train["init"]
    assert init["checkpoint"] == str(first.best_checkpoint.resolve())
    assert init["arch"] == tiny_arch and init["n_train"] > 0


def test_train_without_manifest_is_a_clear_error(tiny_arch, tmp_path):
    with pytest.raises(DataError, match="prepare"):
        train(TrainConfig(arch=tiny_arch, out=str(tmp_path / "r"), epochs=1))
    assert not (tmp_path / "r").exists()  # nothing half-made


def test_errors_are_raised_before_any_training(prepared, tiny_arch, tmp_path):
    from babyemo.errors import DeviceError, RegistryError

    with pytest.raises(DeviceError):
        train(_config(prepared, tiny_arch, tmp_path / "a", device="cuda:7"))
    train(_config(prepared, tiny_arch, tmp_path / "b", epochs=1, name="taken"))
    with pytest.raises(RegistryError, match="taken"):
        train(_config(prepared, tiny_arch, tmp_path / "c", epochs=50, name="taken"))
    assert not (tmp_path / "a").exists() and not (tmp_path / "c").exists()


@pytest.mark.parametrize("cache", ["none", "ram", "disk"])
def test_cache_modes_train_identically(prepared, tiny_arch, tmp_path, cache):
    result = train(_config(prepared, tiny_arch, tmp_path / cache, cache=cache))
    reference = train(_config(prepared, tiny_arch, tmp_path / "ref", cache="none"))
    assert json.loads((result.run_dir / "config.json").read_text())["cache"] == cache
    a = read_checkpoint_dict(result.last_checkpoint)
    b = read_checkpoint_dict(reference.last_checkpoint)
    for k, v in a["state_dict"].items():
        assert torch.equal(v, b["state_dict"][k]), k


def test_compile_wraps_the_model_but_checkpoints_keep_plain_names(prepared, tiny_arch, tmp_path,
                                                                   monkeypatch):
    compiled = []

    def fake_compile(model):  # the real one costs 10-60 s of compilation here
        compiled.append(model)
        return model

    monkeypatch.setattr(torch, "compile", fake_compile)
    result = train(_config(prepared, tiny_arch, tmp_path / "run", epochs=1, compile=True))
    assert len(compiled) == 1
    keys = read_checkpoint_dict(result.best_checkpoint)["state_dict"].keys()
    assert keys and not any(k.startswith("_orig_mod.") for k in keys)


def test_train_on_train_and_val_has_no_validation_and_keeps_the_last_epoch(prepared, tiny_arch,
                                                                          tmp_path):
    from babyemo.data.preparation.manifest import read_manifest

    manifest = read_manifest(prepared)
    n_train_val = len(manifest.rows_for("train")) + len(manifest.rows_for("val"))
    result = train(_config(prepared, tiny_arch, tmp_path / "run", epochs=3,
                           train_splits=("train", "val")))
    info = json.loads((result.run_dir / "config.json").read_text())
    assert info["n_train"] == n_train_val and info["n_val"] == 0
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    assert all(not r.get("val_macro_f1") for r in rows)
    assert result.best_epoch == 3  # no val: best.pt is the last epoch, not the best train acc
    ckpt = load_checkpoint(result.best_checkpoint)
    assert ckpt.train["config"]["train_splits"] == ["train", "val"]
    assert ckpt.calibration is None  # nothing held out to fit a temperature on


def test_select_last_keeps_the_final_epoch_even_when_val_was_better(prepared, tiny_arch,
                                                                    tmp_path):
    import torch

    # lr 0.5 makes the val score jump around, so the best epoch is rarely the last
    result = train(_config(prepared, tiny_arch, tmp_path / "run", epochs=4, lr=0.5,
                           select="last"))
    assert result.best_epoch == 4
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    assert result.best_metrics["macro_f1"] == pytest.approx(float(rows[-1]["val_macro_f1"]))
    best, last = (load_checkpoint(result.run_dir / n) for n in ("best.pt", "last.pt"))
    assert all(torch.equal(best.state_dict[k], last.state_dict[k]) for k in best.state_dict)
    assert best.train["config"]["select"] == "last"
    assert best.calibration is not None  # still fitted on val
    chosen = train(_config(prepared, tiny_arch, tmp_path / "run2", epochs=4, lr=0.5))
    scores = [float(r["val_macro_f1"]) for r in
              csv.DictReader((chosen.run_dir / "metrics.csv").open())]
    assert scores[chosen.best_epoch - 1] == max(scores)  # the default: the best val epoch


def test_train_splits_must_include_train_and_nothing_but_train_and_val(prepared, tiny_arch,
                                                                      tmp_path):
    from babyemo.errors import ConfigError

    for bad in (("val",), ("train", "test"), ()):
        with pytest.raises(ConfigError, match="train_splits"):
            _config(prepared, tiny_arch, tmp_path / "run", train_splits=bad)


def test_init_auto_uses_the_packaged_pretrained_model_when_the_arch_matches(prepared, tiny_arch,
                                                                           tmp_path,
                                                                           monkeypatch):
    from babyemo.training.finetune import resolve_init

    donor = train(_config(prepared, tiny_arch, tmp_path / "donor", epochs=1, init="none"))
    packaged = {store.PACKAGED_INIT: {"checkpoint": str(donor.best_checkpoint),
                                            "packaged": True, "created": ""}}
    spec = load_checkpoint(donor.best_checkpoint).input_spec
    monkeypatch.setattr(store, "packaged_models", lambda: {})
    assert resolve_init(_config(prepared, tiny_arch, tmp_path / "x"), spec) is None
    monkeypatch.setattr(store, "packaged_models", lambda: packaged)
    assert TrainConfig().init == "auto" and TrainConfig().arch == "custom_resnet"
    auto = _config(prepared, tiny_arch, tmp_path / "x", init="auto")
    assert resolve_init(auto, spec).path == donor.best_checkpoint
    assert resolve_init(_config(prepared, tiny_arch, tmp_path / "x", init="none"), spec) is None
    other_arch = _config(prepared, tiny_arch, tmp_path / "x", init="auto")
    other_arch.arch = "custom_resnet"
    assert resolve_init(other_arch, spec) is None  # the packaged model is another arch
    gray = InputSpec(size=spec.size, channels=1, mean=(0.5,), std=(0.5,))
    assert resolve_init(auto, gray) is None  # a grayscale model cannot take RGB weights
    tuned = train(_config(prepared, tiny_arch, tmp_path / "tuned", epochs=1, init="auto"))
    assert load_checkpoint(tuned.best_checkpoint).train["init"]["checkpoint"] == \
        str(donor.best_checkpoint.resolve())


def test_patience_stops_after_that_many_epochs_without_gain_and_may_change_on_resume(
        prepared, tiny_arch, tmp_path, monkeypatch):
    import numpy as np

    from babyemo.training.runner import Runner

    # validation that never changes: epoch 1 is the best, every later one is stale
    monkeypatch.setattr(Runner, "evaluate",
                        lambda self, loader: (1.0, np.array([0, 1, 2]), np.array([0, 1, 1])))
    cfg = _config(prepared, tiny_arch, tmp_path / "run", epochs=10, patience=2)
    result = train(cfg)
    assert result.stopped_early and [r["epoch"] for r in result.history] == [1, 2, 3]
    assert result.best_epoch == 1
    assert read_checkpoint_dict(result.last_checkpoint)["resume"]["stale"] == 2
    # --patience is how the run continues, not what it learns: it may change on --resume
    more = train(TrainConfig(**{**cfg.to_dict(), "resume": True, "patience": 4}))
    assert more.stopped_early and [r["epoch"] for r in more.history] == [1, 2, 3, 4, 5]
    assert load_checkpoint(more.last_checkpoint).train["config"]["patience"] == 4
    never = train(_config(prepared, tiny_arch, tmp_path / "never", epochs=3))
    assert not never.stopped_early and len(never.history) == 3


def test_train_looks_the_arch_up_once(prepared, tiny_arch, tmp_path, monkeypatch):
    """Issue 14: the --arch entry is looked up once per run and passed along."""
    from babyemo.models import registry
    from babyemo.training import setup

    calls = []

    def counting(real):
        def get_arch(name):
            calls.append(name)
            return real(name)
        return get_arch

    monkeypatch.setattr(registry, "get_arch", counting(registry.get_arch))
    monkeypatch.setattr(setup, "get_arch", counting(setup.get_arch))
    # trained on train+val: no calibration, which rebuilds the model from best.pt
    train(_config(prepared, tiny_arch, tmp_path / "run", epochs=1,
                  train_splits=("train", "val")))
    assert calls == [tiny_arch]
