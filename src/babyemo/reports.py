"""Report files: JSON, CSV and PNG figures (confusion matrix, training curves, image grids).

Every file is written atomically through :mod:`babyemo.fs` (temporary name in the same
folder, then rename), so an interrupted run never leaves a truncated report. Figures are
drawn with matplotlib's Agg renderer on a standalone :class:`matplotlib.figure.Figure`
(no pyplot, no GUI backend, the global backend is left untouched), rendered to PNG in
memory and then written in one go. matplotlib is imported lazily, so importing this module
stays cheap.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from babyemo.errors import ConfigError
from babyemo.fs import atomic_open, atomic_write_bytes, atomic_write_text

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure
    from PIL import Image

__all__ = [
    "write_json",
    "write_csv_rows",
    "write_confusion_csv",
    "plot_confusion",
    "plot_curves",
    "plot_image_grid",
    "plot_reliability",
    "confusion_figure",
    "curves_figure",
    "reliability_figure",
]

PathLike = str | os.PathLike[str]

OK_COLOR = "green"
WRONG_COLOR = "red"
_DPI = 100


# --------------------------------------------------------------------------- text files


def _json_default(obj: Any) -> Any:
    """Convert numpy scalars/arrays and paths, which :mod:`json` does not know."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, os.PathLike):
        return os.fspath(obj)
    raise TypeError(f"Object of type {type(obj).__name__} is not JSON serializable")


def write_json(obj: Any, path: PathLike) -> None:
    """Write ``obj`` as UTF-8 JSON (indent 2, keys in insertion order, non-ASCII kept).

    numpy scalars and arrays and :class:`os.PathLike` values are converted to plain JSON
    values. Non-finite floats are written as ``NaN``/``Infinity`` (Python's :mod:`json`
    default, readable by Python and most JSON5 parsers).

    Args:
        obj: A JSON-serialisable value.
        path: Output file; its folder is created if missing.

    Raises:
        ConfigError: ``obj`` holds a value JSON cannot represent (nothing is written).
    """
    try:
        text = json.dumps(obj, indent=2, sort_keys=False, ensure_ascii=False,
                          default=_json_default)
    except (TypeError, ValueError) as e:
        raise ConfigError(f"Cannot write {path} as JSON: {e}.",
                          "pass only dicts, lists, strings, numbers, booleans and None") from e
    atomic_write_text(path, text + "\n")


