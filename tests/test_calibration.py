import math

import numpy as np
import pytest
import torch

from babyemo.calibration import (
    CalibrationResult,
    calibrate_logits,
    expected_calibration_error,
    fit_temperature,
    nll,
    reliability_bins,
    softmax,
)
from babyemo.checkpoint import load_checkpoint, save_checkpoint, write_calibration
from babyemo.config import InputSpec, TrainConfig
from babyemo.data.preparation.manifest import read_manifest
from babyemo.errors import CheckpointError, ConfigError
from babyemo.evaluation.calibration import calibrate_checkpoint, copy_calibration
from babyemo.models.registry import create_model
from babyemo.runtime import Runtime
from babyemo.training import train


def _sampled(n: int = 4000, k: int = 3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Logits whose softmax is the true label distribution (calibrated by construction)."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1.5, size=(n, k))
    p = torch.softmax(torch.as_tensor(z), 1).numpy()
    y = np.array([rng.choice(k, p=row) for row in p], dtype=np.int64)
    return z.astype(np.float32), y


def test_overconfident_logits_get_t_above_one_and_lower_ece():
    z, y = _sampled()
    over = 3.0 * z  # the same ranking, three times too sharp
    t = fit_temperature(over, y)
    assert t > 1 and t == pytest.approx(3.0, rel=0.15)
    res = calibrate_logits(over, y, fitted_on="val")
    assert res.temperature == pytest.approx(t)
    assert res.ece_after < res.ece_before / 2 and res.ece_after < 0.05
    assert res.nll_after < res.nll_before
    assert res.to_dict() == {"temperature": t, "fitted_on": "val", "n": 4000,
                             "ece_before": res.ece_before, "ece_after": res.ece_after,
                             "nll_before": res.nll_before, "nll_after": res.nll_after,
                             "n_bins": 15}
    # scaling never changes the predicted class
    assert np.array_equal(softmax(over, t).argmax(1), over.argmax(1))


def test_underconfident_logits_get_t_below_one():
    z, y = _sampled(seed=1)
    assert fit_temperature(z / 2.0, y) == pytest.approx(0.5, rel=0.15)


def test_ece_of_a_perfectly_calibrated_toy_case_is_zero():
    # 10 predictions at confidence 0.8, 8 of them right; 5 at 0.6, 3 right
    probs = np.array([[0.8, 0.2]] * 10 + [[0.4, 0.6]] * 5)
    y = np.array([0] * 8 + [1] * 2 + [1] * 3 + [0] * 2)
    assert expected_calibration_error(probs, y) == pytest.approx(0.0, abs=1e-12)


def test_ece_by_hand_and_reliability_bins():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.3, 0.7], [0.45, 0.55]])
    y = np.array([0, 1, 1, 1])
    bins = reliability_bins(probs, y, n_bins=10)
    # 0.9 -> bin (0.8, 0.9]; 0.7 -> (0.6, 0.7]; 0.55 -> (0.5, 0.6]: right-closed bins
    assert bins.count.tolist() == [0, 0, 0, 0, 0, 1, 1, 0, 2, 0]
    assert bins.accuracy[8] == 0.5 and bins.confidence[8] == pytest.approx(0.9)
    expected = (2 * abs(0.5 - 0.9) + abs(1 - 0.7) + abs(1 - 0.55)) / 4
    assert bins.ece == pytest.approx(expected)
    d = bins.to_dict()
    assert d["accuracy"][0] is None and d["count"][8] == 2 and len(d["edges"]) == 11
    # confidence 1.0 lands in the last bin; 0.5, on an edge, in the bin (0.4, 0.5]
    edge = reliability_bins(np.array([[1.0, 0.0], [0.5, 0.5]]), np.array([0, 1]), n_bins=10)
    assert edge.count[9] == 1 and edge.count[4] == 1


