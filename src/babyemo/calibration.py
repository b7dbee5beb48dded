"""Calibrated confidence: temperature scaling, expected calibration error, reliability data.

**Temperature scaling** (Guo, Pleiss, Sun & Weinberger, 2017, "On Calibration of Modern
Neural Networks", ICML) divides a classifier's logits by one scalar ``T > 0`` before the
softmax. ``T`` is fitted on held-out (validation) logits by minimising the negative
log-likelihood (NLL); it changes the confidence of every prediction but never which class
is predicted (the argmax, hence accuracy and F1, are unchanged). ``T > 1`` softens an
overconfident model, ``T < 1`` sharpens an underconfident one.

**Expected calibration error** (ECE; Naeini, Cooper & Hauskrecht, 2015, and Guo et al.,
2017, eq. 3): the top-1 confidences are sorted into ``M`` equal-width bins
``[0, 1/M], (1/M, 2/M], ..., ((M-1)/M, 1]``, and
``ECE = sum_m |B_m| / N * |accuracy(B_m) - mean confidence(B_m)|``. 0 means that among
predictions made with confidence ``p`` a fraction ``p`` is right.

This module is the math only (numpy and torch, no model, no file). The fitted temperature
is stored in the checkpoint (key ``calibration``, see :mod:`babyemo.checkpoint`) by the
workflows of :mod:`babyemo.evaluation.calibration` and by training;
:class:`babyemo.inference.InferenceModel` divides the logits by it before the softmax.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from babyemo.errors import ConfigError

log = logging.getLogger(__name__)

__all__ = [
    "DEFAULT_BINS",
    "OUT_OF_FOLD",
    "CalibrationResult",
    "ReliabilityBins",
    "calibrate_logits",
    "calibration_warnings",
    "ece_if_calibrated",
    "expected_calibration_error",
    "fit_temperature",
    "nll",
    "reliability_bins",
    "softmax",
]

DEFAULT_BINS = 15
"""Number of equal-width confidence bins of the ECE (as in Guo et al., 2017)."""

OUT_OF_FOLD = "out-of-fold"
"""``fitted_on`` of a temperature fitted on out-of-fold predictions of a cross-validation
(an ensemble's ``--oof`` file, or ``babyemo calibrate --oof RUN``)."""

T_MIN, T_MAX = 0.01, 100.0
"""Range the fitted temperature is kept in (a bound is reached only by degenerate data,
e.g. a validation set the model classifies perfectly, where NLL falls as ``T -> 0``)."""

PLAUSIBLE_T = (0.25, 4.0)
"""Temperatures outside this range get a warning. Guo et al. (2017, table 5) fit ``T``
between about 1 and 3 for modern networks; ``T = 10`` divides every logit by 10, which
flattens the probabilities of a model that barely discriminates towards uniform and makes
its ECE look excellent."""

CHANCE_P_VALUE = 0.01
"""A fit set's accuracy is "near chance" when a one-sided binomial test cannot reject, at
this level, that it is no better than always predicting the most frequent class."""


def calibration_warnings(logits: Any, labels: Any, temperature: float,
                         fitted_on: str = "val") -> list[str]:
    """Why a fitted temperature (and the ECE after it) should not be trusted, if it should not.

    Two cases: an extreme temperature (outside :data:`PLAUSIBLE_T`), and an accuracy on
    the fit set that is not significantly above always predicting its most frequent class
    (one-sided exact binomial test, :data:`CHANCE_P_VALUE`; ``scipy.stats.binomtest``). A
    model at chance gets a flat softmax after scaling, whose confidence equals its
    accuracy: a near-zero ECE that says nothing about the model.

    Args:
        logits: ``(N, K)`` float logits.
        labels: ``(N,)`` int64 true class indices.
        temperature: The fitted ``T``.
        fitted_on: Name of the data, for the messages.

    Returns:
        Warning sentences (empty when there is nothing to say).
    """
    from scipy.stats import binomtest

    y = np.asarray(labels, dtype=np.int64)
    out: list[str] = []
    if y.size == 0:
        return out
    lo, hi = PLAUSIBLE_T
    if not lo <= temperature <= hi:
        out.append(f"the fitted temperature T={temperature:.3g} is extreme (usually "
                   f"{lo:g}-{hi:g}): the model's raw probabilities are far off")
    correct = int((np.asarray(logits).argmax(axis=1) == y).sum())
    chance = float(np.bincount(y).max() / y.size)
    p = binomtest(correct, int(y.size), chance, alternative="greater").pvalue
    if p > CHANCE_P_VALUE:
        out.append(f"accuracy on {fitted_on} ({correct / y.size:.3f}, n={y.size}) is not "
                   f"significantly above chance ({chance:.3f}, always the most frequent "
                   "class): a low ECE after scaling means nothing for a model that does not "
                   "discriminate")
    return out


# --------------------------------------------------------------------------- validation


def _check_labels(y: Any, n: int, k: int) -> np.ndarray:
    a = np.asarray(y)
    if a.ndim != 1 or a.shape[0] != n:
        raise ConfigError(f"Labels must have shape ({n},), got {a.shape}.",
                          "pass one integer class index per row")
    if a.size and a.dtype.kind not in "iu":
        raise ConfigError(f"Labels must be integer class indices, got dtype {a.dtype}.")
    a = a.astype(np.int64, copy=False)
    if a.size and (a.min() < 0 or a.max() >= k):
        raise ConfigError(f"Labels hold class index {int(a[(a < 0) | (a >= k)][0])}, outside "
                          f"0..{k - 1}.", f"there are {k} columns")
    return a


def _check_scores(x: Any, what: str) -> np.ndarray:
    a = np.asarray(x)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] < 2:
        raise ConfigError(f"{what} must have shape (N, K) with N >= 1 and K >= 2, got "
                          f"{a.shape}.", "pass one row per image, one column per class")
    if a.dtype.kind not in "fiu" or not np.all(np.isfinite(a)):
        raise ConfigError(f"{what} must be finite numbers (dtype {a.dtype}).")
    return a


