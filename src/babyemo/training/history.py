"""What a run writes after every epoch besides checkpoints: ``metrics.csv``, ``curves.png``
and the one-line summary logged for the epoch."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from babyemo import reports

HISTORY_FIELDS = ["epoch", "train_loss", "train_acc", "val_loss", "val_acc",
                  "val_balanced_acc", "val_macro_f1", "lr", "seconds", "images_per_s"]
"""Columns of ``metrics.csv`` (then ``val_acc_<class>``, the val recall of each class)."""

AUX_FIELDS = ["aux_train_loss", "aux_train_acc"]
"""Columns after ``train_acc`` in a run with an auxiliary task (``train --aux-data``): the
auxiliary head's training loss (mean per image) and accuracy."""


def history_header(history: list[dict[str, Any]], class_names: list[str]) -> list[str]:
    """The ``metrics.csv`` columns of ``history``: :data:`HISTORY_FIELDS`, with
    :data:`AUX_FIELDS` after ``train_acc`` when the rows have them, then ``val_acc_<class>``."""
    fields = list(HISTORY_FIELDS)
    if any(AUX_FIELDS[0] in row for row in history):
        at = fields.index("train_acc") + 1
        fields[at:at] = AUX_FIELDS
    return fields + [f"val_acc_{c}" for c in class_names]


def write_history(run_dir: Path, history: list[dict[str, Any]], class_names: list[str]) -> None:
    """Write ``metrics.csv`` and ``curves.png`` (with the epoch ``best.pt`` holds marked).

    Args:
        run_dir: The run folder.
        history: One row per finished epoch (keys of :data:`HISTORY_FIELDS` and
            ``val_acc_<class>``; the ``val_*`` keys absent without validation; those of
            :data:`AUX_FIELDS` with an auxiliary task).
        class_names: Class names in logit order.
    """
    header = history_header(history, class_names)
    reports.write_csv_rows(run_dir / "metrics.csv", header,
                           [[row.get(k, "") for k in header] for row in history])
    # the epoch best.pt holds, chosen as train() does: highest val macro-F1, ties to the
    # lower val loss; without validation, the last epoch
    best_epoch, best_key = None, (-math.inf, -math.inf)
    for row in history:
        key = (row.get("val_macro_f1", row["epoch"]),
               -row.get("val_loss", row.get("train_loss", math.inf)))
        if key > best_key:
            best_epoch, best_key = row["epoch"], key
    reports.plot_curves(history, run_dir / "curves.png", best_epoch=best_epoch)


def summary_line(row: dict[str, Any], epochs: int, class_names: list[str]) -> str:
    """The line logged at the end of an epoch: losses, accuracies (the auxiliary task's
    too, with one), val macro-F1 and the val recall of each class (labelled), learning
    rate, seconds and images/s."""
    per_class = ", ".join(f"{c} {row.get(f'val_acc_{c}', float('nan')):.2f}"
                          for c in class_names)
    val = (f"val loss {row['val_loss']:.3f} acc {row['val_acc']:.3f} "
           f"macro-F1 {row['val_macro_f1']:.3f} (val recall per class: {per_class}) "
           if "val_loss" in row else "")
    aux = (f"aux loss {row['aux_train_loss']:.3f} acc {row['aux_train_acc']:.3f} "
           if "aux_train_loss" in row else "")
    return (f"epoch {row['epoch']}/{epochs} train loss {row['train_loss']:.3f} "
            f"acc {row['train_acc']:.3f} {aux}{val}lr {row['lr']:.2e} "
            f"{row['seconds']:.1f}s ({row['images_per_s']:.0f} img/s)")
