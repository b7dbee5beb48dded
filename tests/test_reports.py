"""Tests of babyemo.reports: file content, PNG validity and atomic writing."""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from babyemo import reports
from babyemo.errors import ConfigError

NAMES = ["happy", "crying", "neutral"]
CM = [[2, 1, 0], [0, 1, 1], [0, 0, 1]]


def _png(path: Path) -> Image.Image:
    assert path.is_file()
    img = Image.open(path)
    img.load()
    assert img.format == "PNG"
    return img.convert("RGB")


def _non_white_fraction(img: Image.Image) -> float:
    a = np.asarray(img)
    return float((a < 240).any(axis=2).mean())


def _listing(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# --------------------------------------------------------------------------- text files


def test_write_json_exact_text(tmp_path):
    path = tmp_path / "sub" / "report.json"
    reports.write_json({"split": "test", "accuracy": 0.5, "class": "café", "a": [1, 2]}, path)
    assert path.read_text(encoding="utf-8") == (
        '{\n  "split": "test",\n  "accuracy": 0.5,\n  "class": "café",\n'
        '  "a": [\n    1,\n    2\n  ]\n}\n')


def test_write_json_converts_numpy_and_paths(tmp_path):
    path = tmp_path / "r.json"
    reports.write_json({"n": np.int64(3), "x": np.float32(0.25), "cm": np.eye(2, dtype=int),
                        "p": Path("a/b")}, path)
    assert json.loads(path.read_text()) == {"n": 3, "x": 0.25, "cm": [[1, 0], [0, 1]],
                                            "p": "a/b"}


def test_write_json_unserialisable_writes_nothing(tmp_path):
    with pytest.raises(ConfigError, match="JSON"):
        reports.write_json({"x": object()}, tmp_path / "r.json")
    assert _listing(tmp_path) == []


def test_write_csv_rows_exact(tmp_path):
    path = tmp_path / "p.csv"
    reports.write_csv_rows(path, ["path", "true", "note"],
                           iter([["a/1.jpg", "happy", "x, y"], ["b/2.jpg", "crying", None]]))
    assert path.read_bytes() == (b'path,true,note\r\na/1.jpg,happy,"x, y"\r\n'
                                 b"b/2.jpg,crying,\r\n")


def test_write_confusion_csv_exact(tmp_path):
    path = tmp_path / "confusion.csv"
    reports.write_confusion_csv(np.array(CM), NAMES, path)
    assert path.read_bytes() == (
        b"true\\pred,happy,crying,neutral\r\n"
        b"happy,2,1,0\r\n"
        b"crying,0,1,1\r\n"
        b"neutral,0,0,1\r\n")


@pytest.mark.parametrize("cm", [[[1, 2], [3, 4]], [[1, -1, 0]] * 3, [[0.5, 0, 0]] * 3])
def test_confusion_rejects_bad_matrix(tmp_path, cm):
    with pytest.raises(ConfigError):
        reports.write_confusion_csv(cm, NAMES, tmp_path / "c.csv")
    with pytest.raises(ConfigError):
        reports.plot_confusion(cm, NAMES, tmp_path / "c.png")
    assert _listing(tmp_path) == []


# --------------------------------------------------------------------------- atomicity


def test_csv_generator_failing_midway_leaves_no_file(tmp_path):
    def rows():
        yield ["a", 1]
        yield ["b", 2]
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError, match="disk on fire"):
        reports.write_csv_rows(tmp_path / "m.csv", ["k", "v"], rows())
    assert _listing(tmp_path) == []  # neither m.csv nor a .m.csv.*.tmp


def test_failed_rewrite_keeps_previous_file(tmp_path):
    path = tmp_path / "m.csv"
    reports.write_csv_rows(path, ["k"], [["old"]])
    before = path.read_bytes()

    def rows():
        yield ["new"]
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        reports.write_csv_rows(path, ["k"], rows())
    assert path.read_bytes() == before
    assert _listing(tmp_path) == ["m.csv"]


