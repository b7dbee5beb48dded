"""One schema for prediction rows, written by ``babyemo predict`` and by evaluation.

A :class:`Prediction` is one row: a file (or one face of it) with its label, confidence
and per-class probabilities, or an error. :class:`PredictionWriter` writes rows as CSV
and/or JSON with one set of columns::

    path, [true,] label, confidence, [top_class,] prob_<class>..., [face_index, box_x,
    box_y, box_w, box_h, det_score,] face, error, error_detail

``true`` (the labelled class) is written by evaluation's ``predictions.csv``, ``top_class``
with ``--min-confidence``, the face columns with face detection; ``face`` always:
:data:`FACE_DETECTED`, :data:`FACE_WHOLE_IMAGE` or empty (see ``docs/data-formats.md``).
"""

from __future__ import annotations

import csv
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import IO, Any

from babyemo.data.loading.folders import printable_name

UNCERTAIN = "uncertain"
"""Label of a row whose top probability is below ``min_confidence``."""

FACE_DETECTED = "detected"
"""``face`` of a row classified from a face a detector found."""

FACE_WHOLE_IMAGE = "whole_image"
"""``face`` of a row classified whole because face detection found no face in the photo
(``--no-face-fallback whole_image``)."""


@dataclass(frozen=True)
class Prediction:
    """One output row.

    Attributes:
        path: The file as found.
        label: Predicted class name (``""`` on error).
        confidence: Probability of ``label`` in [0, 1] (``nan`` on error).
        probs: Probability per class, in ``class_names`` order (empty on error).
        error: ``None``, or why the file could not be classified: a
            :class:`~babyemo.data.loading.file_errors.FileErrorCode` value (``truncated``,
            ``no_face`` when face detection found none, ...).
        face_index: Index of the face in the photo (0 = highest detector score), or
            ``None`` without face detection or for a photo classified whole.
        box: ``(x, y, w, h)`` of the classified region in pixels of the upright image
            (``None`` without face detection).
        det_score: Detector confidence of the face (``None`` without one).
        top_class: The most probable class (``None`` on error); ``label`` is the same
            unless it is :data:`UNCERTAIN`.
        error_detail: With an ``error``, the human reason without the path (e.g.
            ``"permission denied"``); else ``None``.
        face: How the classified region was found: :data:`FACE_DETECTED`,
            :data:`FACE_WHOLE_IMAGE` (no face found, classified whole), or ``None`` when
            face detection is off (whole images by choice) and on error rows.
    """

    path: str
    label: str
    confidence: float
    probs: tuple[float, ...]
    error: str | None = None
    face_index: int | None = None
    box: tuple[float, float, float, float] | None = None
    det_score: float | None = None
    top_class: str | None = None
    error_detail: str | None = None
    face: str | None = None


FACE_COLUMNS = ["face_index", "box_x", "box_y", "box_w", "box_h", "det_score"]
"""Columns of prediction with face detection."""


