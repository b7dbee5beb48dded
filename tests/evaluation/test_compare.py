"""Paired comparison of two prediction files of the same images (issue 15)."""

from __future__ import annotations

import numpy as np
import pytest

from babyemo.errors import ConfigError, DataError
from babyemo.evaluation.compare import (
    A_BETTER,
    B_BETTER,
    NO_DIFFERENCE,
    compare_predictions,
)
from babyemo.rows import Prediction, PredictionWriter

CLASSES = ("angry", "crying", "happy")


def write_predictions(path, true, pred, *, classes=CLASSES, paths=None, with_true=True,
                      fold=None):
    """A prediction CSV in the one row schema (:mod:`babyemo.rows`), like
    ``predictions.csv`` (``fold``: an ``oof.csv`` with its fold column)."""
    paths = paths or [f"img/{i:04d}.png" for i in range(len(true))]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as f:
        writer = PredictionWriter(list(classes), csv_stream=f, with_true=with_true,
                                  extra_columns=["fold"] if fold else ())
        for p, t, q in zip(paths, true, pred, strict=True):
            probs = tuple(0.8 if i == q else 0.1 for i in range(len(classes)))
            writer.write(Prediction(p, classes[q], 0.8, probs), true=classes[t],
                         extra={"fold": fold} if fold else None)
        writer.close()
    return path


@pytest.fixture
def labels():
    rng = np.random.default_rng(0)
    true = rng.integers(0, 3, 300)
    return true, rng.integers(0, 3, 300)  # truth and a random guess (~1/3 right)


def test_identical_files_differ_by_nothing(tmp_path, labels):
    true, guess = labels
    a = write_predictions(tmp_path / "a.csv", true, guess)
    b = write_predictions(tmp_path / "b.csv", true, guess)
    result = compare_predictions(a, b)
    assert result.n == 300 and result.agreement == 1.0
    for m in result.metrics.values():
        assert m["difference"] == 0 and m["ci"] == [0.0, 0.0] and m["verdict"] == NO_DIFFERENCE
    assert result.verdict == NO_DIFFERENCE


def test_perfect_beats_random_whatever_the_row_order(tmp_path, labels):
    true, guess = labels
    random_ = write_predictions(tmp_path / "random.csv", true, guess)
    perfect = write_predictions(tmp_path / "perfect.csv", true, true)
    result = compare_predictions(random_, perfect, n_bootstrap=500, seed=1)
    f1 = result.metrics["macro_f1"]
    assert f1["b"] == 1.0 and f1["a"] < 0.5
    assert f1["difference"] == pytest.approx(f1["b"] - f1["a"])
    assert 0 < f1["ci"][0] <= f1["difference"] <= f1["ci"][1]
    assert result.verdict == B_BETTER
    assert compare_predictions(perfect, random_).verdict == A_BETTER
    # B's rows in another order (an oof.csv lists them by fold): paired by path
    order = np.random.default_rng(2).permutation(300)
    paths = [f"img/{i:04d}.png" for i in range(300)]
    shuffled = write_predictions(tmp_path / "shuffled" / "oof.csv", true[order], true[order],
                                 paths=[paths[i] for i in order], fold=1)
    again = compare_predictions(random_, shuffled.parent, n_bootstrap=500, seed=1)
    assert again.b == shuffled and again.metrics == result.metrics


def test_a_small_difference_on_few_images_is_no_difference(tmp_path, labels):
    true, guess = labels
    better = guess.copy()
    better[:3] = true[:3]  # 3 more right out of 300
    result = compare_predictions(write_predictions(tmp_path / "a.csv", true, guess),
                                 write_predictions(tmp_path / "b.csv", true, better))
    assert result.metrics["accuracy"]["difference"] > 0
    assert result.verdict == NO_DIFFERENCE
    assert result.to_dict()["verdict"] == NO_DIFFERENCE


def test_files_of_different_images_or_classes_are_refused(tmp_path, labels):
    true, guess = labels
    a = write_predictions(tmp_path / "a.csv", true, guess)
    fewer = write_predictions(tmp_path / "fewer.csv", true[:299], guess[:299])
    with pytest.raises(DataError, match="not predictions of the same images") as info:
        compare_predictions(a, fewer)
    assert "1 path(s) only in A" in info.value.message and info.value.hint
    other = write_predictions(tmp_path / "other.csv", true, guess,
                              paths=[f"x/{i}.png" for i in range(300)])
    with pytest.raises(DataError, match="300 only in B"):
        compare_predictions(a, other)
    classes = write_predictions(tmp_path / "classes.csv", true, guess,
                                classes=("angry", "crying", "sad"))
    with pytest.raises(DataError, match="class names differ"):
        compare_predictions(a, classes)
    relabelled = write_predictions(tmp_path / "relabelled.csv", (true + 1) % 3, guess)
    with pytest.raises(DataError, match="different true labels"):
        compare_predictions(a, relabelled)


def test_unlabelled_broken_or_missing_files_are_refused(tmp_path, labels):
    true, guess = labels
    a = write_predictions(tmp_path / "a.csv", true, guess)
    unlabelled = write_predictions(tmp_path / "predict.csv", true, guess, with_true=False)
    with pytest.raises(DataError, match="no true column"):
        compare_predictions(a, unlabelled)
    with pytest.raises(DataError, match="No prediction file"):
        compare_predictions(a, tmp_path / "missing.csv")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="holds no oof.csv or predictions.csv"):
        compare_predictions(a, tmp_path / "empty")
    lines = a.read_text().splitlines()
    twice = tmp_path / "twice.csv"
    twice.write_text("\n".join([*lines, lines[1]]) + "\n")
    with pytest.raises(DataError, match="on two rows"):
        compare_predictions(a, twice)
    failed = tmp_path / "failed.csv"
    with open(failed, "w", newline="") as f:
        writer = PredictionWriter(list(CLASSES), csv_stream=f, with_true=True)
        writer.write(Prediction("img/0000.png", "", float("nan"), (), error="truncated"),
                     true="angry")
    with pytest.raises(DataError, match="no prediction"):
        compare_predictions(failed, failed)
    with pytest.raises(ConfigError, match="resamples"):
        compare_predictions(a, a, n_bootstrap=10)


def test_evaluate_out_folder_stands_for_its_predictions_csv(tmp_path, labels):
    true, guess = labels
    folder = tmp_path / "eval"
    write_predictions(folder / "predictions.csv", true, guess)
    result = compare_predictions(folder, folder)
    assert result.a == folder / "predictions.csv" and result.verdict == NO_DIFFERENCE
