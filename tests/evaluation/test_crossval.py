"""Reading a cross-validation run's ``oof_logits.npz`` (:func:`read_oof_logits`); writing it
is covered with the training of folds in tests/training/test_folds.py."""

import numpy as np
import pytest

from babyemo.calibration import softmax
from babyemo.errors import DataError
from babyemo.evaluation.crossval import read_oof_logits

CLASSES = ["angry", "crying", "happy"]


def write_oof(run, logits, targets, *, classes=CLASSES, fold=None, temperatures=(1.0, 2.0)):
    """An ``oof_logits.npz`` as ``babyemo train --folds`` writes it (2 folds by default)."""
    n = len(targets)
    fold = np.array([1 + i % 2 for i in range(n)] if fold is None else fold, dtype=np.int64)
    run.mkdir(parents=True, exist_ok=True)
    np.savez(run / "oof_logits.npz", paths=np.array([f"{classes[t]}/{i}.png"
                                                     for i, t in enumerate(targets)]),
             logits=np.asarray(logits, dtype=np.float32),
             targets=np.asarray(targets, dtype=np.int64), fold=fold,
             class_names=np.array(classes), temperatures=np.array(temperatures, dtype=float))
    return run


def test_read_oof_logits_round_trip_and_fold_temperatures(tmp_path):
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (10, 3))
    targets = rng.integers(0, 3, 10)
    oof = read_oof_logits(write_oof(tmp_path / "run", logits, targets))
    assert oof.paths[0] == f"{CLASSES[targets[0]]}/0.png" and oof.class_names == CLASSES
    assert oof.logits.dtype == np.float64 and oof.logits.shape == (10, 3)
    assert np.array_equal(oof.targets, targets) and oof.fold.tolist() == [1, 2] * 5
    probs = oof.probs()
    assert probs.dtype == np.float32
    assert probs[0] == pytest.approx(softmax(oof.logits[:1], 1.0)[0], abs=1e-6)
    assert probs[1] == pytest.approx(softmax(oof.logits[1:2], 2.0)[0], abs=1e-6)


@pytest.mark.parametrize(("array", "value", "match"), [
    ("targets", [0, 1, 3, 0], "targets 0..3 for 3 classes"),
    ("targets", [0, 1, 2], "targets"),
    ("fold", [1, 2, 3, 1], "folds 1..3 for 2 temperatures"),
    ("temperatures", [1.0, 0.0], "not all > 0"),
    ("logits", np.zeros((4, 2)), "logits"),
])
def test_malformed_files_are_data_errors(tmp_path, array, value, match):
    run = write_oof(tmp_path / "run", np.zeros((4, 3)), [0, 1, 2, 0])
    with np.load(run / "oof_logits.npz") as z:
        arrays = dict(z)
    np.savez(run / "oof_logits.npz", **{**arrays, array: np.asarray(value)})
    with pytest.raises(DataError, match=match):
        read_oof_logits(run)


def test_an_unfinished_run_is_named(tmp_path):
    with pytest.raises(DataError, match="did not finish") as e:
        read_oof_logits(tmp_path)
    assert "--folds" in e.value.hint
