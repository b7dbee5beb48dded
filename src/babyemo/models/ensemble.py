"""Ensembles as models: trained checkpoints with the same classes, combined into one checkpoint.

Any list of trained checkpoints whose class names are the same set (in any order) and
whose face crops are the same (e.g. the K fold models of a cross-validation run) becomes
one self-describing checkpoint of the architecture ``ensemble`` (:func:`build_ensemble`,
``babyemo models ensemble``). It is an ordinary checkpoint, so everything that takes a
model takes it, through the same seams: ``evaluate``, ``predict``, ``calibrate`` (through
:class:`babyemo.inference.InferenceModel` and its engines), ``export`` (one ONNX graph),
``models info`` and ``models card``. Its entries (see :mod:`babyemo.checkpoint`)::

    arch          "ensemble"
    arch_kwargs   {"input_size": S, "class_names": [...],
                   "members": [{"arch", "arch_kwargs", "input": InputSpec dict,
                                "temperature", "class_names"}, ...]}
    input         S px (the largest member input), 3 channels, mean 0, std 1: the module
                  receives RGB scaled to [0, 1]
    state_dict    member i's weights under "members.<i>."
    faces         the members' face-crop settings (all members share them)
    train         {"ensemble": {"combine", "members": [provenance of each member: name,
                  file, sha256, arch, input, temperature, dataset, manifest, epoch, val
                  macro-F1, key facts of its training config; fold and cv for the fold
                  models of a cross-validation]}, "faces"; "dataset", "manifest",
                  "manifest_sha256" and "config": {"train_splits"} when the members come
                  from one manifest (the same one, or the folds of one parent: "cv")}
    metrics       {"members": [{"name", "epoch", "val"}...]; "out_of_fold": metrics of the
                  --oof rows, when given}
    calibration   optional: the ensemble's own temperature (``--oof``, or ``babyemo
                  calibrate`` on held-out images)

**The combination** (:class:`EnsembleModel`). Member ``m`` sees the ensemble's input
converted to its own: turned to grayscale when it has one channel (ITU-R 601-2 luma, the
weights of Pillow's ``"L"`` mode), resized to its side when that differs (bilinear,
antialiased, as :class:`babyemo.transforms.EvalTransform` resizes images) and normalised
with its own mean and std. Its logits ``z_m`` are put in the ensemble's class order (by
name) and the module returns ``log((1/M) * sum_m softmax(z_m / T_m))`` with each member's
own temperature ``T_m``. So ``softmax(output / T)``, what the inference seam computes with
the ensemble's temperature ``T`` (1 when uncalibrated), is for ``T = 1`` exactly the mean
of the members' calibrated probabilities (the averaging of deep ensembles, Lakshminarayanan,
Pritzel & Blundell 2017, "Simple and Scalable Predictive Uncertainty Estimation using Deep
Ensembles", NeurIPS), and a fitted ``T`` rescales the pooled probabilities (calibrating
after pooling, as Rahaman & Thiery 2021, "Uncertainty Quantification and Deep Ensembles",
NeurIPS, recommend).

**Its temperature.** With ``oof``, a predictions CSV of images each member set did not
train on (the ``true`` and ``prob_<class>`` columns of :mod:`babyemo.rows`: a
cross-validation run's ``oof.csv``, or ``predictions.csv`` of ``babyemo evaluate`` on
held-out images), ``T`` is fitted by :func:`babyemo.calibration.calibrate_logits` on the
log of those probabilities and stored (``fitted_on`` ``"out-of-fold"``). Out-of-fold rows
are each scored by one member, whose probabilities are less smooth than the ensemble's
mean, so the fitted ``T`` tends to be a little larger than the pooled ensemble needs;
``babyemo calibrate --model NAME`` on a held-out split fits it on the ensemble itself.

An ensemble cannot be trained or fine-tuned from (:func:`refuse_as_init`): fine-tune one
of its members instead.
"""

from __future__ import annotations

import csv
import logging
import math
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from babyemo.calibration import OUT_OF_FOLD, calibrate_logits
from babyemo.checkpoint import Checkpoint, check_writable, read_checkpoint_dict, save_checkpoint
from babyemo.config import InputSpec
from babyemo.errors import BabyEmoError, CheckpointError, ConfigError, DataError
from babyemo.fs import sha256_file
from babyemo.models import store
from babyemo.models.registry import create_model, register_arch

