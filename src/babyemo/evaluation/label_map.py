"""Cross-dataset evaluation: match a dataset's labels to a model's classes.

Each dataset label is matched to a model class (by equal name, or by a ``MODEL=DATA`` /
``DATA=MODEL`` pair). Rows whose label matches no model class are dropped and counted. The
model still chooses among all its classes: a prediction of a class that no dataset label
maps to is wrong, and is counted in ``label_map["n_pred_outside"]``; such classes are left
out of the macro-F1 mean (see ``macro_labels`` in
:func:`babyemo.metrics.classification_metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

from babyemo.data.preparation.manifest import Manifest
from babyemo.errors import ConfigError, DataError


def parse_label_map(label_map: str | Sequence[str] | Mapping[str, str] | None
                    ) -> list[tuple[str, str]]:
    """Parse ``A=B`` pairs: ``"crying=sad"``, ``"crying=sad,angry=angry"``, a list of such
    strings (e.g. repeated ``--label-map`` options), or a ``{A: B}`` dict.

    Returns:
        The ``(A, B)`` pairs in order (names stripped of spaces).

    Raises:
        ConfigError: An entry without exactly one ``=`` or with an empty side.
    """
    if label_map is None:
        return []
    if isinstance(label_map, Mapping):
        items = [f"{a}={b}" for a, b in label_map.items()]
    elif isinstance(label_map, str):
        items = [label_map]
    else:
        items = list(label_map)
    pairs = []
    for item in items:
        for entry in str(item).split(","):
            if not entry.strip():
                continue
            parts = [p.strip() for p in entry.split("=")]
            if len(parts) != 2 or not all(parts):
                raise ConfigError(f"Bad label-map entry {entry.strip()!r}.",
                                  "write MODEL_CLASS=DATA_LABEL, e.g. crying=sad")
            pairs.append((parts[0], parts[1]))
    return pairs


def resolve_label_map(pairs: Sequence[tuple[str, str]], class_names: Sequence[str],
                      data_labels: Sequence[str]) -> dict[str, str | None]:
    """Match every dataset label to a model class (or to none).

    A pair ``A=B`` reads as model class ``A`` = dataset label ``B``; when only the reverse
    fits (``A`` a dataset label, ``B`` a model class) it reads the other way round, so
    ``crying=sad`` works both for an infant model (crying) on FER-2013 (sad) and for a
    FER-2013 model (sad) on the infant set (crying). Several dataset labels may map to one
    model class. A dataset label not named in any pair matches the model class of the
    same name, if there is one.

    Args:
        pairs: From :func:`parse_label_map`.
        class_names: The model's classes.
        data_labels: The dataset's labels.

    Returns:
        ``{dataset label: model class or None}`` for every dataset label.

    Raises:
        ConfigError: A pair that names no model class and dataset label in either order,
            or a dataset label mapped to two different classes.
    """
    classes, labels = set(class_names), set(data_labels)
    mapped: dict[str, str] = {}
    for a, b in pairs:
        if a in classes and b in labels:
            label, cls = b, a
        elif a in labels and b in classes:
            label, cls = a, b
        else:
            raise ConfigError(
                f"Label map {a}={b}: needs a model class and a dataset label (either order).",
                f"model classes: {', '.join(class_names)}; dataset labels: "
                f"{', '.join(sorted(labels))}")
        if mapped.get(label, cls) != cls:
            raise ConfigError(f"Label map: dataset label '{label}' is mapped to both "
                              f"'{mapped[label]}' and '{cls}'.")
        mapped[label] = cls
    return {lab: mapped.get(lab, lab if lab in classes else None) for lab in sorted(labels)}


def apply_label_map(manifest: Manifest, split: str, class_names: Sequence[str],
                    label_map: str | Sequence[str] | Mapping[str, str]
                    ) -> tuple[Manifest, dict[str, Any]]:
    """Relabel a manifest into the model's classes and drop rows that match none.

    The manifest's files are untouched: a copy with renamed labels and without the
    dropped rows is returned.

    Args:
        manifest: The dataset.
        split: The split evaluated (``all`` = every row): the counts are of this split.
        class_names: The model's classes, in logit order.
        label_map: As in :func:`parse_label_map`.

    Returns:
        ``(manifest, info)``; ``info`` (JSON-safe) has ``pairs`` (``{dataset label: model
        class}`` of the labels kept), ``evaluated_classes`` / ``evaluated_indices`` (the
        model classes some dataset label maps to: the dataset's label set, in model
        terms), ``outside_classes`` (model classes no dataset label maps to),
        ``n_kept``, ``n_dropped`` and ``dropped`` (``{dataset label: rows}``) of the split.

    Raises:
        ConfigError: See :func:`resolve_label_map`.
        DataError: No row of the split matches a model class.
    """
    to_class = resolve_label_map(parse_label_map(label_map), class_names,
                                 sorted({r.label for r in manifest.rows}))
    in_split = [r for r in manifest.rows if split == "all" or r.split == split]
    kept = [replace(r, label=to_class[r.label]) for r in in_split if to_class[r.label]]
    dropped: dict[str, int] = {}
    for r in in_split:
        if to_class[r.label] is None:
            dropped[r.label] = dropped.get(r.label, 0) + 1
    if not kept:
        raise DataError(f"No row of the '{split}' split of {manifest.path} has a label that "
                        f"matches a model class ({', '.join(class_names)}).",
                        "add --label-map MODEL_CLASS=DATA_LABEL pairs")
    targets = set(filter(None, to_class.values()))
    evaluated = [c for c in class_names if c in targets]
    info = {"pairs": {k: v for k, v in to_class.items() if v},
            "evaluated_classes": evaluated,
            "evaluated_indices": [class_names.index(c) for c in evaluated],
            "outside_classes": [c for c in class_names if c not in targets],
            "n_kept": len(kept), "n_dropped": len(in_split) - len(kept),
            "dropped": dict(sorted(dropped.items()))}
    relabelled = replace(manifest, rows=kept, class_names=sorted({r.label for r in kept}))
    return relabelled, info