def _check_temperature(temperature: float) -> float:
    t = float(temperature)
    if not math.isfinite(t) or t <= 0:
        raise ConfigError(f"The temperature must be a finite number > 0, got {temperature!r}.")
    return t


# --------------------------------------------------------------------------- math


def softmax(logits: Any, temperature: float = 1.0) -> np.ndarray:
    """Softmax of ``logits / temperature`` (:func:`torch.softmax`).

    Args:
        logits: ``(N, K)`` float logits.
        temperature: ``T > 0``; 1 = the plain softmax.

    Returns:
        ``(N, K) float32`` probabilities; each row sums to 1.

    Raises:
        ConfigError: Bad shape, non-finite values, or ``T <= 0``.
    """
    z = torch.as_tensor(_check_scores(logits, "logits"), dtype=torch.float64)
    t = _check_temperature(temperature)
    return torch.softmax(z / t, dim=1).to(torch.float32).numpy()


def nll(logits: Any, labels: Any, temperature: float = 1.0) -> float:
    """Mean negative log-likelihood (cross-entropy, nats) of ``softmax(logits / T)``.

    Args:
        logits: ``(N, K)`` float logits.
        labels: ``(N,)`` int class indices in ``[0, K)``.
        temperature: ``T > 0``.

    Returns:
        The mean NLL in nats (:func:`torch.nn.functional.cross_entropy`).

    Raises:
        ConfigError: Bad shapes, values or temperature.
    """
    z = _check_scores(logits, "logits")
    y = _check_labels(labels, z.shape[0], z.shape[1])
    t = _check_temperature(temperature)
    return float(F.cross_entropy(torch.as_tensor(z, dtype=torch.float64) / t,
                                 torch.as_tensor(y)))