log = logging.getLogger(__name__)

ARCH = "ensemble"
"""Registry name of the ensemble architecture."""

MIN_MEMBERS = 2
"""Fewest members :func:`build_ensemble` accepts."""

LUMA = (0.299, 0.587, 0.114)
"""RGB weights of the grayscale input of a one-channel member (ITU-R 601-2 luma, Pillow's
``convert("L")``, which one-channel models are trained on)."""

OOF_PROB_FLOOR = 5e-5
"""Probabilities of an ``oof`` file are clipped to at least this before their log is taken:
half of the smallest non-zero value of the 4-decimal CSV columns, so a printed ``0.0000``
is a finite logit."""

MEMBER_CONFIG_KEYS = ("arch_kwargs", "pretrained", "image_size", "epochs", "batch_size", "lr",
                      "weight_decay", "optimizer", "scheduler", "augment", "label_smoothing",
                      "class_weights", "seed", "init", "train_splits", "faces", "face_margin",
                      "face_align")
"""Training-config facts recorded for each member (``train["ensemble"]["members"]``)."""

MEMBER_TRAIN_KEYS = ("dataset", "manifest", "manifest_sha256", "n_train", "n_val")
"""Training-record facts copied for each member when it has them."""


def resize_matrix(src: int, dst: int) -> torch.Tensor:
    """The matrix ``A`` of the antialiased bilinear resize of a side from ``src`` to ``dst``
    pixels: ``A @ x @ A.T`` is ``F.interpolate(x, (dst, dst), mode="bilinear",
    antialias=True)`` of a ``(..., src, src)`` tensor (the resize is linear and separable;
    its matrix is the resize of the unit vectors; equal within 2e-7 for values in [0, 1]).

    Returns:
        ``(dst, src) float32``; each row sums to 1.
    """
    basis = torch.eye(src).reshape(src, 1, 1, src)
    out = F.interpolate(basis, size=(1, dst), mode="bilinear", align_corners=False,
                        antialias=True)
    return out.reshape(src, dst).T.contiguous()