def test_nll_matches_cross_entropy():
    z, y = _sampled(n=50)
    ref = torch.nn.functional.cross_entropy(torch.as_tensor(z) / 2, torch.as_tensor(y))
    assert nll(z, y, 2.0) == pytest.approx(float(ref), rel=1e-5)


@pytest.mark.parametrize("logits, labels", [
    (np.zeros((0, 3)), np.zeros(0, dtype=np.int64)),
    (np.zeros((4, 1)), np.zeros(4, dtype=np.int64)),
    (np.full((2, 3), np.nan), np.zeros(2, dtype=np.int64)),
    (np.zeros((2, 3)), np.array([0, 3])),
    (np.zeros((2, 3)), np.array([0.5, 1.0])),
    (np.zeros((2, 3)), np.array([0, 1, 2])),
])
def test_bad_inputs_are_config_errors(logits, labels):
    with pytest.raises(ConfigError) as e:
        fit_temperature(logits, labels)
    assert e.value.hint or e.value.message


def test_bad_temperature_and_probs():
    with pytest.raises(ConfigError, match="temperature"):
        softmax(np.zeros((2, 3)), 0.0)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        expected_calibration_error(np.array([[2.0, -1.0]]), np.array([0]))
    with pytest.raises(ConfigError, match="n_bins"):
        reliability_bins(np.array([[0.5, 0.5]]), np.array([0]), n_bins=0)


def test_constant_logits_keep_t_one():
    assert fit_temperature(np.zeros((6, 3)), np.array([0, 1, 2, 0, 1, 2])) == 1.0


def _save(tmp_path, tiny_arch):
    model = create_model(tiny_arch, num_classes=3)
    return save_checkpoint(tmp_path / "m.pt", model=model, arch=tiny_arch, arch_kwargs={},
                           class_names=["angry", "crying", "happy"],
                           input_spec=InputSpec(size=24, mean=(0.5,) * 3, std=(0.5,) * 3),
                           train={}, metrics={})


def test_checkpoint_temperature_round_trip_and_old_checkpoints(tmp_path, tiny_arch):
    path = _save(tmp_path, tiny_arch)
    old = load_checkpoint(path)
    assert old.calibration is None and old.temperature == 1.0
    cal = CalibrationResult(temperature=1.7, fitted_on="val", n=10, ece_before=0.2,
                            ece_after=0.05, nll_before=1.0, nll_after=0.8).to_dict()
    write_calibration(path, cal)
    ckpt = load_checkpoint(path)
    assert ckpt.temperature == 1.7 and ckpt.calibration == cal
    assert torch.load(path, weights_only=True)["calibration"]["fitted_on"] == "val"
    assert torch.equal(ckpt.state_dict["5.weight"], old.state_dict["5.weight"])
    with pytest.raises(ConfigError, match="temperature"):
        write_calibration(path, {"temperature": -1.0})
    raw = torch.load(path, weights_only=True)
    raw["calibration"]["temperature"] = float("nan")
    torch.save(raw, path)
    with pytest.raises(CheckpointError, match="temperature"):
        _ = load_checkpoint(path).temperature


def test_training_calibrates_best_and_calibrate_refits(prepared, tiny_arch, tmp_path):
    result = train(TrainConfig(data=str(prepared), arch=tiny_arch, image_size=None, epochs=2,
                               batch_size=8, lr=0.05, precision="fp32",
                               out=str(tmp_path / "run")))
    cal = load_checkpoint(result.best_checkpoint).calibration
    n_val = len(read_manifest(prepared).rows_for("val"))
    assert cal is not None and cal["fitted_on"] == "val" and cal["n"] == n_val
    assert cal["temperature"] > 0 and math.isfinite(cal["ece_after"])
    assert "calibration" not in torch.load(result.last_checkpoint, weights_only=True)
    dry = calibrate_checkpoint(result.best_checkpoint, data=prepared, split="test", write=False,
                               runtime=Runtime(precision="fp32"))
    assert dry.checkpoint is None and dry.fitted_on == "test"
    assert load_checkpoint(result.best_checkpoint).calibration == cal
    again = calibrate_checkpoint(result.best_checkpoint, data=prepared,
                                 runtime=Runtime(precision="fp32"))
    assert again.checkpoint == result.best_checkpoint
    assert load_checkpoint(result.best_checkpoint).temperature == pytest.approx(
        again.temperature)


