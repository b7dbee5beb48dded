"""The bootstrap intervals scored in numpy equal scikit-learn's scores of the same
resamples; the paired bootstrap of B - A (issue 15)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from sklearn.metrics import balanced_accuracy_score, f1_score, precision_recall_fscore_support

from babyemo.errors import ConfigError
from babyemo.metrics import _macro_set, bootstrap_ci, classification_metrics, paired_bootstrap


def _sklearn_bootstrap(t, p, k, *, n, seed, macro_labels=None):
    """The reference: each resample scored by scikit-learn (the former implementation)."""
    rng = np.random.default_rng(seed)
    values = {"accuracy": [], "balanced_accuracy": [], "macro_f1": []}
    recall, f1 = np.zeros((n, k)), np.zeros((n, k))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for i in range(n):
            idx = rng.integers(0, len(t), len(t))
            bt, bp = t[idx], p[idx]
            values["accuracy"].append(float(np.mean(bt == bp)))
            values["balanced_accuracy"].append(float(balanced_accuracy_score(bt, bp)))
            values["macro_f1"].append(float(f1_score(
                bt, bp, labels=_macro_set(bt, bp, macro_labels), average="macro",
                zero_division=0)))
            _, recall[i], f1[i], _ = precision_recall_fscore_support(
                bt, bp, labels=list(range(k)), zero_division=0)
    q = [0.025, 0.975]
    out = {m: [float(v) for v in np.quantile(vals, q)] for m, vals in values.items()}
    out["per_class"] = {f"c{j}": {"recall": [float(v) for v in np.quantile(recall[:, j], q)],
                                  "f1": [float(v) for v in np.quantile(f1[:, j], q)]}
                        for j in range(k)}
    return out


def _flat(d, prefix=""):
    out = {}
    for key, value in d.items():
        out.update(_flat(value, f"{prefix}{key}.") if isinstance(value, dict)
                   else {prefix + key: value})
    return out


@pytest.mark.parametrize(("n_images", "k", "macro_labels"),
                         [(40, 3, None), (7, 4, None), (25, 4, [0, 2]), (1, 2, None)])
def test_bootstrap_ci_equals_the_scikit_learn_scores(n_images, k, macro_labels):
    rng = np.random.default_rng(n_images)
    t = rng.integers(0, k, n_images)
    p = np.where(rng.random(n_images) < 0.5, t, rng.integers(0, k, n_images))
    names = [f"c{j}" for j in range(k)]
    got = _flat(bootstrap_ci(t, p, names, n=100, seed=5, macro_labels=macro_labels))
    want = _flat(_sklearn_bootstrap(t, p, k, n=100, seed=5, macro_labels=macro_labels))
    assert got.keys() == want.keys()
    for key, value in want.items():
        assert got[key] == pytest.approx(value, abs=1e-12), key


def test_paired_bootstrap_scores_both_on_the_same_resamples():
    rng = np.random.default_rng(0)
    t = rng.integers(0, 3, 200)
    a = np.where(rng.random(200) < 0.6, t, rng.integers(0, 3, 200))
    b = np.where(rng.random(200) < 0.8, t, rng.integers(0, 3, 200))
    names = ["x", "y", "z"]
    out = paired_bootstrap(t, a, b, names, n=400, seed=1)
    for pred, side in ((a, "a"), (b, "b")):
        ref = classification_metrics(t, pred, names)
        for m in ("accuracy", "balanced_accuracy", "macro_f1"):
            assert out[m][side] == pytest.approx(ref[m], abs=1e-12)
    for v in out.values():
        assert v["difference"] == pytest.approx(v["b"] - v["a"])
        assert v["ci"][0] <= v["difference"] <= v["ci"][1]
        assert v["ci"][0] > 0  # 0.8 vs 0.6 right on 200 images
    assert paired_bootstrap(t, a, b, names, n=400, seed=1) == out
    # pairing: the interval of B - A is narrower than A's and B's own intervals together
    lo_a, hi_a = bootstrap_ci(t, a, names, n=400, seed=1)["macro_f1"]
    lo_b, hi_b = bootstrap_ci(t, b, names, n=400, seed=1)["macro_f1"]
    assert out["macro_f1"]["ci"][1] - out["macro_f1"]["ci"][0] < (hi_a - lo_a) + (hi_b - lo_b)
    same = paired_bootstrap(t, a, a, names, n=100)
    assert all(v["ci"] == [0.0, 0.0] and v["difference"] == 0 for v in same.values())
    with pytest.raises(ConfigError):
        paired_bootstrap(t, a, b[:-1], names)
    with pytest.raises(ConfigError):
        paired_bootstrap(t, a, b, names, n=50)