def fit_temperature(logits: Any, labels: Any, *, max_iter: int = 100) -> float:
    """Fit the temperature ``T`` that minimises the NLL of ``softmax(logits / T)``.

    Optimises ``log T`` (so ``T`` stays positive) with :class:`torch.optim.LBFGS` and a
    strong-Wolfe line search, in float64 on the CPU. The NLL is convex in ``1 / T``, so
    the minimum is unique. The result is kept in ``[T_MIN, T_MAX]`` and is never worse
    (in NLL) than ``T = 1``.

    Args:
        logits: ``(N, K)`` float logits of held-out images (``float32`` is typical).
        labels: ``(N,)`` int64 true class indices in ``[0, K)``.
        max_iter: LBFGS iterations (>= 1).

    Returns:
        The temperature, a float ``> 0``.

    Raises:
        ConfigError: Bad shapes or values (``N = 0``, ``K < 2``, NaN/inf, labels outside
            ``[0, K)``) or ``max_iter < 1``.
    """
    z_np = _check_scores(logits, "logits")
    y_np = _check_labels(labels, z_np.shape[0], z_np.shape[1])
    if max_iter < 1:
        raise ConfigError(f"max_iter must be >= 1, got {max_iter}.")
    lo, hi = math.log(T_MIN), math.log(T_MAX)
    with torch.inference_mode(False), torch.enable_grad():
        z = torch.as_tensor(z_np, dtype=torch.float64).clone()
        y = torch.as_tensor(y_np).clone()
        log_t = torch.zeros((), dtype=torch.float64, requires_grad=True)
        opt = torch.optim.LBFGS([log_t], lr=1.0, max_iter=max_iter, tolerance_grad=1e-9,
                                tolerance_change=1e-12, line_search_fn="strong_wolfe")

        def closure() -> torch.Tensor:
            opt.zero_grad()
            loss = F.cross_entropy(z / log_t.clamp(lo, hi).exp(), y)
            loss.backward()
            return loss

        opt.step(closure)
        t = float(log_t.detach().clamp(lo, hi).exp())
    if not math.isfinite(t) or nll(z_np, y_np, t) > nll(z_np, y_np, 1.0):
        t = 1.0
    return t