def test_png_failing_after_bytes_written_leaves_no_file(tmp_path, monkeypatch):
    written = []

    def failing_fsync(fd):
        written.append(os.fstat(fd).st_size)  # the temp file already holds the PNG bytes
        raise OSError("fsync failed")

    monkeypatch.setattr("babyemo.fs.os.fsync", failing_fsync)
    with pytest.raises(OSError, match="fsync failed"):
        reports.plot_confusion(CM, NAMES, tmp_path / "confusion.png")
    assert written and written[0] > 1000
    assert _listing(tmp_path) == []


def test_json_failing_on_rename_leaves_no_file(tmp_path, monkeypatch):
    def failing_replace(src, dst):
        raise OSError("rename failed")

    monkeypatch.setattr("babyemo.fs.os.replace", failing_replace)
    with pytest.raises(OSError, match="rename failed"):
        reports.write_json({"a": 1}, tmp_path / "r.json")
    assert _listing(tmp_path) == []


# --------------------------------------------------------------------------- figures


def test_plot_confusion_png(tmp_path):
    path = tmp_path / "out" / "confusion.png"
    reports.plot_confusion(CM, NAMES, path, title="best.pt on test")
    img = _png(path)
    w, h = img.size
    assert 500 < w < 2000 and 250 < h < 1200
    assert w > 1.5 * h  # two side-by-side panels
    assert _non_white_fraction(img) > 0.05
    assert _listing(path.parent) == ["confusion.png"]


