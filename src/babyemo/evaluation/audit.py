"""Label audit: the images whose label is probably wrong, ranked, shown, left to the user.

``audit_labels(manifest, oof_run_dir, out=...) -> AuditResult`` (``babyemo data audit``)
reads the out-of-fold predicted probabilities of a cross-validation run (``babyemo train
--folds K``, :mod:`babyemo.evaluation.crossval`: ``oof_logits.npz`` with each fold's
temperature, ``folds.json`` with the parent manifest's SHA-256); without one
(``oof_run_dir=None``) it first trains ``K`` quick fold models into ``out/folds`` with
:func:`~babyemo.evaluation.crossval.train_folds` (the recipe of ``config``, by default the
default one cut to :data:`QUICK_EPOCHS` epochs). It then applies *confident
learning* (Northcutt, Jiang & Chuang, "Confident Learning: Estimating Uncertainty in
Dataset Labels", JAIR 70, 2021) through the `cleanlab` library:
``cleanlab.filter.find_label_issues(labels, pred_probs,
return_indices_ranked_by="self_confidence")`` flags the rows whose given label is
probably wrong (pruning by the estimated noise rate of each pair of classes), and
``cleanlab.rank.get_label_quality_scores`` (self-confidence: the out-of-fold probability
of the given label) scores every row. Out-of-fold probabilities matter: a model scoring
images it trained on has learnt their labels, right or wrong.

It writes into ``out`` (each file atomically):

- ``label_issues.csv``: one row per non-test image, lowest quality first: ``path``,
  ``split``, ``given_label``, ``suggested_label`` (the out-of-fold argmax), ``quality``
  (in [0, 1]), ``rank`` (1 = most suspect), ``issue`` (``True`` when cleanlab flags it)
  and ``conflict_group`` (``exact-N`` / ``near-N``: byte-identical or near-duplicate
  images of the manifest that carry different labels, found as ``babyemo data inspect``
  finds them; ``;``-joined when in both; empty otherwise);
- ``suspects-<i>-<class>.png``: a contact sheet per given class of its top flagged rows
  (face crops when the manifest has face boxes), captioned ``given → suggested`` and the
  quality;
- ``audit.json``: the counts, the conflict groups (test rows included), how many of them
  the ranking flags (:meth:`AuditResult.conflict_check`) and the inputs;
- ``folds/``: the fold models' run, when the audit trained them.

Test rows are never part of the audit and never edited: the out-of-fold run predicts none
of them. With ``test_report`` they are scored for the report only (the mean probabilities
of the fold models, none of which trained on them; cleanlab among the test rows alone) into
``test_label_issues.csv``, and :attr:`AuditResult.test_flagged` counts the flagged ones;
otherwise it is ``None``. Nothing is changed: decisions are applied by
:func:`babyemo.data.preparation.relabel.relabel_manifest` (``babyemo data relabel``) to a
new manifest.
"""

from __future__ import annotations

import csv
import dataclasses
import logging
import math
import os
import re
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from babyemo import reports
from babyemo.config import TrainConfig
from babyemo.data.inspection.hashing import exact_duplicate_groups, near_duplicates
from babyemo.data.loading.folders import check_outputs
from babyemo.data.preparation.manifest import Manifest, now_iso, read_manifest
from babyemo.errors import (
    ConfigError,
    DataError,
    ImageError,
    ManifestError,
    MissingDependencyError,
)
from babyemo.fs import atomic_open

if TYPE_CHECKING:
    from babyemo.training.folds import FoldPlan

log = logging.getLogger(__name__)

ISSUES_FILE = "label_issues.csv"
TEST_ISSUES_FILE = "test_label_issues.csv"
"""The test rows' ranking (``test_report``): reported, never to be applied."""
AUDIT_FILE = "audit.json"
ISSUE_COLUMNS = ("path", "split", "given_label", "suggested_label", "quality", "rank",
                 "issue", "conflict_group")
"""Columns of ``label_issues.csv``, in order."""
DEFAULT_TOP = 24
"""Suspects shown per class in the contact sheets."""
QUICK_EPOCHS = 10
"""Epochs of the fold models the audit trains itself (the default recipe otherwise)."""
FOLDS_DIR = "folds"
"""Subfolder of the audit's output holding the fold models it trained."""
SHEET_SIDE = 128
"""Side in pixels of each image of a contact sheet."""
_FOLDS_HINT = "run `babyemo train --folds 5 --out DIR` on this manifest first, then pass " \
              "--folds-run DIR"