@dataclass(frozen=True)
class ReliabilityBins:
    """Reliability-diagram data: accuracy vs confidence in equal-width confidence bins.

    Attributes:
        edges: ``(M + 1,) float64`` bin edges ``0, 1/M, ..., 1``; bin ``m`` is
            ``(edges[m], edges[m + 1]]`` (the first also holds 0).
        count: ``(M,) int64`` predictions per bin.
        confidence: ``(M,) float64`` mean top-1 confidence per bin (NaN when empty).
        accuracy: ``(M,) float64`` fraction of correct top-1 predictions per bin (NaN
            when empty).
    """

    edges: np.ndarray
    count: np.ndarray
    confidence: np.ndarray
    accuracy: np.ndarray

    @property
    def n(self) -> int:
        """Number of predictions."""
        return int(self.count.sum())

    @property
    def ece(self) -> float:
        """Expected calibration error in [0, 1]: ``sum_m |B_m|/N |acc_m - conf_m|``."""
        filled = self.count > 0
        gaps = np.abs(self.accuracy[filled] - self.confidence[filled])
        return float(np.sum(self.count[filled] * gaps) / max(self.n, 1))

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe form (lists; empty bins have ``None`` confidence and accuracy)."""

        def clean(a: np.ndarray) -> list[float | None]:
            return [None if not np.isfinite(v) else float(v) for v in a]

        return {"edges": [float(v) for v in self.edges], "count": self.count.tolist(),
                "confidence": clean(self.confidence), "accuracy": clean(self.accuracy),
                "ece": self.ece}


def _check_probs(probs: Any) -> np.ndarray:
    """``probs`` as ``(N, K) float64``; :class:`ConfigError` unless ``N >= 1``, ``K >= 2``
    and every value in [0, 1] (within 1e-6)."""
    p = _check_scores(probs, "probs").astype(np.float64)
    if p.min() < -1e-6 or p.max() > 1 + 1e-6:
        raise ConfigError("probs must lie in [0, 1].", "pass softmax outputs, not logits")
    return p


def _bin_index(conf: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """``(edges (M + 1,), bin of each confidence (N,) int64)`` of ``n_bins`` equal-width bins.

    ``searchsorted(side="left")`` on the inner edges puts ``conf`` in bin ``m`` when
    ``edges[m] < conf <= edges[m + 1]`` (right-closed bins, 0 in the first)."""
    if not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ConfigError(f"n_bins must be an int >= 1, got {n_bins!r}.")
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    return edges, np.searchsorted(edges[1:-1], conf, side="left")


def reliability_bins(probs: Any, y_true: Any, n_bins: int = DEFAULT_BINS) -> ReliabilityBins:
    """Bin top-1 predictions by confidence (data of a reliability diagram).

    Args:
        probs: ``(N, K)`` class probabilities in [0, 1] (rows normally sum to 1).
        y_true: ``(N,)`` int true class indices in ``[0, K)``.
        n_bins: Number ``M`` of equal-width bins over [0, 1] (>= 1).

    Returns:
        The :class:`ReliabilityBins`.

    Raises:
        ConfigError: Bad shapes, probabilities outside [0, 1], labels outside ``[0, K)``,
            or ``n_bins < 1``.
    """
    p = _check_probs(probs)
    y = _check_labels(y_true, p.shape[0], p.shape[1])
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    edges, idx = _bin_index(conf, n_bins)
    count = np.bincount(idx, minlength=n_bins).astype(np.int64)
    with np.errstate(invalid="ignore", divide="ignore"):
        confidence = np.bincount(idx, weights=conf, minlength=n_bins) / count
        accuracy = np.bincount(idx, weights=correct, minlength=n_bins) / count
    return ReliabilityBins(edges=edges, count=count, confidence=confidence, accuracy=accuracy)


def expected_calibration_error(probs: Any, y_true: Any, n_bins: int = DEFAULT_BINS) -> float:
    """Expected calibration error of top-1 predictions, with ``n_bins`` equal-width bins.

    Args:
        probs: ``(N, K)`` class probabilities in [0, 1].
        y_true: ``(N,)`` int true class indices in ``[0, K)``.
        n_bins: Number of bins (15 as in Guo et al., 2017).

    Returns:
        ECE in [0, 1] (0 = perfectly calibrated).

    Raises:
        ConfigError: As :func:`reliability_bins`.
    """
    return reliability_bins(probs, y_true, n_bins).ece


def ece_if_calibrated(probs: Any, n_bins: int = DEFAULT_BINS, *, n_resamples: int = 1000,
                      seed: int = 0, level: float = 0.95) -> dict[str, float | int]:
    """The ECE a perfectly calibrated model with these confidences would show on N images.

    Consistency resampling (Bröcker & Smith 2007, *Increasing the reliability of
    reliability diagrams*, Weather and Forecasting 22(3)): each resample draws every
    image's label from the model's own probabilities, so the model is calibrated by
    construction and the ECE of the draw is pure sampling noise. A top-1 prediction is then
    correct with probability equal to its confidence, so only that Bernoulli draw is made.
    An observed ECE inside the interval cannot be told from a calibrated model's on this
    many images: on 154 images with confidences around 0.8 the interval is about
    0.04-0.12, so an ECE target of 0.05 is below what such a split can resolve.

    Args:
        probs: ``(N, K)`` class probabilities in [0, 1] (e.g. after temperature scaling).
        n_bins: Number of equal-width ECE bins, as :func:`expected_calibration_error`.
        n_resamples: Number of draws (>= 1).
        seed: Seed of the draws (the result is deterministic).
        level: Central interval mass, in (0, 1).

    Returns:
        ``{"median", "low", "high"}`` ECE of the draws (``low``/``high``: the central
        ``level`` interval) plus ``"n_resamples"`` and ``"level"``.

    Raises:
        ConfigError: As :func:`reliability_bins`, or ``n_resamples < 1``, ``level`` not in
            (0, 1).
    """
    p = _check_probs(probs)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, (int, np.integer)) \
            or n_resamples < 1:
        raise ConfigError(f"n_resamples must be an int >= 1, got {n_resamples!r}.")
    if not 0.0 < level < 1.0:
        raise ConfigError(f"level must be in (0, 1), got {level!r}.")
    conf = p.max(axis=1)
    _, idx = _bin_index(conf, n_bins)
    onehot = np.zeros((conf.size, n_bins))
    onehot[np.arange(conf.size), idx] = 1.0
    rng = np.random.default_rng(seed)
    eces = []
    step = max(1, min(100, 4_000_000 // max(conf.size, 1)))  # <= ~32 MB of draws at a time
    for start in range(0, n_resamples, step):
        rows = min(step, n_resamples - start)
        gap = (rng.random((rows, conf.size)) < conf).astype(np.float64) - conf
        eces.append(np.abs(gap @ onehot).sum(axis=1) / max(conf.size, 1))
    draws = np.concatenate(eces)
    tail = (1.0 - level) / 2 * 100
    low, median, high = np.percentile(draws, [tail, 50.0, 100 - tail])
    return {"median": float(median), "low": float(low), "high": float(high),
            "n_resamples": int(n_resamples), "level": float(level)}


# --------------------------------------------------------------------------- results


@dataclass
class CalibrationResult:
    """A fitted temperature and what it changed on the data it was fitted on.

    Attributes:
        temperature: ``T > 0``; probabilities are ``softmax(logits / T)``.
        fitted_on: Split name the temperature was fitted on (e.g. ``"val"``).
        n: Number of images it was fitted on.
        ece_before: ECE with ``T = 1`` (in [0, 1]).
        ece_after: ECE with the fitted ``T``.
        nll_before: Mean NLL (nats) with ``T = 1``.
        nll_after: Mean NLL (nats) with the fitted ``T``.
        n_bins: Number of ECE bins.
        checkpoint: The checkpoint it was written into (``None``: not written).
        warnings: Why the result should not be trusted, if it should not (see
            :func:`calibration_warnings`); also logged.
        manifest: The manifest the data came from, when known.
        manifest_source: Why that manifest (see
            :class:`babyemo.data.preparation.lookup.ManifestChoice`).
        copy_name: For a packaged model (read-only), the registered name of the calibrated
            copy that ``checkpoint`` is (see :func:`babyemo.models.store.writable_copy`).
    """

    temperature: float
    fitted_on: str
    n: int
    ece_before: float
    ece_after: float
    nll_before: float
    nll_after: float
    n_bins: int = DEFAULT_BINS
    checkpoint: Path | None = None
    warnings: list[str] = field(default_factory=list)
    manifest: Path | None = None
    manifest_source: str | None = None
    copy_name: str | None = None

    def to_dict(self) -> dict[str, Any]:
        """The checkpoint's ``calibration`` entry (plain types only)."""
        return {"temperature": float(self.temperature), "fitted_on": self.fitted_on,
                "n": int(self.n), "ece_before": float(self.ece_before),
                "ece_after": float(self.ece_after), "nll_before": float(self.nll_before),
                "nll_after": float(self.nll_after), "n_bins": int(self.n_bins)}


