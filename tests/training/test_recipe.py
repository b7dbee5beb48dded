"""Recipe tools of issue 15 (part 3): MixUp/CutMix with soft targets, the EMA of the
weights (what is validated and saved), their --resume, and the default recipe untouched."""

from __future__ import annotations

import csv

import pytest
import torch

from babyemo.checkpoint import load_checkpoint, read_checkpoint_dict
from babyemo.config import TrainConfig
from babyemo.errors import ConfigError
from babyemo.training import train
from babyemo.training.distill import SoftTargetLoss
from babyemo.training.mixing import BatchMix
from babyemo.training.setup import make_ema, make_soft_loss
from tests.training.test_distill import _config


def _interrupt_after_epoch_one(cfg):
    from tests.test_training import _interrupt_after_epoch_one as interrupt

    interrupt(cfg)


@pytest.mark.parametrize(("mixup", "cutmix"), [(0.4, 0.0), (0.0, 1.0), (0.4, 1.0)])
def test_batch_mix_gives_soft_targets_mixed_like_the_images(mixup, cutmix):
    torch.manual_seed(0)
    images = torch.stack([torch.full((3, 8, 8), float(i)) for i in range(4)])
    loss = SoftTargetLoss(3, teacher=True, temperature=2.0)
    targets = loss.pack(torch.tensor([0, 1, 2, -1]), torch.randn(4, 3))
    torch.manual_seed(1)
    x, t = BatchMix(mixup, cutmix)(images, targets)
    assert x.shape == images.shape and x.dtype == torch.float32
    assert t.shape == targets.shape and t.dtype == torch.float32
    # each row is lam * own + (1 - lam) * previous: one lam, labels and teacher alike
    lam = (x[1] - images[0]).sum() / (images[1] - images[0]).sum()
    assert torch.allclose(t, lam * targets + (1 - lam) * targets.roll(1, 0), atol=1e-5)
    assert 0 <= lam <= 1
    assert torch.allclose(t[:, :3].sum(1), t[:, 3])  # label shares sum to the label mass
    assert torch.allclose(t[:, 4:].sum(1), torch.ones(4))  # still probabilities
    torch.manual_seed(1)
    x2, t2 = BatchMix(mixup, cutmix)(images, targets)
    assert torch.equal(x, x2) and torch.equal(t, t2)  # seeded: the same mix


def test_the_default_recipe_keeps_the_plain_training_step():
    cfg = TrainConfig()
    criterion = torch.nn.CrossEntropyLoss()
    assert make_soft_loss(cfg, criterion, 3) is None
    assert make_ema(cfg, torch.nn.Linear(2, 3)) is None
    assert (cfg.mixup, cfg.cutmix, cfg.ema, cfg.teacher) == (0.0, 0.0, None, None)
    assert isinstance(make_soft_loss(TrainConfig(cutmix=1.0), criterion, 3), SoftTargetLoss)


@pytest.mark.parametrize("bad", [{"mixup": -0.1}, {"cutmix": -1}, {"ema": 1.0}, {"ema": 0},
                                 {"distill_alpha": 1.5}, {"distill_temperature": 0}])
def test_recipe_values_out_of_range_are_refused(bad):
    with pytest.raises(ConfigError, match=next(iter(bad))):
        TrainConfig(**bad)


def test_mixup_and_cutmix_train_with_soft_targets(prepared, tiny_arch, tmp_path):
    result = train(_config(prepared, tiny_arch, tmp_path / "run", mixup=0.2, cutmix=1.0,
                           augment="strong", label_smoothing=0.1))
    row = result.history[0]
    assert 0 <= row["train_acc"] <= 1 and row["train_loss"] > 0
    rows = list(csv.DictReader((result.run_dir / "metrics.csv").open()))
    assert float(rows[0]["train_acc"]) == pytest.approx(row["train_acc"])
    config = load_checkpoint(result.best_checkpoint).train["config"]
    assert config["mixup"] == 0.2 and config["cutmix"] == 1.0
    assert config["augment"]["auto"] == "trivialaugment" and config["augment"]["random_erasing"]


def test_ema_weights_are_validated_and_saved_and_resume_exactly(prepared, tiny_arch, tmp_path,
                                                                monkeypatch):
    from babyemo.training.runner import Runner

    seen = []  # the weights each validation ran, and the raw weights then
    evaluate = Runner.evaluate

    def spy(self, loader):
        seen.append({"eval": {k: v.clone() for k, v in self.eval_model.state_dict().items()},
                     "raw": {k: v.clone() for k, v in self.model.state_dict().items()}})
        return evaluate(self, loader)

    monkeypatch.setattr(Runner, "evaluate", spy)
    cfg = _config(prepared, tiny_arch, tmp_path / "full", epochs=2, ema=0.9, mixup=0.2)
    full = train(cfg)
    monkeypatch.setattr(Runner, "evaluate", evaluate)
    assert len(seen) == 2
    last = read_checkpoint_dict(full.last_checkpoint)
    raw, ema_state = last["resume"]["ema"]["model"], last["state_dict"]
    assert last["resume"]["ema"]["n_averaged"] > 1
    assert any(not torch.equal(raw[k], ema_state[k]) for k in raw)  # EMA != raw weights
    for k in raw:
        assert torch.equal(ema_state[k], seen[-1]["eval"][k])  # validated = saved
        assert torch.equal(raw[k], seen[-1]["raw"][k])
    best = read_checkpoint_dict(full.best_checkpoint)
    validated = seen[full.best_epoch - 1]
    assert all(torch.equal(best["state_dict"][k], validated["eval"][k]) for k in raw)
    assert any(not torch.equal(best["state_dict"][k], validated["raw"][k]) for k in raw)
    assert best["train"]["config"]["ema"] == 0.9
    # interrupted after epoch 1 and resumed: the same raw and EMA weights as uninterrupted
    cut = _config(prepared, tiny_arch, tmp_path / "cut", epochs=2, ema=0.9, mixup=0.2)
    _interrupt_after_epoch_one(cut)
    resumed = train(TrainConfig(**{**cut.to_dict(), "resume": True}))
    again = read_checkpoint_dict(resumed.last_checkpoint)
    for k in ema_state:
        assert torch.equal(again["state_dict"][k], ema_state[k]), k
        assert torch.equal(again["resume"]["ema"]["model"][k], raw[k]), k
    assert resumed.history[-1]["train_loss"] == pytest.approx(full.history[-1]["train_loss"])


def test_resume_refuses_other_recipe_tools(prepared, tiny_arch, tmp_path):
    cfg = _config(prepared, tiny_arch, tmp_path / "run", mixup=0.2)
    train(cfg)
    base = {**cfg.to_dict(), "resume": True}
    for change, text in (({"mixup": 0.4}, "--mixup 0.4"), ({"ema": 0.99}, "--ema 0.99"),
                         ({"augment": "strong"}, "--augment"),
                         ({"teacher": "some-model"}, "--teacher 'some-model'")):
        with pytest.raises(ConfigError, match="conflict with it") as err:
            train(TrainConfig(**{**base, **change}))
        assert text in err.value.message