@dataclass
class AuditRow:
    """One audited (non-test) image: a row of ``label_issues.csv``."""

    path: str
    split: str
    given_label: str
    suggested_label: str
    quality: float
    rank: int
    issue: bool
    conflict_group: str = ""


@dataclass
class AuditResult:
    """What :func:`audit_labels` found and wrote.

    Attributes:
        out: The output folder.
        manifest: The audited manifest.
        manifest_sha256: Its SHA-256 (the one the folds run recorded).
        oof_run: The folds run folder whose out-of-fold probabilities were used.
        class_names: Class names in probability order.
        rows: Every non-test image, lowest quality first (``rank`` 1 first).
        n_issues: Rows cleanlab flags.
        issues_per_class: ``{given label: flagged rows}``.
        n_test: Test rows (not audited: the out-of-fold run predicts none).
        test_flagged: Flagged test rows with ``test_report`` (reported, never edited),
            else ``None``.
        conflict_groups: Byte-identical or near-duplicate groups with conflicting labels,
            each ``{"id", "kind", "paths", "labels", "splits"}`` (test rows included).
        top: Suspects per class in each contact sheet.
        cleanlab_version: The cleanlab version used.
        files: ``{"issues", "audit", "test_issues", "sheet:<class>"...}`` -> path.
        seconds: Wall time.
        test_rows: The test rows ranked like :attr:`rows` (``test_report``), else ``None``.
    """

    out: Path
    manifest: Path
    manifest_sha256: str
    oof_run: Path
    class_names: list[str]
    rows: list[AuditRow]
    n_issues: int
    issues_per_class: dict[str, int]
    n_test: int
    test_flagged: int | None
    conflict_groups: list[dict[str, Any]]
    top: int
    cleanlab_version: str
    files: dict[str, Path] = field(default_factory=dict)
    seconds: float = 0.0
    test_rows: list[AuditRow] | None = None

    @property
    def n(self) -> int:
        """Audited (non-test) images."""
        return len(self.rows)

    def suspects(self, label: str | None = None) -> list[AuditRow]:
        """The flagged rows (of one given label, or all), most suspect first."""
        return [r for r in self.rows if r.issue and (label is None or r.given_label == label)]

    def conflict_check(self) -> dict[str, dict[str, Any]]:
        """How well the ranking finds the duplicate groups with conflicting labels.

        Such a group holds at least one wrong label, so a good audit flags a member of it
        and ranks it near the top: a check of the audit against label errors known
        without any model (e.g. FER-2013's byte-identical images with two labels).

        Returns:
            Per group kind (``"exact"``, ``"near"``; kinds without groups left out):
            ``groups``; ``audited_conflicts``: groups whose audited (non-test) members
            themselves carry different labels, and ``audited_conflicts_flagged``: those
            with a flagged member; ``with_audited``: groups with an audited member, and
            ``with_audited_flagged``; ``best_percentile_median``: median over
            ``with_audited`` of the best-ranked audited member's rank / audited images
            (0 = the top; a random image sits at 0.5), ``best_in_top_10``,
            ``best_in_top_20``: groups whose best member is in the top 10% / 20%;
            ``audited_conflicts_resolved``: groups of ``audited_conflicts`` where some but
            not all members are flagged and each flagged one is suggested the label of an
            unflagged one (the audit sides with one of the labellers);
            ``if_random``: the expected ``with_audited_flagged``, ``best_in_top_10`` and
            ``best_in_top_20`` if the ranking were random (groups of the same sizes, as many
            images flagged; exact, sampling without replacement), the baseline the
            figures above are to be read against; with the test report,
            ``any_flagged``: groups with any member flagged, test rows included.
        """
        by_path = {r.path: r for r in self.rows}
        test_by_path = {r.path: r for r in self.test_rows or []}
        out: dict[str, dict[str, Any]] = {}
        for kind in ("exact", "near"):
            groups = [g for g in self.conflict_groups if g["kind"] == kind]
            if not groups:
                continue
            audited = [[by_path[p] for p in g["paths"] if p in by_path] for g in groups]
            with_audited = [a for a in audited if a]
            conflicts = [a for a in audited if len({r.given_label for r in a}) > 1]
            best = [min(r.rank for r in a) / max(self.n, 1) for a in with_audited]
            sizes = [len(a) for a in with_audited]
            entry: dict[str, Any] = {
                "groups": len(groups), "audited_conflicts": len(conflicts),
                "audited_conflicts_flagged": sum(any(r.issue for r in a) for a in conflicts),
                "audited_conflicts_resolved": sum(_sides_with_a_labeller(a) for a in conflicts),
                "with_audited": len(with_audited),
                "with_audited_flagged": sum(any(r.issue for r in a) for a in with_audited),
                "best_percentile_median": float(np.median(best)) if best else None,
                "best_in_top_10": sum(b <= 0.10 for b in best),
                "best_in_top_20": sum(b <= 0.20 for b in best),
                "if_random": {
                    "with_audited_flagged": _expected_hits(sizes, self.n, self.n_issues),
                    "best_in_top_10": _expected_hits(sizes, self.n, int(0.10 * self.n)),
                    "best_in_top_20": _expected_hits(sizes, self.n, int(0.20 * self.n))}}
            if self.test_rows is not None:
                entry["any_flagged"] = sum(
                    any(r.issue for r in a) or any(test_by_path[p].issue for p in g["paths"]
                                                   if p in test_by_path)
                    for g, a in zip(groups, audited, strict=True))
            out[kind] = entry
        return out

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (the ``audit.json`` content, without the rows)."""
        return {"format": "babyemo-label-audit", "created": now_iso(),
                "manifest": str(self.manifest), "manifest_sha256": self.manifest_sha256,
                "oof_run": str(self.oof_run), "method": "confident learning (cleanlab "
                "find_label_issues, ranked by self_confidence; Northcutt et al. 2021)",
                "cleanlab_version": self.cleanlab_version, "class_names": self.class_names,
                "n": self.n, "n_issues": self.n_issues,
                "issues_per_class": self.issues_per_class, "n_test": self.n_test,
                "test_flagged": self.test_flagged,
                "test_note": "not audited (out-of-fold predictions cover no test image)"
                if self.test_rows is None else "reported only, never edited: mean "
                "probabilities of the fold models, cleanlab among the test rows",
                "conflict_groups": self.conflict_groups,
                "conflict_check": self.conflict_check(), "top": self.top,
                "files": {k: str(v) for k, v in self.files.items()}, "seconds": self.seconds}


def _sides_with_a_labeller(members: list[AuditRow]) -> bool:
    """Some but not all of a conflicting group's audited members are flagged, and each
    flagged one is suggested the given label of an unflagged one."""
    kept = {r.given_label for r in members if not r.issue}
    flagged = [r for r in members if r.issue]
    return bool(flagged) and bool(kept) and all(r.suggested_label in kept for r in flagged)


def _expected_hits(sizes: list[int], n: int, k: int) -> float:
    """Expected number of groups (of ``sizes`` distinct images each, drawn at random
    from ``n``) with at least one of ``k`` marked images: sum of
    ``1 - C(n - k, m) / C(n, m)``."""
    return sum(1.0 - math.comb(n - k, m) / math.comb(n, m) for m in sizes)


def _import_cleanlab() -> Any:
    try:
        import cleanlab
        import cleanlab.filter
        import cleanlab.rank
    except ImportError:
        raise MissingDependencyError("cleanlab", "audit", "The label audit") from None
    return cleanlab


def _folds_plan(run_dir: Path) -> FoldPlan:
    """The run's ``folds.json`` (:meth:`~babyemo.training.folds.FoldPlan.load`).

    Raises:
        ConfigError: ``run_dir`` is not a folds run.
        ManifestError: Its ``folds.json`` is not a readable plan.
    """
    from babyemo.training.folds import FoldPlan

    try:
        return FoldPlan.load(run_dir)
    except ConfigError:
        raise ConfigError(f"{run_dir} is not a cross-validation run (no folds.json).",
                          _FOLDS_HINT) from None


def read_oof(run_dir: Path) -> tuple[list[str], np.ndarray, list[str]]:
    """The out-of-fold probabilities of a folds run.

    ``softmax(logits / T_k)`` of ``oof_logits.npz`` with each row's fold temperature,
    exactly as ``oof.csv`` writes them (:func:`babyemo.evaluation.crossval.read_oof_logits`).

    Args:
        run_dir: The folds run folder.

    Returns:
        ``(paths (N,), probabilities (N, K) float32, class names (K,))``.

    Raises:
        DataError: ``oof_logits.npz`` is missing (an unfinished run) or malformed.
    """
    from babyemo.evaluation.crossval import read_oof_logits

    oof = read_oof_logits(run_dir)
    return oof.paths, oof.probs(), oof.class_names


def conflict_groups(manifest: Manifest) -> list[dict[str, Any]]:
    """Duplicate groups whose images carry different labels, as ``data inspect`` finds them.

    Byte-identical groups (same ``sha256``), then near-duplicate groups (``dhash`` within
    the manifest's ``near_duplicate_distance``, else the distance chosen from the data; a
    group of only byte-identical images is left to the first kind), over every row.

    Returns:
        ``{"id": "exact-N" | "near-N", "kind", "paths", "labels", "splits"}`` per group.

    Raises:
        ManifestError: A row without a valid ``dhash`` (:meth:`Manifest.dhashes`).
    """
    rows = manifest.rows
    hashes = manifest.dhashes()
    distance = manifest.info.get("near_duplicate_distance")
    near, _ = near_duplicates(hashes, distance if isinstance(distance, int) else None)
    kinds = [("exact", exact_duplicate_groups([r.sha256 for r in rows])),
             ("near", [g for g in near if len({rows[i].sha256 for i in g}) > 1])]
    out = []
    for kind, groups in kinds:
        n = 0
        for g in groups:
            if len({rows[i].label for i in g}) > 1:
                n += 1
                out.append({"id": f"{kind}-{n}", "kind": kind,
                            "paths": [rows[i].path for i in g],
                            "labels": [rows[i].label for i in g],
                            "splits": [rows[i].split for i in g]})
    return out


def _sheet_name(i: int, label: str) -> str:
    return f"suspects-{i}-{re.sub(r'[^A-Za-z0-9_.-]+', '_', label)[:40]}.png"


def _sheet_image(manifest: Manifest, row: Any) -> Any:
    """The row's face crop (manifest box, default :class:`~babyemo.faces.CropSpec`), else
    its whole image, at most :data:`SHEET_SIDE` pixels; grey when unreadable."""
    from PIL import Image

    from babyemo.data.loading.images import load_image
    from babyemo.faces import CropSpec, Face, crop_face

    try:
        img = load_image(manifest.resolve(row), 3)
        if row.face:
            return crop_face(img, Face.from_dict(row.face), CropSpec(), out_size=SHEET_SIDE)
        img.thumbnail((SHEET_SIDE, SHEET_SIDE))
        return img
    except (ImageError, ManifestError, ConfigError) as e:
        log.warning("Contact sheet: %s", e)
        return Image.new("RGB", (SHEET_SIDE, SHEET_SIDE), (128, 128, 128))


def _ranked_rows(cleanlab: Any, rows: list[Any], probs: np.ndarray, class_names: list[str],
                 group_of: dict[str, list[str]]) -> list[AuditRow]:
    """Confident learning on ``rows`` (manifest rows) with their ``probs`` ``(N, K)``:
    one :class:`AuditRow` each, lowest self-confidence first."""
    labels = np.array([class_names.index(r.label) for r in rows], dtype=np.int64)
    with warnings.catch_warnings(record=True) as caught:  # e.g. a class with few images
        warnings.simplefilter("always")
        flagged = cleanlab.filter.find_label_issues(labels, probs,
                                                    return_indices_ranked_by="self_confidence",
                                                    n_jobs=1)
    for w in caught:
        log.warning("cleanlab: %s", w.message)
    quality = cleanlab.rank.get_label_quality_scores(labels, probs, method="self_confidence")
    is_issue = np.zeros(len(rows), dtype=bool)
    is_issue[np.asarray(flagged, dtype=np.int64)] = True
    order = np.lexsort((np.arange(len(rows)), quality))  # lowest quality first, stable
    return [AuditRow(path=rows[i].path, split=rows[i].split, given_label=rows[i].label,
                     suggested_label=class_names[int(probs[i].argmax())],
                     quality=float(quality[i]), rank=rank, issue=bool(is_issue[i]),
                     conflict_group=";".join(group_of.get(rows[i].path, [])))
            for rank, i in enumerate(order, start=1)]


def _write_issues(path: Path, rows: list[AuditRow]) -> None:
    with atomic_open(path, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(ISSUE_COLUMNS)
        for row in rows:
            writer.writerow([row.path, row.split, row.given_label, row.suggested_label,
                             f"{row.quality:.6f}", row.rank, row.issue, row.conflict_group])


def _test_probs(plan: FoldPlan, config: TrainConfig | None) -> np.ndarray:
    """The test rows' probabilities: the mean of the fold models' ``softmax(z / T_k)``
    (no fold trained on a test image), ``(N_test, K) float32`` in manifest order."""
    from babyemo.inference import probabilities
    from babyemo.training.folds import fold_logits

    config = config if config is not None else TrainConfig()
    total = None
    for k in range(1, plan.folds + 1):
        fold = fold_logits(plan, config, k, split="test")
        p = probabilities(fold.logits, fold.temperature)
        total = p if total is None else total + p
    assert total is not None
    return (total / plan.folds).astype(np.float32)


def quick_folds(manifest: str | os.PathLike[str] | None, out: str | os.PathLike[str],
                folds: int = 5, config: TrainConfig | None = None) -> Path:
    """Train the fold models of an audit: ``train_folds`` into ``out/folds``.

    Args:
        manifest: The manifest (``None``: the last prepared one).
        out: The audit's output folder.
        folds: ``K``.
        config: The recipe (``data`` and ``out`` are set here; ``resume`` continues an
            interrupted run); default: the default recipe with :data:`QUICK_EPOCHS`
            epochs.

    Returns:
        The folds run folder.

    Raises:
        What :func:`babyemo.evaluation.crossval.train_folds` raises.
    """
    from babyemo.evaluation.crossval import train_folds

    base = config if config is not None else TrainConfig(epochs=QUICK_EPOCHS)
    run_dir = Path(out).expanduser() / FOLDS_DIR
    base = dataclasses.replace(base, data=str(manifest) if manifest is not None else base.data,
                               out=str(run_dir))
    log.info("Label audit: training %d fold models (%s, %d epochs) into %s", folds,
             base.arch, base.epochs, run_dir)
    return train_folds(base, folds).run_dir


def audit_labels(manifest: str | os.PathLike[str] | None,
                 oof_run_dir: str | os.PathLike[str] | None = None, *,
                 out: str | os.PathLike[str], top: int = DEFAULT_TOP, folds: int = 5,
                 config: TrainConfig | None = None, test_report: bool = False
                 ) -> AuditResult:
    """Find the images whose label is probably wrong (``babyemo data audit``).

    See the module doc for the method and the files.

    Args:
        manifest: ``manifest.csv`` (or its folder) the folds run was made on; ``None``:
            the one recorded in the run's ``folds.json`` (or, when the audit trains its
            folds, the last prepared one).
        oof_run_dir: A finished ``babyemo train --folds K --out DIR`` folder; ``None``:
            train ``folds`` quick fold models first (:func:`quick_folds`).
        out: Output folder (created; ``label_issues.csv``, ``audit.json`` and the sheets
            are replaced).
        top: Suspects per class in each contact sheet (>= 1).
        folds: ``K`` of the fold models trained when ``oof_run_dir`` is ``None``.
        config: Their recipe (see :func:`quick_folds`); its device, precision and batch
            size also run the fold models on the test split.
        test_report: Also score the test rows, for the report only: each by the mean
            probabilities of the fold models (none trained on it), flagged by cleanlab
            among the test rows alone, written to ``test_label_issues.csv``. The test
            split is never edited to raise a score (``data relabel`` refuses it).

    Returns:
        The :class:`AuditResult`.

    Raises:
        ConfigError: ``top`` < 1; ``oof_run_dir`` is not a folds run; ``out`` is an input,
            lies in the image root, or cannot be written.
        ManifestError: The manifest differs from the one the folds were made on (its
            SHA-256), or cannot be read.
        DataError: The out-of-fold predictions are missing, malformed, or do not cover
            the manifest's non-test rows (or name another row or class).
        MissingDependencyError: cleanlab is not installed (``pip install 'babyemo[audit]'``).
    """
    start = time.perf_counter()
    if not isinstance(top, int) or isinstance(top, bool) or top < 1:
        raise ConfigError(f"--top must be an int >= 1, got {top!r}.", "e.g. --top 24")
    cleanlab = _import_cleanlab()
    if oof_run_dir is None:
        oof_run_dir = quick_folds(manifest, out, folds, config)
    run_dir = Path(oof_run_dir).expanduser()
    plan = _folds_plan(run_dir)
    data = read_manifest(plan.manifest if manifest is None else manifest)
    sha = data.sha256()
    if sha != plan.manifest_sha256:
        raise ManifestError(
            f"{data.path} is not the manifest the folds run {run_dir} was made on (SHA-256 "
            f"{sha[:12]}…, the run recorded {plan.manifest_sha256[:12]}… of "
            f"{plan.manifest}).",
            "audit the run's own manifest, or run `babyemo train --folds K` on this one")
    out_dir = Path(out).expanduser()
    names = [ISSUES_FILE, AUDIT_FILE] + [_sheet_name(i, c)
                                         for i, c in enumerate(data.class_names)]
    check_outputs(folders={"--out": out_dir}, folder_files={"--out": names},
                  inputs=[data.path, run_dir / "folds.json", run_dir / "oof_logits.npz"],
                  scanned=[data.root])
    paths, probs, class_names = read_oof(run_dir)
    index = {p: i for i, p in enumerate(paths)}
    audited = [r for r in data.rows if r.split != "test"]
    missing = [r.path for r in audited if r.path not in index]
    extra = len(paths) - (len(audited) - len(missing))
    if missing or extra:
        raise DataError(f"The out-of-fold predictions of {run_dir} do not match the non-test "
                        f"rows of {data.path} ({len(missing)} rows without one, e.g. "
                        f"{missing[:2]}; {extra} predictions of other images).",
                        "run `babyemo train --folds K` again on this manifest")
    unknown = sorted({r.label for r in audited} - set(class_names))
    if unknown:
        raise DataError(f"The folds run {run_dir} has no class {', '.join(unknown)}.",
                        "run `babyemo train --folds K` again on this manifest")
    groups = conflict_groups(data)
    group_of: dict[str, list[str]] = {}
    for g in groups:
        for p in g["paths"]:
            group_of.setdefault(p, []).append(g["id"])
    rows = _ranked_rows(cleanlab, audited, probs[[index[r.path] for r in audited]],
                        class_names, group_of)
    test_rows = None
    if test_report:
        tested = [r for r in data.rows if r.split == "test"]
        if tested:
            test_rows = _ranked_rows(cleanlab, tested, _test_probs(plan, config),
                                     class_names, group_of)
    out_dir.mkdir(parents=True, exist_ok=True)
    files = {"issues": out_dir / ISSUES_FILE, "audit": out_dir / AUDIT_FILE}
    _write_issues(files["issues"], rows)
    if test_rows is not None:
        files["test_issues"] = out_dir / TEST_ISSUES_FILE
        _write_issues(files["test_issues"], test_rows)
    by_path = {r.path: r for r in data.rows}
    for i, label in enumerate(data.class_names):
        suspects = [r for r in rows if r.issue and r.given_label == label][:top]
        items = [(_sheet_image(data, by_path[r.path]),
                  f"#{r.rank} {r.given_label} → {r.suggested_label}\nquality {r.quality:.2f}",
                  False) for r in suspects]
        files[f"sheet:{label}"] = out_dir / _sheet_name(i, label)
        reports.plot_image_grid(items, files[f"sheet:{label}"],
                                title=f"labelled {label}: top {len(items)} suspects")
    result = AuditResult(
        out=out_dir, manifest=data.path, manifest_sha256=sha, oof_run=run_dir,
        class_names=class_names, rows=rows, n_issues=sum(r.issue for r in rows),
        issues_per_class={c: sum(1 for r in rows if r.issue and r.given_label == c)
                          for c in data.class_names},
        n_test=len(data.rows) - len(audited), conflict_groups=groups, test_rows=test_rows,
        test_flagged=None if test_rows is None else sum(r.issue for r in test_rows),
        top=top, cleanlab_version=str(getattr(cleanlab, "__version__", "")), files=files)
    result.seconds = time.perf_counter() - start
    reports.write_json(result.to_dict(), files["audit"])
    log.info("Label audit: %d of %d images flagged; %d conflicting duplicate groups",
             result.n_issues, result.n, len(groups))
    return result


__all__ = ["AUDIT_FILE", "DEFAULT_TOP", "FOLDS_DIR", "ISSUES_FILE", "ISSUE_COLUMNS",
           "QUICK_EPOCHS", "TEST_ISSUES_FILE", "AuditResult", "AuditRow", "audit_labels",
           "conflict_groups", "quick_folds", "read_oof"]
