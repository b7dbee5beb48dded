"""The report files of an evaluation: ``report.json``, ``confusion.csv``/``.png``,
``predictions.csv``, ``misclassified.png``, ``reliability.png`` (and ``slices.csv``)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from babyemo import reports
from babyemo.data.loading.dataset import ManifestDataset
from babyemo.evaluation.slices import write_slices_csv
from babyemo.fs import atomic_open
from babyemo.rows import PredictionWriter

if TYPE_CHECKING:
    from babyemo.evaluation.report import EvalResult

MAX_GRID = 36
"""Most misclassified examples drawn in ``misclassified.png``."""

REPORT_FILES = ("report.json", "confusion.csv", "confusion.png", "predictions.csv",
                "misclassified.png", "reliability.png", "slices.csv")
"""The files :func:`write_eval_reports` may write into ``out``."""



def write_eval_reports(report: EvalResult, out: Path, dataset: ManifestDataset) -> dict[str, Path]:
    """Write the report files of ``report`` into ``out`` (atomically, one by one).

    ``confusion.png`` and ``reliability.png`` are titled ``"<model> on <split> (n=N)"``
    (plus the ``where`` conditions), ``<model>`` being the registered name of the
    checkpoint, else its run folder's name (see :func:`babyemo.models.store.model_label`).

    Returns:
        Mapping of report kind to file path.
    """
    from babyemo.models.store import model_label

    out.mkdir(parents=True, exist_ok=True)
    names = report.class_names
    files = {"report": out / "report.json", "confusion_csv": out / "confusion.csv",
             "confusion_png": out / "confusion.png", "predictions": out / "predictions.csv",
             "misclassified": out / "misclassified.png", "reliability": out / "reliability.png"}
    if report.slices is not None:
        files["slices"] = out / "slices.csv"
        write_slices_csv(report.slices, files["slices"])
    cal = report.calibration
    where = "".join(f", {c}={v}" for c, v in sorted(report.where.items()))
    title = f"{model_label(report.checkpoint)} on {report.split}{where} (n={len(report.y_true)})"
    reports.plot_reliability(
        [("before (T = 1)", cal["reliability"]["before"]),
         (f"after (T = {cal['temperature']:.3g})", cal["reliability"]["after"])],
        files["reliability"], title=title)
    reports.write_json(report.to_dict(), files["report"])
    reports.write_confusion_csv(report.confusion, names, files["confusion_csv"])
    reports.plot_confusion(report.confusion, names, files["confusion_png"], title=title)
    with atomic_open(files["predictions"], "w", newline="") as stream:
        writer = PredictionWriter(names, csv_stream=stream, with_true=True)
        for row, true in report.rows():  # a row without an answer: error=no_face
            writer.write(row, true=true)
        writer.close()
    wrong = np.flatnonzero(report.y_true != report.y_pred)[:MAX_GRID]
    items = []
    for i in wrong:
        img = dataset.load(int(i)).copy()
        img.thumbnail((128, 128))
        q = report.y_pred[i]
        items.append((img, f"true: {names[report.y_true[i]]}\npred: {names[q]} "
                           f"{report.probs[i, q]:.2f}", False))
    reports.plot_image_grid(items, files["misclassified"], title="misclassified (true vs pred)")
    return files




__all__ = ["MAX_GRID", "REPORT_FILES", "write_eval_reports"]