def calibrate_logits(logits: Any, labels: Any, *, fitted_on: str = "val",
                     n_bins: int = DEFAULT_BINS) -> CalibrationResult:
    """Fit a temperature on logits and measure ECE and NLL before and after.

    Args:
        logits: ``(N, K)`` float logits of held-out images.
        labels: ``(N,)`` int64 true class indices.
        fitted_on: Name of the split the logits come from (recorded only).
        n_bins: Number of ECE bins.

    Returns:
        The :class:`CalibrationResult` (``checkpoint`` is ``None``).

    Raises:
        ConfigError: As :func:`fit_temperature`.
    """
    t = fit_temperature(logits, labels)
    y = np.asarray(labels)
    if np.array_equal(np.asarray(logits).argmax(axis=1), y):
        log.warning("Every one of the %d %s images is classified correctly, so the temperature "
                    "is poorly determined (the NLL keeps falling as T -> 0): T=%.3g. Fit it "
                    "on a larger held-out set with `babyemo calibrate`.", y.shape[0],
                    fitted_on, t)
    warnings = calibration_warnings(logits, y, t, fitted_on)
    for warning in warnings:
        log.warning("Calibration: %s.", warning)
    return CalibrationResult(
        temperature=t, fitted_on=fitted_on, n=int(y.shape[0]),
        ece_before=expected_calibration_error(softmax(logits), y, n_bins),
        ece_after=expected_calibration_error(softmax(logits, t), y, n_bins),
        nll_before=nll(logits, y, 1.0), nll_after=nll(logits, y, t), n_bins=n_bins,
        warnings=warnings)