def write_csv_rows(path: PathLike, header: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    """Write a CSV file (stdlib :mod:`csv`, excel dialect, UTF-8) with one header row.

    Args:
        path: Output file; its folder is created if missing.
        header: Column names.
        rows: Rows of values (converted with ``str`` by :mod:`csv`; ``None`` -> empty).
            May be a generator; if it raises, no file is written.
    """
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(list(header))
        for row in rows:
            writer.writerow(list(row))


def _check_cm(cm: Any, class_names: Sequence[str]) -> np.ndarray:
    """Return ``cm`` as a ``(K, K) int64`` array matching ``class_names``.

    Raises:
        ConfigError: Wrong shape, or negative or non-integer counts.
    """
    a = np.asarray(cm)
    k = len(class_names)
    if k == 0 or a.shape != (k, k):
        raise ConfigError(f"Confusion matrix has shape {a.shape}, expected ({k}, {k}) for "
                          f"{k} class names.", "pass one row and one column per class")
    if a.dtype.kind not in "iu" and not (a.dtype.kind == "f" and np.all(a == np.round(a))):
        raise ConfigError(f"Confusion matrix must hold integer counts, got dtype {a.dtype}.")
    a = a.astype(np.int64)
    if (a < 0).any():
        raise ConfigError("Confusion matrix holds negative counts.")
    return a


def write_confusion_csv(cm: Any, class_names: Sequence[str], path: PathLike) -> None:
    """Write a confusion matrix as CSV.

    The first column, headed ``true\\pred``, holds the true class names; the other columns,
    one per predicted class, hold the counts.

    Args:
        cm: Counts, shape ``(K, K)``; rows = true class, columns = predicted class.
        class_names: The ``K`` class names.
        path: Output file.

    Raises:
        ConfigError: ``cm`` is not ``(K, K)`` non-negative integer counts.
    """
    a = _check_cm(cm, class_names)
    rows = ([name, *(int(v) for v in a[i])] for i, name in enumerate(class_names))
    write_csv_rows(path, ["true\\pred", *class_names], rows)


# --------------------------------------------------------------------------- figures


def _new_figure(figsize: tuple[float, float]) -> Figure:
    """A standalone figure bound to the Agg canvas (does not touch pyplot or the backend)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=figsize, dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save_png(fig: Figure, path: PathLike) -> None:
    """Render ``fig`` to PNG in memory, then write it atomically."""
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=_DPI, bbox_inches="tight")
    atomic_write_bytes(path, buf.getvalue())


def _message_figure(text: str, title: str = "") -> Figure:
    """A small figure that only says ``text`` (used when there is nothing to plot)."""
    fig = _new_figure((3.0, 1.5))
    if title:
        fig.suptitle(title)
    fig.text(0.5, 0.5, text, ha="center", va="center", fontsize=12)
    return fig


def plot_confusion(cm: Any, class_names: Sequence[str], path: PathLike, title: str = "") -> None:
    """Plot a confusion matrix as a PNG with two panels: counts and row-normalised.

    The figure is :func:`confusion_figure`'s.

    Args:
        cm: Counts, shape ``(K, K)``; rows = true class, columns = predicted class.
        class_names: The ``K`` class names.
        path: Output ``.png`` file.
        title: Figure title (optional), e.g. ``"main-job on test (n=154)"``.

    Raises:
        ConfigError: ``cm`` is not ``(K, K)`` non-negative integer counts.
    """
    _save_png(confusion_figure(cm, class_names, title), path)


def confusion_figure(cm: Any, class_names: Sequence[str], title: str = "") -> Figure:
    """The figure of :func:`plot_confusion` (two panels: counts and row-normalised).

    Rows are true classes (y label ``true``), columns predicted classes (x label
    ``predicted``). In the right panel each row is divided by its support, so it sums to 1
    and the diagonal is the per-class recall; rows with no true samples are shown as 0.
    Every cell is annotated. Sized for about 2-7 classes (larger ``K`` still works, with
    smaller text).

    Args:
        cm: Counts, shape ``(K, K)``; rows = true class, columns = predicted class.
        class_names: The ``K`` class names.
        title: Figure title (optional).

    Returns:
        A standalone Agg :class:`~matplotlib.figure.Figure` (not saved).

    Raises:
        ConfigError: ``cm`` is not ``(K, K)`` non-negative integer counts.
    """
    a = _check_cm(cm, class_names)
    k = len(class_names)
    support = a.sum(axis=1, keepdims=True)
    norm = np.divide(a, support, out=np.zeros(a.shape, dtype=float), where=support > 0)

    side = max(3.2, 0.75 * k + 1.8)
    fig = _new_figure((2 * side + 1.0, side + 0.6))
    axes = fig.subplots(1, 2)
    fontsize = 11 if k <= 5 else 9 if k <= 8 else 7
    rotate = max(len(str(c)) for c in class_names) > 6 or k > 5
    panels = ((axes[0], a, "counts", float(max(a.max(), 1)), "{:.0f}"),
              (axes[1], norm, "row-normalised (recall on diagonal)", 1.0, "{:.2f}"))
    for ax, values, name, vmax, fmt in panels:
        im = ax.imshow(values, cmap="Blues", vmin=0.0, vmax=vmax)
        fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
        ax.set_title(name)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true")
        ax.set_xticks(range(k))
        ax.set_yticks(range(k))
        ax.set_xticklabels(class_names, rotation=45 if rotate else 0,
                           ha="right" if rotate else "center")
        ax.set_yticklabels(class_names)
        for i in range(k):
            for j in range(k):
                v = values[i, j]
                color = "white" if v > 0.5 * vmax else "black"
                ax.text(j, i, fmt.format(v), ha="center", va="center", color=color,
                        fontsize=fontsize)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _series(history: Sequence[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    """(epochs, values) for rows that have a finite number under ``key``."""
    xs, ys = [], []
    for i, row in enumerate(history):
        v = row.get(key)
        if isinstance(v, (int, float, np.number)) and not isinstance(v, bool) \
                and math.isfinite(float(v)):
            xs.append(float(row.get("epoch", i + 1)))
            ys.append(float(v))
    return xs, ys


_CURVE_PANELS: tuple[tuple[str, str, tuple[tuple[str, str], ...]], ...] = (
    ("loss", "cross-entropy loss", (("train_loss", "train"), ("val_loss", "val"))),
    ("accuracy / macro-F1", "fraction (0-1)", (("train_acc", "train acc"),
                                               ("val_acc", "val acc"),
                                               ("val_macro_f1", "val macro-F1"))),
    ("learning rate", "learning rate", (("lr", "lr"),)),
)
"""(panel title, y label, ((history key, legend label), ...)) of :func:`curves_figure`."""


def plot_curves(history: Sequence[dict[str, Any]], path: PathLike,
                best_epoch: int | None = None) -> None:
    """Plot training curves per epoch as a PNG (see :func:`curves_figure`).

    Args:
        history: One dict per epoch, e.g. ``{"epoch": 1, "train_loss": 1.1, "val_loss":
            1.0, "train_acc": 0.4, "val_acc": 0.5, "val_macro_f1": 0.45, "lr": 1e-3}``.
        path: Output ``.png`` file.
        best_epoch: The epoch kept as ``best.pt``, marked on every panel (``None``: no
            marker).
    """
    _save_png(curves_figure(history, best_epoch), path)


def curves_figure(history: Sequence[dict[str, Any]], best_epoch: int | None = None) -> Figure:
    """The figure of :func:`plot_curves`: training curves per epoch.

    Panels: loss (``train_loss``, ``val_loss``), accuracy (``train_acc``, ``val_acc``) with
    ``val_macro_f1``, and learning rate (``lr``, log scale when it spans more than 10x),
    each with a y-axis label and a legend. Keys absent from all rows (or not finite) are
    skipped, and so is a panel with nothing left; other keys (e.g. ``seconds``) are
    ignored. The x axis is ``epoch`` (the row's 1-based position when missing), with
    integer ticks and half an epoch of margin on each side (a 1-epoch history spans
    0.5-1.5). ``best_epoch``, when given, is a dashed vertical line on every panel, named
    in the legend. An empty history gives a small "no history" figure.

    Args:
        history: One dict per epoch (see :func:`plot_curves`).
        best_epoch: The epoch to mark (``None``: no marker).

    Returns:
        A standalone Agg :class:`~matplotlib.figure.Figure` (not saved).
    """
    from matplotlib.ticker import MaxNLocator

    panels = []
    for name, ylabel, keys in _CURVE_PANELS:
        lines = [(label, *_series(history, key)) for key, label in keys]
        lines = [line for line in lines if line[1]]
        if lines:
            panels.append((name, ylabel, lines))
    if not panels:
        return _message_figure("no history")
    epochs = [x for _, _, lines in panels for _, xs, _ in lines for x in xs]
    if best_epoch is not None:
        epochs.append(float(best_epoch))
    lo, hi = min(epochs), max(epochs)
    fig = _new_figure((4.2 * len(panels), 3.4))
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (name, ylabel, lines) in zip(axes, panels, strict=True):
        for label, xs, ys in lines:
            ax.plot(xs, ys, marker="o" if len(xs) < 30 else None, markersize=3, label=label)
        if best_epoch is not None:
            ax.axvline(best_epoch, color="black", linestyle="--", linewidth=1, alpha=0.6,
                       label=f"best epoch ({best_epoch})")
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.grid(True, alpha=0.3)
        if name == "learning rate":
            ys = [y for _, _, series in lines for y in series]
            if min(ys) > 0 and max(ys) / min(ys) > 10:
                ax.set_yscale("log")
            else:
                ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 3))
        elif name.startswith("accuracy"):
            ax.set_ylim(-0.02, 1.02)
        ax.set_xlim(lo - 0.5, hi + 0.5)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True, min_n_ticks=1))
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def _as_array(img: Image.Image, max_side: int = 256) -> tuple[np.ndarray, str | None]:
    """A display-sized RGB(A)/grey array of ``img`` and the colormap it needs."""
    im = img
    if max(im.size) > max_side:
        im = im.copy()
        im.thumbnail((max_side, max_side))
    if im.mode == "L":
        return np.asarray(im), "gray"
    if im.mode not in ("RGB", "RGBA"):
        im = im.convert("RGBA" if "A" in im.getbands() else "RGB")
    return np.asarray(im), None


def plot_image_grid(items: Sequence[tuple[Image.Image, str, bool]], path: PathLike,
                    ncols: int = 6, title: str = "") -> None:
    """Plot images in a grid, each with a caption, as a PNG.

    Captions are green when the item is marked correct and red otherwise. Images larger
    than 256 px are shown downscaled. An empty ``items`` writes a small "no images" figure.

    Args:
        items: ``(image, caption, ok)`` tuples, e.g.
            ``(img, "true: happy\\npred: crying 0.71", False)``.
        path: Output ``.png`` file.
        ncols: Maximum number of columns (>= 1).
        title: Figure title (optional).

    Raises:
        ConfigError: ``ncols`` < 1.
    """
    if ncols < 1:
        raise ConfigError(f"ncols must be >= 1, got {ncols}.")
    if not items:
        _save_png(_message_figure("no images", title), path)
        return
    n = len(items)
    cols = min(ncols, n)
    rows = math.ceil(n / cols)
    fig = _new_figure((2.0 * cols, 2.4 * rows + (0.4 if title else 0.0)))
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    for ax in axes:
        ax.axis("off")
    for ax, (img, caption, ok) in zip(axes, items, strict=False):
        arr, cmap = _as_array(img)
        ax.imshow(arr, cmap=cmap, vmin=0 if cmap else None, vmax=255 if cmap else None)
        ax.set_title(caption, color=OK_COLOR if ok else WRONG_COLOR, fontsize=9)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    _save_png(fig, path)


UNDER_COLOR = "orange"
"""Hatching of the under-confident part of a reliability bar."""


def plot_reliability(panels: Sequence[tuple[str, dict[str, Any]]], path: PathLike,
                     title: str = "") -> None:
    """Plot reliability diagrams (accuracy vs confidence per bin) as a PNG, side by side.

    The figure is :func:`reliability_figure`'s.

    Args:
        panels: ``(label, bins)`` pairs (see :func:`reliability_figure`).
        path: Output ``.png`` file.
        title: Figure title (optional), e.g. ``"main-job on test (n=154)"``.

    Raises:
        ConfigError: No panel, or a panel whose lists do not match its ``M + 1`` edges.
    """
    _save_png(reliability_figure(panels, title), path)


def reliability_figure(panels: Sequence[tuple[str, dict[str, Any]]], title: str = "") -> Figure:
    """Reliability diagrams (accuracy vs confidence per bin), one column per panel.

    Each panel shows, per equal-width confidence bin, the accuracy as a blue bar and the
    gap between it and the bin's mean confidence (the calibration error of that bin): a
    red hatched bar above the accuracy bar where the confidence is higher (over-confident),
    an orange hatching over the top of the accuracy bar where the accuracy is higher
    (under-confident). The dashed diagonal is perfect calibration. Below, grey bars give
    the number of predictions per bin. The panel title gives the ECE. Empty bins are left
    blank. One legend, under the panels, names every kind of mark drawn. Typical use: the
    same predictions before (``T = 1``) and after temperature scaling.

    Args:
        panels: ``(label, bins)`` pairs, ``bins`` as
            :meth:`babyemo.calibration.ReliabilityBins.to_dict`: ``edges`` (``M + 1``
            floats), ``count`` (``M`` ints), ``confidence`` and ``accuracy`` (``M`` floats
            in [0, 1], ``None`` for empty bins) and ``ece``.
        title: Figure title (optional).

    Returns:
        A standalone Agg :class:`~matplotlib.figure.Figure` (not saved).

    Raises:
        ConfigError: No panel, or a panel whose lists do not match its ``M + 1`` edges.
    """
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch

    if not panels:
        raise ConfigError("plot_reliability needs at least one panel.")
    data = []
    for label, bins in panels:
        edges = np.asarray(bins["edges"], dtype=float)
        m = edges.size - 1
        arrays = [np.asarray([np.nan if v is None else v for v in bins[k]], dtype=float)
                  for k in ("count", "confidence", "accuracy")]
        if m < 1 or any(a.shape != (m,) for a in arrays):
            raise ConfigError(f"Reliability panel {label!r}: count/confidence/accuracy must "
                              f"have {max(m, 0)} values for {edges.size} edges.")
        data.append((label, edges, *arrays, bins.get("ece")))
    n = len(data)
    fig = _new_figure((4.2 * n, 5.4))
    fig.set_layout_engine("constrained")
    axes = fig.subplots(2, n, squeeze=False, sharex="col",
                        gridspec_kw={"height_ratios": [3, 1]})
    acc_style = {"facecolor": "tab:blue", "edgecolor": "black", "linewidth": 0.5}
    over_style = {"facecolor": WRONG_COLOR, "alpha": 0.3, "edgecolor": WRONG_COLOR, "hatch": "//",
                  "linewidth": 0.5}
    under_style = {"facecolor": "none", "edgecolor": UNDER_COLOR, "hatch": "\\\\",
                   "linewidth": 0.5}
    count_style = {"facecolor": "gray", "edgecolor": "black", "linewidth": 0.5}
    any_over = any_under = False
    for j, (label, edges, count, conf, acc, ece) in enumerate(data):
        top, bottom = axes[0, j], axes[1, j]
        left, width = edges[:-1], np.diff(edges)
        filled = count > 0
        over = filled & (conf > acc)
        under = filled & (conf < acc)
        any_over, any_under = any_over or bool(over.any()), any_under or bool(under.any())
        top.bar(left[filled], acc[filled], width=width[filled], align="edge", **acc_style)
        top.bar(left[over], (conf - acc)[over], bottom=acc[over], width=width[over],
                align="edge", **over_style)
        top.bar(left[under], (acc - conf)[under], bottom=conf[under], width=width[under],
                align="edge", **under_style)
        top.plot([0, 1], [0, 1], linestyle="--", color="gray", linewidth=1)
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        top.set_ylabel("accuracy")
        top.set_title(label if ece is None else f"{label}\nECE {float(ece):.3f}", fontsize=10)
        top.grid(True, alpha=0.3)
        bottom.bar(left, count, width=width, align="edge", **count_style)
        bottom.set_xlabel("confidence (top-1 probability)")
        bottom.set_ylabel("images")
    handles: list[Any] = [Patch(**acc_style)]
    labels = ["accuracy of the bin"]
    if any_over:
        handles.append(Patch(**over_style))
        labels.append("gap: confidence above accuracy (over-confident)")
    if any_under:
        handles.append((Patch(**acc_style), Patch(**under_style)))
        labels.append("gap: accuracy above confidence (under-confident)")
    handles += [Line2D([], [], linestyle="--", color="gray", linewidth=1),
                Patch(**count_style)]
    labels += ["perfect calibration (accuracy = confidence)", "images per bin (lower panels)"]
    fig.legend(handles, labels, loc="outside lower center", ncol=2 if n > 1 else 1,
               fontsize=8)
    if title:
        fig.suptitle(title)
    return fig