class MemberInput(nn.Module):
    """The ensemble's input converted to one member's input.

    The resize is written as two matrix products (:func:`resize_matrix`) rather than an
    ``F.interpolate`` call, so the exported ONNX graph has static ``MatMul`` nodes instead
    of a ``Resize`` with computed sizes, whose output shape onnxruntime's int8
    pre-processing (symbolic shape inference) cannot infer.

    Args:
        spec: The member's input spec.
        ensemble_size: The ensemble's input side in pixels (>= ``spec.size``).

    Forward: ``(N, 3, S, S) float32`` RGB in [0, 1] -> ``(N, C_m, S_m, S_m) float32``,
    normalised as the member was trained (grayscale with ITU-R 601-2 luma first when
    ``C_m = 1``; antialiased bilinear resize when ``S_m != S``).
    """

    def __init__(self, spec: InputSpec, ensemble_size: int) -> None:
        super().__init__()
        self.resize = spec.size != ensemble_size
        self.gray = spec.channels == 1
        self.register_buffer("luma", torch.tensor(LUMA).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("mean", torch.tensor(spec.mean).view(1, -1, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(spec.std).view(1, -1, 1, 1), persistent=False)
        rows = resize_matrix(ensemble_size, spec.size) if self.resize else torch.zeros(0, 0)
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", rows.T.contiguous(), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.gray:
            x = (x * self.luma).sum(dim=1, keepdim=True)
        if self.resize:
            x = torch.matmul(self.rows, torch.matmul(x, self.cols))
        return (x - self.mean) / self.std


class EnsembleModel(nn.Module):
    """Members whose tempered probabilities are averaged (see the module doc).

    Args:
        members: The members' models (eval mode is the caller's).
        inputs: One :class:`MemberInput` per member.
        orders: Per member, the index of each ensemble class among the member's logits
            (``None``: the same order).
        temperatures: Per member, its temperature ``T_m > 0``.

    Forward: ``(N, 3, S, S) float32`` RGB in [0, 1] -> ``(N, K) float32``
    ``log((1/M) sum_m softmax(z_m / T_m))``, in the ensemble's class order.
    """

    def __init__(self, members: Sequence[nn.Module], inputs: Sequence[MemberInput],
                 orders: Sequence[Sequence[int] | None], temperatures: Sequence[float]) -> None:
        super().__init__()
        self.members = nn.ModuleList(members)
        self.inputs = nn.ModuleList(inputs)
        self.temperatures = [float(t) for t in temperatures]
        self.reorder = [order is not None for order in orders]
        for i, order in enumerate(orders):
            self.register_buffer(f"order_{i}", torch.tensor(list(order or []), dtype=torch.long),
                                 persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = []
        for i, (net, prep) in enumerate(zip(self.members, self.inputs, strict=True)):
            z = net(prep(x)).float()
            if self.reorder[i]:
                z = z.index_select(1, getattr(self, f"order_{i}"))
            parts.append(torch.log_softmax(z / self.temperatures[i], dim=1))
        # log of the mean of exp(parts), shifted by their maximum (finite: one term is 1).
        # Elementwise ops only, rather than torch.logsumexp over a stack: onnxruntime's int8
        # pre-processing cannot infer the output shape of ONNX's ReduceLogSumExp/ReduceMax.
        top = parts[0]
        for part in parts[1:]:
            top = torch.maximum(top, part)
        total = torch.exp(parts[0] - top)
        for part in parts[1:]:
            total = total + torch.exp(part - top)
        return top + torch.log(total / len(parts))


def _build_error(message: str) -> ConfigError:
    return ConfigError(message, "build an ensemble from trained models with `babyemo models "
                       "ensemble NAME MEMBER...` (babyemo.models.ensemble.build_ensemble)")


@register_arch(ARCH, default_input=InputSpec(size=224, channels=3, mean=(0.0,) * 3,
                                             std=(1.0,) * 3),
               description="Ensemble of trained models: the mean of their calibrated "
               "probabilities (babyemo models ensemble); assembled, not trained",
               takes_input_size=False, trainable=False)
def build_ensemble_model(*, num_classes: int, in_channels: int = 3, pretrained: bool = False,
                         members: Sequence[Mapping[str, Any]] | None = None,
                         class_names: Sequence[str] | None = None,
                         input_size: int | None = None) -> EnsembleModel:
    """Rebuild an ensemble from its description (its checkpoint's ``arch_kwargs``).

    Args:
        num_classes: Number of classes ``K``.
        in_channels: 3 (the ensemble's input is RGB).
        pretrained: Must be False (an ensemble has no ImageNet weights).
        members: Per member ``{"arch", "arch_kwargs", "input", "temperature",
            "class_names"}`` (plain types).
        class_names: The ensemble's ``K`` class names, in logit order.
        input_size: The ensemble's input side ``S`` in pixels (>= every member's).

    Returns:
        An :class:`EnsembleModel` with freshly initialised members (the checkpoint's
        weights are loaded by the caller).

    Raises:
        ConfigError: No members (an ensemble is assembled, not trained), ``pretrained``,
            or a malformed description: a member whose classes are not the ensemble's,
            whose input is larger than ``input_size``, or whose temperature is not > 0.
        RegistryError: A member's architecture is not registered.
    """
    if not members:
        raise _build_error("An ensemble is not trained: it is assembled from trained models.")
    if pretrained:
        raise _build_error("An ensemble has no pretrained weights.")
    names = list(class_names or [])
    if len(names) != num_classes or in_channels != 3 or not isinstance(input_size, int):
        raise _build_error(f"Malformed ensemble description: {num_classes} classes "
                           f"{names!r}, {in_channels} channels, input size {input_size!r}.")
    nets, inputs, orders, temperatures = [], [], [], []
    for i, m in enumerate(members):
        try:
            spec = InputSpec.from_dict(m["input"])
            own = list(m["class_names"])
            t = float(m["temperature"])
            arch, kwargs = str(m["arch"]), dict(m["arch_kwargs"])
        except (KeyError, TypeError, ValueError) as e:
            raise _build_error(f"Ensemble member {i} is malformed ({type(e).__name__}: {e}).") \
                from e
        if sorted(own) != sorted(names) or len(set(own)) != len(own):
            raise _build_error(f"Ensemble member {i} has classes {own}, the ensemble {names}.")
        if spec.size > input_size:
            raise _build_error(f"Ensemble member {i} takes {spec.size} px, more than the "
                               f"ensemble's {input_size} px input.")
        if not 0 < t < math.inf:
            raise _build_error(f"Ensemble member {i} has temperature {t!r}.")
        nets.append(create_model(arch, num_classes=len(own), **kwargs))
        inputs.append(MemberInput(spec, input_size))
        orders.append(None if own == names else [own.index(c) for c in names])
        temperatures.append(t)
    return EnsembleModel(nets, inputs, orders, temperatures)


def is_ensemble(ckpt: Checkpoint) -> bool:
    """Whether a checkpoint is an ensemble."""
    return ckpt.arch == ARCH


def members_of(ckpt: Checkpoint) -> list[dict[str, Any]]:
    """The provenance of an ensemble's members (``train["ensemble"]["members"]``), one
    plain dict per member: ``name``, ``checkpoint``, ``sha256``, ``arch``, ``input_size``,
    ``temperature``, ``dataset``, ``epoch``, ``val_macro_f1``, ``config`` ... (``[]`` for a
    checkpoint that is not an ensemble)."""
    if not is_ensemble(ckpt):
        return []
    record = (ckpt.train or {}).get("ensemble") or {}
    members = record.get("members") if isinstance(record, dict) else None
    if isinstance(members, list) and members:
        return [dict(m) for m in members if isinstance(m, dict)]
    return [{"name": f"member {i}", "arch": m.get("arch"),
             "input_size": (m.get("input") or {}).get("size"), "temperature": m.get("temperature")}
            for i, m in enumerate(ckpt.arch_kwargs.get("members") or [])]


def refuse_as_init(ckpt: Checkpoint) -> None:
    """Raise when a fine-tuning donor (``--init``) is an ensemble.

    An ensemble's weights are its members' (``members.<i>.``), which fit no single
    architecture; fine-tune one of its members instead.

    Raises:
        ConfigError: ``ckpt`` is an ensemble (the hint names its members' files).
    """
    if not is_ensemble(ckpt):
        return
    files = [str(m.get("checkpoint") or m.get("name")) for m in members_of(ckpt)]
    raise ConfigError(f"{ckpt.name or ckpt.path} is an ensemble of {len(files)} models; a "
                      "model cannot be fine-tuned from an ensemble.",
                      "pass one of its members to --init: " + ", ".join(files))


def _faces_key(faces: Any) -> tuple[Any, ...] | None:
    """Comparable face-crop settings (``None``: whole images)."""
    if not faces:
        return None
    return (faces.get("detector"), float(faces.get("margin", 0.0)), bool(faces.get("align")))


def _member_name(ckpt: Checkpoint) -> str:
    return ckpt.name or store.model_label(ckpt.path)


def _check_members(members: Sequence[Checkpoint]) -> None:
    """Raise unless the members can form one ensemble: two or more, the same class set,
    the same face crops."""
    if len(members) < MIN_MEMBERS:
        raise ConfigError(f"An ensemble needs at least {MIN_MEMBERS} members, got "
                          f"{len(members)}.", "pass two or more trained models")
    first = members[0]
    for m in members[1:]:
        if set(m.class_names) != set(first.class_names):
            raise ConfigError(
                f"{_member_name(m)} has classes {m.class_names}, {_member_name(first)} has "
                f"{first.class_names}: an ensemble averages the probabilities of the same "
                "classes.", "combine models trained on the same classes (their order may differ)")
        if _faces_key(m.faces) != _faces_key(first.faces):
            def crops(c: Checkpoint) -> str:
                return ("whole images" if not c.faces else
                        f"face crops ({c.faces.get('detector')}, margin "
                        f"{c.faces.get('margin')}, align {c.faces.get('align')})")

            raise ConfigError(
                f"{_member_name(m)} was trained on {crops(m)}, {_member_name(first)} on "
                f"{crops(first)}: one ensemble crops every image one way.",
                "combine models trained with the same --faces, --face-margin and --face-align")
    paths = [m.path.resolve() for m in members]
    repeated = sorted({str(p) for p in paths if paths.count(p) > 1})
    if repeated:
        raise ConfigError(f"The same checkpoint is given more than once: {', '.join(repeated)}.",
                          "list each member once")


def _member_record(ckpt: Checkpoint) -> dict[str, Any]:
    """Provenance of one member (plain types)."""
    train = ckpt.train or {}
    cfg = train.get("config") or {}
    metrics = ckpt.metrics or {}
    record: dict[str, Any] = {
        "name": _member_name(ckpt), "checkpoint": str(ckpt.path.resolve()),
        "sha256": sha256_file(ckpt.path), "arch": ckpt.arch,
        "input_size": ckpt.input_spec.size, "channels": ckpt.input_spec.channels,
        "class_names": list(ckpt.class_names), "temperature": ckpt.temperature,
        "calibration_fitted_on": (ckpt.calibration or {}).get("fitted_on"),
        "epoch": metrics.get("epoch", train.get("epoch")),
        "val_macro_f1": (metrics.get("val") or {}).get("macro_f1"),
        "config": {k: cfg[k] for k in MEMBER_CONFIG_KEYS if k in cfg}}
    record.update({k: train[k] for k in MEMBER_TRAIN_KEYS if k in train})
    folds = _fold_of(ckpt)
    if folds is not None:
        record["fold"] = folds.get("fold")
        record["cv"] = {k: folds.get(k) for k in ("parent", "parent_sha256", "folds", "seed")}
    return record


def _fold_of(ckpt: Checkpoint) -> dict[str, Any] | None:
    """The ``folds`` entry of the manifest a member trained on when it is a fold manifest
    of a cross-validation (:mod:`babyemo.training.folds`: ``parent``, ``parent_sha256``,
    ``folds``, ``fold``, ``seed``) still on this machine with the recorded bytes; else
    ``None``."""
    from babyemo.data.preparation.manifest import INFO_FILE
    from babyemo.fs import read_json_object

    manifest, digest = (ckpt.train or {}).get("manifest"), (ckpt.train or {}).get("manifest_sha256")
    if not manifest or not digest:
        return None
    path = Path(manifest)
    try:
        if not path.is_file() or sha256_file(path) != digest:
            return None
        folds = read_json_object(path.parent / INFO_FILE).get("folds")
    except (OSError, BabyEmoError):
        return None
    ok = isinstance(folds, dict) and folds.get("parent") and folds.get("parent_sha256")
    return dict(folds) if ok else None


def _shared(records: Sequence[Mapping[str, Any]], key: str) -> Any:
    """The value every record has for ``key`` (``None`` when they differ or lack it)."""
    values = [r.get(key) for r in records]
    return values[0] if values[0] is not None and all(v == values[0] for v in values) else None


def _train_record(members: Sequence[Checkpoint], records: list[dict[str, Any]]
                  ) -> dict[str, Any]:
    """The ensemble's ``train`` entry: its members, and the manifest they come from, so
    that ``evaluate`` and ``calibrate`` find it and warn on (or refuse) a split a member
    trained on.

    That manifest is the one every member records, with ``config.train_splits`` the union
    of theirs; or, for the fold models of one cross-validation (each trained on its own
    fold manifest of the same parent), the parent manifest, with ``train_splits``
    ``["train", "val"]``: every non-test image trained some member. Otherwise none
    (``evaluate --data`` then says which data to use).
    """
    train: dict[str, Any] = {
        "ensemble": {"combine": "mean of the members' probabilities softmax(z_m / T_m)",
                     "members": records},
        "faces": members[0].faces, "dataset": _shared(records, "dataset")}
    manifest, digest = _shared(records, "manifest"), _shared(records, "manifest_sha256")
    cv = [r.get("cv") or {} for r in records]
    if manifest and digest:
        splits: set[str] = set()
        for m in members:
            splits |= set(((m.train or {}).get("config") or {}).get("train_splits") or ["train"])
        train.update(manifest=manifest, manifest_sha256=digest,
                     config={"train_splits": sorted(splits)})
    elif _shared(cv, "parent") and _shared(cv, "parent_sha256"):
        train.update(manifest=cv[0]["parent"], manifest_sha256=cv[0]["parent_sha256"],
                     config={"train_splits": ["train", "val"]},
                     cv={"parent": cv[0]["parent"], "folds": _shared(cv, "folds"),
                         "seed": _shared(cv, "seed"),
                         "members_folds": [r.get("fold") for r in records]})
    return train


def read_oof(path: str | os.PathLike[str], class_names: Sequence[str]
             ) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and labels of a predictions CSV (the columns of :mod:`babyemo.rows`).

    Rows with an ``error`` or no ``true`` label are left out.

    Args:
        path: CSV with a ``true`` column and one ``prob_<class>`` column per class (any
            order, e.g. a cross-validation run's ``oof.csv`` or ``babyemo evaluate``'s
            ``predictions.csv``).
        class_names: The model's classes, in logit order.

    Returns:
        ``(probs, labels)``: ``(N, K) float64`` probabilities in ``class_names`` order and
        ``(N,) int64`` class indices.

    Raises:
        DataError: Missing or unreadable file, no ``true`` column, ``prob_`` columns that
            are not the model's classes, a ``true`` label or probability that is not one
            of them / not a number in [0, 1], or no usable row.
    """
    path = Path(path)
    hint = ("pass a predictions CSV with 'true' and 'prob_<class>' columns, e.g. a "
            "cross-validation run's oof.csv or evaluate's predictions.csv")
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            header = list(reader.fieldnames or [])
            rows = list(reader)
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"Cannot read the predictions file {path}: {e}", hint) from e
    probs_cols = {c[len("prob_"):]: c for c in header if c.startswith("prob_")}
    if "true" not in header or set(probs_cols) != set(class_names):
        raise DataError(f"{path} has columns {header[:12]}: it needs 'true' and "
                        f"prob_<class> for exactly the classes {list(class_names)}.", hint)
    index = {c: i for i, c in enumerate(class_names)}
    probs, labels = [], []
    for line, row in enumerate(rows, start=2):
        if (row.get("error") or "").strip() or not (row.get("true") or "").strip():
            continue
        true = row["true"].strip()
        if true not in index:
            raise DataError(f"{path}, line {line}: true label {true!r} is not one of the "
                            f"classes {list(class_names)}.", hint)
        try:
            p = [float(row[probs_cols[c]]) for c in class_names]
        except (TypeError, ValueError) as e:
            raise DataError(f"{path}, line {line}: a probability is not a number ({e}).",
                            hint) from e
        if not all(0.0 <= v <= 1.0 for v in p):
            raise DataError(f"{path}, line {line}: probabilities {p} are not in [0, 1].", hint)
        probs.append(p)
        labels.append(index[true])
    if not labels:
        raise DataError(f"{path} has no row with a true label and probabilities.", hint)
    return np.asarray(probs, dtype=np.float64), np.asarray(labels, dtype=np.int64)


def _fit_oof(path: Path, class_names: list[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``calibration`` entry fitted on an oof file, and its ``out_of_fold`` metrics."""
    from babyemo.metrics import classification_metrics

    probs, labels = read_oof(path, class_names)
    logits = np.log(np.clip(probs, OOF_PROB_FLOOR, None))
    result = calibrate_logits(logits, labels, fitted_on=OUT_OF_FOLD)
    sha = sha256_file(path)
    calibration = {**result.to_dict(), "file": path.name, "file_sha256": sha}
    m = classification_metrics(labels, probs.argmax(1), class_names)
    metrics = {"file": path.name, "file_sha256": sha, "n": int(labels.size),
               **{k: float(m[k]) for k in ("accuracy", "balanced_accuracy", "macro_f1")}}
    log.info("Ensemble temperature fitted on %d out-of-fold rows of %s: T=%.3f, ECE %.3f -> "
             "%.3f", result.n, path, result.temperature, result.ece_before, result.ece_after)
    return calibration, metrics


def _check_out(out: Path) -> None:
    """Refuse to replace a file that is not an ensemble checkpoint (a trained model)."""
    check_writable(out)
    if out.is_file():
        try:
            arch = read_checkpoint_dict(out).get("arch")
        except BabyEmoError:
            arch = None
        if arch != ARCH:
            raise ConfigError(f"{out} exists and is not an ensemble checkpoint.",
                              "choose another output file (an ensemble's file is replaced "
                              "when it is built again)")


def build_ensemble(members: Sequence[Checkpoint], out: str | os.PathLike[str], *,
                   name: str | None = None,
                   oof: str | os.PathLike[str] | None = None) -> Checkpoint:
    """Combine trained checkpoints into one ensemble checkpoint (see the module doc).

    Args:
        members: Two or more loaded checkpoints (e.g. from
            :func:`babyemo.models.store.load`) with the same class set and the same face
            crops; their input sizes, channels, architectures, class orders and
            temperatures may differ. The ensemble's classes are in the first member's
            order.
        out: The ``.pt`` file to write (atomically). An existing file is replaced only if
            it is an ensemble checkpoint.
        name: Register the ensemble in the model store under this name (checked before
            anything is written); ``None``: not registered.
        oof: Predictions CSV of held-out images (``true`` and ``prob_<class>`` columns,
            e.g. a cross-validation run's ``oof.csv``): the ensemble's temperature is
            fitted on the log of its probabilities (:func:`read_oof`,
            :func:`babyemo.calibration.calibrate_logits`) and stored as its calibration
            (``fitted_on`` ``"out-of-fold"``, ``n``); ``None``: uncalibrated (``T = 1``).

    Returns:
        The ensemble's :class:`~babyemo.checkpoint.Checkpoint` as written (``name`` set).

    Raises:
        ConfigError: Fewer than two members, different class sets or face crops, a member
            given twice, or ``out`` that is a member, the ``oof`` file,
            a packaged model or another model's checkpoint (see
            :func:`~babyemo.data.loading.folders.check_outputs`).
        RegistryError: ``name`` names another existing model.
        DataError: An unusable ``oof`` file (see :func:`read_oof`).
        CheckpointError: A member's weights do not fit its architecture.
        StateError: The model store (``models.json``) is corrupt.
    """
    from babyemo.checkpoint import load_checkpoint
    from babyemo.data.loading.folders import check_outputs

    members = list(members)
    out = Path(out)
    _check_members(members)
    check_outputs({"output file": out}, inputs=[*(m.path for m in members), oof])
    _check_out(out)
    if name is not None:
        store.check_name_free(name, out)
    class_names = list(members[0].class_names)
    size = max(m.input_spec.size for m in members)
    descriptions = [{"arch": m.arch, "arch_kwargs": dict(m.arch_kwargs),
                     "input": m.input_spec.to_dict(), "temperature": m.temperature,
                     "class_names": list(m.class_names)} for m in members]
    arch_kwargs = {"input_size": size, "class_names": class_names, "members": descriptions}
    model = create_model(ARCH, num_classes=len(class_names), **arch_kwargs)
    for i, (net, m) in enumerate(zip(model.members, members, strict=True)):
        try:
            net.load_state_dict(m.state_dict)
        except RuntimeError as e:
            raise _weights_error(m, i, e) from e
    records = [_member_record(m) for m in members]
    calibration, oof_metrics = _fit_oof(Path(oof), class_names) if oof is not None else (None, None)
    metrics: dict[str, Any] = {"members": [
        {"name": r["name"], "epoch": r["epoch"], "val": (m.metrics or {}).get("val")}
        for r, m in zip(records, members, strict=True)]}
    if oof_metrics is not None:
        metrics["out_of_fold"] = oof_metrics
    save_checkpoint(out, model=model, arch=ARCH, arch_kwargs=arch_kwargs,
                    class_names=class_names,
                    input_spec=InputSpec(size=size, channels=3, mean=(0.0,) * 3, std=(1.0,) * 3),
                    train=_train_record(members, records), metrics=metrics,
                    faces=members[0].faces, calibration=calibration)
    if name is not None:
        store.register_trained(name, out, arch=ARCH, class_names=class_names,
                               dataset=_shared(records, "dataset"),
                               members=[r["name"] for r in records])
    log.info("Wrote the ensemble of %d members %s to %s", len(members),
             ", ".join(r["name"] for r in records), out)
    ckpt = load_checkpoint(out)
    ckpt.name = name or store.model_label(out)
    return ckpt


def _weights_error(member: Checkpoint, index: int, error: Exception) -> BabyEmoError:
    """The error of a member whose weights do not fit its architecture."""
    return CheckpointError(f"{member.path} (member {index}): weights do not match arch "
                           f"'{member.arch}' ({error}).",
                           "the file may come from another babyemo version")


__all__ = ["ARCH", "EnsembleModel", "MemberInput", "build_ensemble", "build_ensemble_model",
           "is_ensemble", "members_of", "read_oof", "refuse_as_init", "resize_matrix"]
