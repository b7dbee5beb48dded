"""Tests of babyemo.metrics on small hand-computed examples."""

from __future__ import annotations

import json
import math
import subprocess
import sys
import warnings

import numpy as np
import pytest

from babyemo.errors import ConfigError
from babyemo.metrics import classification_metrics, per_class_accuracy

NAMES3 = ["happy", "crying", "neutral"]


@pytest.fixture(autouse=True)
def _warnings_are_errors():
    """No metric call may emit a warning (sklearn's are silenced or avoided)."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


def test_hand_computed_example():
    # true:  happy x3, crying x2, neutral x1
    y_true = np.array([0, 0, 0, 1, 1, 2])
    y_pred = np.array([0, 0, 1, 1, 2, 2])
    m = classification_metrics(y_true, y_pred, NAMES3)
    # rows = true, columns = predicted; deliberately asymmetric (cm[0][1]=1, cm[1][0]=0)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["n"] == 6
    assert m["accuracy"] == pytest.approx(4 / 6)
    # recalls 2/3, 1/2, 1 -> mean 13/18
    assert m["balanced_accuracy"] == pytest.approx(13 / 18)
    # precisions 1, 1/2, 1/2 -> F1 4/5, 1/2, 2/3
    assert m["macro_f1"] == pytest.approx((4 / 5 + 1 / 2 + 2 / 3) / 3)  # 59/90
    assert m["weighted_f1"] == pytest.approx((3 * 4 / 5 + 2 * 1 / 2 + 1 * 2 / 3) / 6)  # 61/90
    assert m["per_class"]["happy"] == pytest.approx(
        {"precision": 1.0, "recall": 2 / 3, "f1": 4 / 5, "support": 3})
    assert m["per_class"]["crying"] == pytest.approx(
        {"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert m["per_class"]["neutral"] == pytest.approx(
        {"precision": 0.5, "recall": 1.0, "f1": 2 / 3, "support": 1})
    assert list(m["per_class"]) == NAMES3


def test_result_is_json_safe_plain_python():
    m = classification_metrics(np.array([0, 1, 1], dtype=np.int32), [1, 1, 0], ["a", "b"])
    text = json.dumps(m, allow_nan=False)  # raises on NaN / numpy types
    assert json.loads(text) == m
    assert type(m["n"]) is int and type(m["accuracy"]) is float
    assert all(type(v) is int for row in m["confusion_matrix"] for v in row)
    assert type(m["per_class"]["a"]["support"]) is int


def test_class_never_predicted():
    y_true = [0, 1, 2, 2]
    y_pred = [0, 1, 1, 1]
    m = classification_metrics(y_true, y_pred, NAMES3)
    assert m["per_class"]["neutral"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0,
                                         "support": 2}
    assert m["per_class"]["crying"]["precision"] == pytest.approx(1 / 3)
    assert m["confusion_matrix"] == [[1, 0, 0], [0, 1, 0], [0, 2, 0]]
    assert m["accuracy"] == pytest.approx(0.5)
    assert m["balanced_accuracy"] == pytest.approx((1 + 1 + 0) / 3)
    # F1: happy 1, crying 2*(1/3*1)/(4/3) = 1/2, neutral 0
    assert m["macro_f1"] == pytest.approx((1 + 0.5 + 0) / 3)


def test_class_with_no_true_samples_but_predicted():
    names = ["a", "b", "c", "d"]
    y_true = [0, 0, 1, 1, 3, 3]  # no "c"
    y_pred = [0, 2, 1, 1, 3, 0]  # "c" predicted once
    m = classification_metrics(y_true, y_pred, names)
    assert m["confusion_matrix"][2] == [0, 0, 0, 0]  # row kept for the absent class
    assert [row[2] for row in m["confusion_matrix"]] == [1, 0, 0, 0]
    assert m["per_class"]["c"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    # balanced accuracy: mean recall over classes with support (a 1/2, b 1, d 1/2)
    assert m["balanced_accuracy"] == pytest.approx((0.5 + 1 + 0.5) / 3)
    # macro-F1 counts "c" (predicted, never true) as 0: a 1/2, b 1, c 0, d 2/3
    assert m["macro_f1"] == pytest.approx((0.5 + 1 + 0 + 2 / 3) / 4)
    assert not any(math.isnan(v) for pc in m["per_class"].values() for v in pc.values())
    acc = per_class_accuracy(y_true, y_pred, names)
    assert acc == pytest.approx({"a": 0.5, "b": 1.0, "d": 0.5})
    assert list(acc) == ["a", "b", "d"]


def test_class_absent_from_truth_and_predictions_not_in_macro_mean():
    names = ["a", "b", "c"]
    m = classification_metrics([0, 1, 1], [0, 1, 0], names)
    # F1: a 2/3, b 2/3; "c" appears nowhere and is not averaged in as 0
    assert m["macro_f1"] == pytest.approx(2 / 3)
    assert m["balanced_accuracy"] == pytest.approx((1 + 0.5) / 2)
    assert m["weighted_f1"] == pytest.approx(2 / 3)
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 0]]
    assert m["per_class"]["c"]["support"] == 0


def test_perfect_and_single_class():
    m = classification_metrics([1, 1, 1], [1, 1, 1], ["x", "y"])
    assert m["accuracy"] == m["balanced_accuracy"] == m["macro_f1"] == 1.0
    assert per_class_accuracy([1, 1, 1], [1, 1, 1], ["x", "y"]) == {"y": 1.0}


@pytest.mark.parametrize(
    ("y_true", "y_pred", "names", "match"),
    [
        ([], [], NAMES3, "zero samples"),
        ([0, 1], [0], NAMES3, "2 samples"),
        ([0, 3], [0, 1], NAMES3, "class index 3"),
        ([0, 1], [0, -1], NAMES3, "class index -1"),
        ([[0.1, 0.9]], [1], NAMES3, "1-D"),
        ([0.5, 1.0], [0, 1], NAMES3, "integer"),
        ([0], [0], [], "class_names is empty"),
    ],
)
def test_invalid_input_raises_config_error(y_true, y_pred, names, match):
    with pytest.raises(ConfigError, match=match) as info:
        classification_metrics(y_true, y_pred, names)
    assert info.value.hint


def test_per_class_accuracy_rejects_empty():
    with pytest.raises(ConfigError):
        per_class_accuracy([], [], NAMES3)


def test_modules_do_not_import_torch_or_matplotlib_eagerly():
    code = ("import sys, babyemo.metrics, babyemo.reports; "
            "print('torch' in sys.modules, 'matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.split()
    assert out == ["False", "False"]


def test_bootstrap_ci_brackets_the_point_estimate_and_is_deterministic():
    import numpy as np

    from babyemo.metrics import bootstrap_ci, classification_metrics

    rng = np.random.default_rng(1)
    y = rng.integers(0, 3, 200)
    pred = np.where(rng.random(200) < 0.7, y, rng.integers(0, 3, 200))
    names = ["angry", "crying", "happy"]
    ci = bootstrap_ci(y, pred, names, n=500, seed=3)
    point = classification_metrics(y, pred, names)
    for metric in ("accuracy", "balanced_accuracy", "macro_f1"):
        lo, hi = ci[metric]
        assert lo < point[metric] < hi and hi - lo < 0.2
    assert bootstrap_ci(y, pred, names, n=500, seed=3) == ci
    for c in names:  # per-class intervals from the same resamples
        for key in ("recall", "f1"):
            lo, hi = ci["per_class"][c][key]
            assert lo <= point["per_class"][c][key] <= hi
    perfect = bootstrap_ci(y, y, names, n=100)
    assert perfect["macro_f1"] == [1.0, 1.0]
    with pytest.raises(ConfigError):
        bootstrap_ci(y, pred, names, n=10)


def test_metrics_of_summed_confusion_counts_equal_those_of_all_predictions():
    """How a distributed run scores its val split: each process's confusion counts are
    summed, then scored, which must equal scoring all predictions at once (and differ from
    averaging per-process scores)."""
    from babyemo.metrics import confusion_counts, labels_from_confusion

    rng = np.random.default_rng(0)
    names = ["angry", "crying", "happy"]
    t = rng.integers(0, 3, 101)
    p = np.where(rng.random(101) < 0.7, t, rng.integers(0, 3, 101))
    parts = [(t[:30], p[:30]), (t[30:], p[30:])]  # two processes, unequal shares
    summed = sum(confusion_counts(a, b, 3) for a, b in parts)
    assert summed.sum() == 101 and summed.dtype == np.int64
    whole = classification_metrics(t, p, names)
    from_counts = classification_metrics(*labels_from_confusion(summed), names)
    assert from_counts == whole
    mean_of_parts = np.mean([classification_metrics(a, b, names)["macro_f1"] for a, b in parts])
    assert mean_of_parts != pytest.approx(whole["macro_f1"], abs=1e-6)
    with pytest.raises(ConfigError):
        labels_from_confusion(np.array([[1, -1], [0, 2]]))