def test_copy_calibration_for_a_train_val_model(tiny_arch, tmp_path):
    from babyemo.checkpoint import load_checkpoint
    from babyemo.errors import CheckpointError
    from tests.conftest import make_checkpoint

    source = make_checkpoint(tmp_path / "a.pt", tiny_arch, temperature=1.7)
    target = make_checkpoint(tmp_path / "b.pt", tiny_arch)
    entry = copy_calibration(source, target)
    ckpt = load_checkpoint(target)
    assert ckpt.temperature == 1.7 and entry["copied_from"] == str(source.resolve())
    assert ckpt.calibration["fitted_on"] == "val"
    with pytest.raises(CheckpointError, match="no calibration"):
        copy_calibration(make_checkpoint(tmp_path / "c.pt", tiny_arch), target)


def test_a_useless_model_gets_warnings_not_a_good_looking_ece(caplog):
    """Issue 12: a 1-epoch model at chance printed T=38.7, ECE 0.299 -> 0.014 unremarked."""
    from babyemo.calibration import calibration_warnings

    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 150)
    logits = rng.normal(0, 4, (150, 3)).astype(np.float32)  # confident and random
    result = calibrate_logits(logits, y)
    assert result.temperature > 4 and result.ece_after < result.ece_before
    assert any("extreme" in w for w in result.warnings)
    assert any("not significantly above chance" in w for w in result.warnings)
    assert "Calibration: " in caplog.text
    # a model that discriminates, with a plausible temperature: nothing to say
    good = np.eye(3, dtype=np.float32)[y] * 2 + rng.normal(0, 1, (150, 3)).astype(np.float32)
    assert calibration_warnings(good, y, 1.3) == []
    assert len(calibration_warnings(good, y, 0.1)) == 1  # extreme only


def test_packaged_models_are_never_rewritten(tiny_arch, tmp_path, monkeypatch):
    """Issue 13: `calibrate` with no model rewrote the packaged model in the package."""
    from babyemo.checkpoint import check_writable, record_evaluation
    from babyemo.errors import CheckpointError
    from babyemo.models import store
    from tests.conftest import make_checkpoint

    weights = tmp_path / "site-packages" / "babyemo" / "models" / "weights"
    weights.mkdir(parents=True)
    packaged = make_checkpoint(weights / "babyemo-infant.pt", tiny_arch)
    source = write_calibration(make_checkpoint(tmp_path / "src.pt", tiny_arch),
                               {"temperature": 1.7, "fitted_on": "val"})
    from babyemo.models import packaged as packaged_module

    monkeypatch.setattr(packaged_module, "weights_folder", lambda: weights)
    before = packaged.read_bytes()
    with pytest.raises(CheckpointError, match="read-only"):
        check_writable(packaged)
    with pytest.raises(CheckpointError, match="read-only"):
        record_evaluation(packaged, {"key": "x"})
    entry = copy_calibration(source, packaged)
    assert packaged.read_bytes() == before
    copy = store.get_trained("babyemo-infant-calibrated")["checkpoint"]
    assert entry["written_to"] == copy and load_checkpoint(copy).temperature == 1.7
    other = make_checkpoint(tmp_path / "seven.pt", tiny_arch,
                            classes=("a", "b", "c", "d", "e", "f", "g"))
    write_calibration(other, {"temperature": 2.0, "fitted_on": "val"})
    with pytest.raises(CheckpointError, match="does not belong to these logits"):
        copy_calibration(other, tmp_path / "src.pt")