class PredictionWriter:
    """Write :class:`Prediction` rows as CSV and/or JSON (a list of row objects).

    Args:
        class_names: Class names in logit order (the ``prob_<class>`` columns).
        csv_stream: Open text stream for the CSV (``newline=""``), or ``None``.
        json_stream: Open text stream for the JSON, or ``None``.
        with_true: Add the ``true`` column (evaluation: the labelled class).
        with_top: Add the ``top_class`` column (``--min-confidence``).
        with_faces: Add the face columns.
        extra_columns: More columns after ``error_detail``, e.g. ``fold`` in a folds run's
            ``oof.csv``; each row's values come with :meth:`write`.
        lead_columns: More columns right after ``path``, e.g. ``frame, time_s, track_id``
            of video rows; values as for ``extra_columns``.

    Call :meth:`close` once the rows are written (it ends the JSON list).
    """

    def __init__(self, class_names: Sequence[str], *, csv_stream: IO[str] | None = None,
                 json_stream: IO[str] | None = None, with_true: bool = False,
                 with_top: bool = False, with_faces: bool = False,
                 extra_columns: Sequence[str] = (), lead_columns: Sequence[str] = ()) -> None:
        self.class_names = list(class_names)
        self.extra_columns = list(extra_columns)
        self.lead_columns = list(lead_columns)
        self.with_true, self.with_top, self.with_faces = with_true, with_top, with_faces
        self._csv = csv.writer(csv_stream) if csv_stream is not None else None
        self._json = json_stream
        self._n = 0
        if self._csv is not None:
            self._csv.writerow(self.header)
        if self._json is not None:
            self._json.write("[")

    @property
    def header(self) -> list[str]:
        """The CSV columns."""
        return ["path", *self.lead_columns, *(["true"] if self.with_true else []), "label",
                "confidence",
                *(["top_class"] if self.with_top else []),
                *[f"prob_{c}" for c in self.class_names],
                *(FACE_COLUMNS if self.with_faces else []), "face", "error", "error_detail",
                *self.extra_columns]

    def write(self, pred: Prediction, true: str | None = None,
              extra: Mapping[str, Any] | None = None) -> None:
        """Write one row (``true``: the labelled class, with ``with_true``; ``extra``: the
        values of the ``lead_columns`` and ``extra_columns``, a missing one empty)."""
        lead = [(extra or {}).get(c) for c in self.lead_columns]
        more = [(extra or {}).get(c) for c in self.extra_columns]
        if self._csv is not None:
            cells = self._cells(pred, true)
            self._csv.writerow(cells[:1] + ["" if v is None else str(v) for v in lead]
                               + cells[1:] + ["" if v is None else str(v) for v in more])
        if self._json is not None:
            record = self._record(pred, true)
            record = {"path": record.pop("path"),
                      **dict(zip(self.lead_columns, lead, strict=True)), **record,
                      **dict(zip(self.extra_columns, more, strict=True))}
            self._json.write(("," if self._n else "") + "\n  "
                             + json.dumps(record, ensure_ascii=False))
        self._n += 1

    def close(self) -> None:
        """End the JSON list (the streams themselves are the caller's)."""
        if self._json is not None:
            self._json.write("\n]\n")

    def _cells(self, pred: Prediction, true: str | None) -> list[str]:
        faces: list[str] = []
        if self.with_faces:
            box = [f"{v:.1f}" for v in pred.box] if pred.box else [""] * 4
            faces = ["" if pred.face_index is None else str(pred.face_index), *box,
                     "" if pred.det_score is None else f"{pred.det_score:.4f}"]
        lead = [printable_name(pred.path), *([true or ""] if self.with_true else [])]
        top = [pred.top_class or ""] if self.with_top else []
        if pred.error is not None:
            return [*lead, "", "", *top, *([""] * len(self.class_names)), *faces,
                    pred.face or "", pred.error, printable_name(pred.error_detail or "")]
        return [*lead, pred.label, f"{pred.confidence:.4f}", *top,
                *[f"{v:.4f}" for v in pred.probs], *faces, pred.face or "", "", ""]

    def _record(self, pred: Prediction, true: str | None) -> dict[str, Any]:
        obj: dict[str, Any] = {"path": printable_name(pred.path)}
        if self.with_true:
            obj["true"] = true
        obj.update(label=pred.label or None,
                   confidence=None if pred.error else pred.confidence,
                   probs=dict(zip(self.class_names, pred.probs, strict=False)),
                   face=pred.face, error=pred.error, error_detail=pred.error_detail)
        if self.with_top:
            obj["top_class"] = pred.top_class
        if self.with_faces:
            obj.update(face_index=pred.face_index, box=pred.box, det_score=pred.det_score)
        return obj


__all__ = ["FACE_COLUMNS", "FACE_DETECTED", "FACE_WHOLE_IMAGE", "UNCERTAIN", "Prediction",
           "PredictionWriter"]