def test_plot_confusion_zero_support_row_and_size_grows_with_k(tmp_path):
    cm7 = np.arange(49).reshape(7, 7)
    cm7[1] = 0  # a class with no true samples: shown as zeros, no divide warning
    names7 = ["angry", "disgust", "fear", "happy", "neutral", "sad", "surprise"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        reports.plot_confusion(cm7, names7, tmp_path / "c7.png")
        reports.plot_confusion([[3, 0], [1, 2]], ["a", "b"], tmp_path / "c2.png")
    w7, h7 = _png(tmp_path / "c7.png").size
    w2, h2 = _png(tmp_path / "c2.png").size
    assert w7 > w2 and h7 > h2
    assert w2 > 400 and h2 > 200


HISTORY = [{"epoch": e, "train_loss": 1.0 / e, "val_loss": 1.2 / e, "train_acc": 1 - 0.5 / e,
            "val_acc": 1 - 0.6 / e, "val_macro_f1": 1 - 0.7 / e, "lr": 1e-3 * 0.5 ** e,
            "seconds": 3.0, "val_acc_happy": 0.5} for e in range(1, 6)]


def test_plot_curves_full_and_partial(tmp_path):
    reports.plot_curves(HISTORY, tmp_path / "full.png")
    partial = [{"epoch": r["epoch"], "train_loss": r["train_loss"], "lr": r["lr"]}
               for r in HISTORY]
    reports.plot_curves(partial, tmp_path / "partial.png")
    full_img, partial_img = _png(tmp_path / "full.png"), _png(tmp_path / "partial.png")
    assert 700 < full_img.size[0] < 2500 and 200 < full_img.size[1] < 800
    assert _non_white_fraction(full_img) > 0.02
    # the accuracy panel is skipped when no accuracy key is present: 2 panels instead of 3
    assert partial_img.size[0] < 0.8 * full_img.size[0]


def test_plot_curves_tolerates_missing_and_nan_values(tmp_path):
    history = [{"epoch": 1, "train_loss": 1.0, "lr": 0.1},
               {"epoch": 2, "train_loss": float("nan"), "val_loss": 0.9, "lr": 0.1}]
    reports.plot_curves(history, tmp_path / "c.png")
    assert _png(tmp_path / "c.png").size[0] > 300


def test_plot_curves_empty_history_small_figure(tmp_path):
    reports.plot_curves([], tmp_path / "c.png")
    w, h = _png(tmp_path / "c.png").size
    assert 20 < w < 400 and 10 < h < 300


def _colour_counts(img: Image.Image) -> tuple[int, int]:
    a = np.asarray(img).astype(int)
    r, g, b = a[..., 0], a[..., 1], a[..., 2]
    green = int(((g > 90) & (r < 60) & (b < 60)).sum())
    red = int(((r > 190) & (g < 70) & (b < 70)).sum())
    return green, red


def test_plot_image_grid_colours_and_layout(tmp_path):
    grey = Image.new("RGB", (64, 64), (128, 128, 128))
    ok_items = [(grey, "true: happy\npred: happy 0.93", True)] * 2
    bad_items = [(grey, "true: happy\npred: crying 0.71", False)] * 2
    reports.plot_image_grid(ok_items, tmp_path / "ok.png")
    reports.plot_image_grid(bad_items, tmp_path / "bad.png", title="misclassified")
    g_ok, r_ok = _colour_counts(_png(tmp_path / "ok.png"))
    g_bad, r_bad = _colour_counts(_png(tmp_path / "bad.png"))
    assert g_ok > 20 and r_ok == 0
    assert r_bad > 20 and g_bad == 0


def test_plot_image_grid_ncols_and_modes(tmp_path):
    imgs = [Image.new("L", (40, 30), 100), Image.new("RGBA", (500, 300), (10, 20, 30, 255)),
            Image.new("P", (32, 32)), Image.new("RGB", (48, 48), (200, 10, 10))]
    items = [(im, f"img {i}", i % 2 == 0) for i, im in enumerate(imgs * 2)]  # 8 items
    reports.plot_image_grid(items, tmp_path / "wide.png", ncols=8)
    reports.plot_image_grid(items, tmp_path / "tall.png", ncols=2)
    wide, tall = _png(tmp_path / "wide.png"), _png(tmp_path / "tall.png")
    assert wide.size[0] > wide.size[1] and tall.size[1] > tall.size[0]
    assert min(wide.size) > 100
    with pytest.raises(ConfigError):
        reports.plot_image_grid(items, tmp_path / "x.png", ncols=0)


def test_plot_image_grid_empty_says_no_images(tmp_path):
    reports.plot_image_grid([], tmp_path / "none.png")
    img = _png(tmp_path / "none.png")
    assert 20 < img.size[0] < 400 and 10 < img.size[1] < 300
    assert _non_white_fraction(img) > 0.01  # the text is drawn


def test_plot_reliability_two_panels_and_bad_input(tmp_path):
    edges = [i / 5 for i in range(6)]
    before = {"edges": edges, "count": [0, 1, 3, 5, 11], "confidence": [None, 0.3, 0.5, 0.7, 0.95],
              "accuracy": [None, 0.0, 0.33, 0.6, 0.7], "ece": 0.2}
    after = {**before, "ece": 0.05}
    path = tmp_path / "reliability.png"
    reports.plot_reliability([("before (T = 1)", before), ("after (T = 1.8)", after)], path,
                             title="tiny")
    img = _png(path)
    # two panels side by side, the legend under them
    assert img.width > 1.4 * img.height and _non_white_fraction(img) > 0.05
    with pytest.raises(ConfigError):
        reports.plot_reliability([("bad", {**before, "count": [1, 2]})], tmp_path / "b.png")
    with pytest.raises(ConfigError):
        reports.plot_reliability([], tmp_path / "c.png")
    assert not (tmp_path / "b.png").exists()


# --------------------------------------------------------------------------- figure content


def _texts(fig) -> list[str]:
    return [t.get_text() for t in fig.findobj(lambda a: hasattr(a, "get_text"))
            if t.get_text()]


def test_curves_figure_labels_every_axis_and_marks_the_best_epoch():
    fig = reports.curves_figure(HISTORY, best_epoch=3)
    axes = fig.axes
    assert [ax.get_title() for ax in axes] == ["loss", "accuracy / macro-F1", "learning rate"]
    assert [ax.get_ylabel() for ax in axes] == ["cross-entropy loss", "fraction (0-1)",
                                                "learning rate"]
    assert all(ax.get_xlabel() == "epoch" for ax in axes)
    for ax in axes:
        labels = [t.get_text() for t in ax.get_legend().get_texts()]
        assert labels[-1] == "best epoch (3)"
        marker = [line for line in ax.get_lines() if line.get_label() == "best epoch (3)"]
        assert len(marker) == 1 and list(marker[0].get_xdata()) == [3, 3]
        assert ax.get_xlim() == (0.5, 5.5)
        ticks = [t for t in ax.get_xticks() if 0.5 <= t <= 5.5]
        assert ticks and all(float(t).is_integer() for t in ticks)
    assert [t.get_text() for t in axes[1].get_legend().get_texts()][:3] == [
        "train acc", "val acc", "val macro-F1"]
    assert axes[2].get_yscale() == "log"  # lr spans 1e-3 * 0.5 .. 0.5 ** 5: more than 10x
    assert "best epoch" not in " ".join(_texts(reports.curves_figure(HISTORY)))


def test_curves_figure_one_epoch_has_integer_ticks_and_sensible_limits():
    fig = reports.curves_figure(HISTORY[:1], best_epoch=1)
    for ax in fig.axes:
        assert ax.get_xlim() == (0.5, 1.5)
        assert [t for t in ax.get_xticks() if 0.5 <= t <= 1.5] == [1.0]
    assert fig.axes[2].get_yscale() == "linear"


def test_confusion_figure_title_and_axis_labels():
    fig = reports.confusion_figure(CM, NAMES, "main-job on test (n=154)")
    assert fig.get_suptitle() == "main-job on test (n=154)"
    panels = [ax for ax in fig.axes if ax.get_title()]
    assert [ax.get_xlabel() for ax in panels] == ["predicted", "predicted"]
    assert [t.get_text() for t in panels[0].get_yticklabels()] == NAMES


def _styles(patches) -> set[tuple]:
    return {(tuple(round(c, 3) for c in p.get_facecolor()), tuple(round(c, 3) for c in
             p.get_edgecolor()), p.get_hatch()) for p in patches}


RELIABILITY = {"edges": [i / 5 for i in range(6)], "count": [0, 1, 3, 5, 11],
               "confidence": [None, 0.3, 0.5, 0.7, 0.95],
               "accuracy": [None, 0.0, 0.67, 0.6, 0.7], "ece": 0.2}


def test_reliability_legend_explains_every_mark_the_overlap_included():
    # bin 0.4-0.6 is under-confident (accuracy 0.67 > confidence 0.5): its gap is drawn over
    # the accuracy bar, the others are over-confident
    fig = reports.reliability_figure([("before (T = 1)", RELIABILITY),
                                      ("after (T = 1.8)", {**RELIABILITY, "ece": 0.05})],
                                     title="main-job on test (n=20)")
    assert fig.get_suptitle() == "main-job on test (n=20)"
    legend = fig.legends[0]
    labels = [t.get_text() for t in legend.get_texts()]
    assert labels == ["accuracy of the bin", "gap: confidence above accuracy (over-confident)",
                      "gap: accuracy above confidence (under-confident)",
                      "perfect calibration (accuracy = confidence)",
                      "images per bin (lower panels)"]
    from matplotlib.patches import Rectangle

    legend_styles = _styles(legend.findobj(Rectangle))
    top, bottom = fig.axes[0], fig.axes[2]
    drawn = _styles(top.patches) | _styles(bottom.patches)
    assert len(drawn) == 4  # accuracy, over-confident gap, under-confident gap, counts
    assert drawn <= legend_styles  # every kind of bar has its legend entry
    under = [p for p in top.patches if p.get_hatch() == "\\\\"]
    assert len(under) == 1 and under[0].get_y() == 0.5  # from confidence up to accuracy
    assert abs(under[0].get_height() - 0.17) < 1e-9
    assert [line.get_linestyle() for line in top.get_lines()] == ["--"]
    assert top.get_title() == "before (T = 1)\nECE 0.200"


def test_reliability_legend_leaves_out_marks_not_drawn():
    calibrated = {**RELIABILITY, "accuracy": [None, 0.3, 0.5, 0.7, 0.95]}
    over_only = {**RELIABILITY, "accuracy": [None, 0.0, 0.33, 0.6, 0.7]}
    for bins, absent in ((calibrated, "confident)"), (over_only, "under-confident")):
        labels = [t.get_text() for t in reports.reliability_figure([("x", bins)])
                  .legends[0].get_texts()]
        assert not any(absent in label for label in labels)
        assert "accuracy of the bin" in labels