def test_calibrate_from_oof_fits_one_temperature_on_the_raw_logits(tiny_arch, tmp_path):
    """--oof: one T on all out-of-fold logits (not the folds' own), in the model's order."""
    import json

    from babyemo.evaluation.calibration import calibrate_from_oof
    from tests.conftest import make_checkpoint
    from tests.evaluation.test_crossval import write_oof

    z, y = _sampled(600)
    z = z * 2.5  # over-confident by a factor 2.5
    run_classes = ["happy", "angry", "crying"]  # another order than the model's
    run = write_oof(tmp_path / "run", z, y, classes=run_classes, temperatures=(0.5, 9.0))
    ckpt = make_checkpoint(tmp_path / "m.pt", tiny_arch)  # angry, crying, happy
    order = [run_classes.index(c) for c in ("angry", "crying", "happy")]
    y_model = np.array([("angry", "crying", "happy").index(run_classes[t]) for t in y])
    expected = fit_temperature(z[:, order], y_model)
    assert expected == pytest.approx(2.5, abs=0.3)

    dry = calibrate_from_oof(run, ckpt, write=False)
    assert dry.checkpoint is None and load_checkpoint(ckpt).calibration is None
    assert dry.temperature == pytest.approx(expected) and dry.n == 600
    assert dry.fitted_on == "out-of-fold" and dry.ece_after < dry.ece_before
    assert dry.warnings == []

    result = calibrate_from_oof(run, ckpt)
    cal = load_checkpoint(ckpt).calibration
    assert result.checkpoint == ckpt and cal["temperature"] == pytest.approx(expected)
    assert cal["fitted_on"] == "out-of-fold" and cal["n"] == 600
    assert cal["oof_run"] == str(run.resolve()) and len(cal["oof_sha256"]) == 64

    (run / "cv.json").write_text(json.dumps({"config": {"arch": "resnet18"},
                                             "manifest_sha256": "ab" * 32}))
    warned = calibrate_from_oof(run, ckpt, write=False)
    assert any("resnet18" in w for w in warned.warnings)
    assert not any("manifest" in w for w in warned.warnings)  # the model records none

    other = make_checkpoint(tmp_path / "o.pt", tiny_arch, classes=("angry", "crying", "sad"))
    with pytest.raises(CheckpointError, match="cannot calibrate"):
        calibrate_from_oof(run, other)
    assert load_checkpoint(other).calibration is None


def test_ece_if_calibrated_is_the_noise_floor_of_a_calibrated_model():
    """Consistency resampling: labels drawn from the model's own probabilities."""
    from babyemo.calibration import ece_if_calibrated

    z, y = _sampled(154)
    p = softmax(z)
    floor = ece_if_calibrated(p)
    assert floor["n_resamples"] == 1000 and floor["level"] == 0.95
    assert 0.0 < floor["low"] < floor["median"] < floor["high"] < 0.3
    assert ece_if_calibrated(p) == floor  # seeded
    # calibrated by construction: its own ECE lies inside, and the floor shrinks with N
    assert floor["low"] <= expected_calibration_error(p, y) <= floor["high"]
    z_big, _ = _sampled(15400)
    big = ece_if_calibrated(softmax(z_big))
    assert big["high"] < floor["low"]
    # a brute-force draw of whole labels agrees with the Bernoulli shortcut
    rng = np.random.default_rng(1)
    brute = [expected_calibration_error(p, np.array([rng.choice(3, p=r / r.sum()) for r in p]))
             for _ in range(300)]
    assert np.median(brute) == pytest.approx(floor["median"], abs=0.01)
    # confident and right: the floor is near 0
    sure = np.array([[0.9999, 0.00005, 0.00005]] * 50)
    assert ece_if_calibrated(sure)["high"] < 0.001
    with pytest.raises(ConfigError, match="n_resamples"):
        ece_if_calibrated(p, n_resamples=0)
    with pytest.raises(ConfigError, match="level"):
        ece_if_calibrated(p, level=1.0)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        ece_if_calibrated(z)
