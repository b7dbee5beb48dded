"""Model cards: a Markdown description of a trained model, written from its checkpoint.

The layout follows Mitchell et al. 2019, *Model Cards for Model Reporting* (FAT* '19):
model details, intended use and out-of-scope use, training data and its known biases,
metrics with their uncertainty (here 95% bootstrap intervals) overall, per class and per
slice, and calibration. Everything comes from the checkpoint itself: its training record,
the evaluations stored with ``babyemo evaluate --record`` and an optional ``card`` entry of
free text (``intended_use``, ``out_of_scope``, ``training_data``, ``biases``, ``notes``),
so a card can be regenerated at any time and cannot drift from the weights.

A fine-tuned model's donor is named as the reader knows it: a packaged model's name when
the training recorded one or the donor is recognised as one (by the digest of its weights,
the sha256 of its file or its facts, see :func:`init_donor`), else the local name recorded
at training, else the file's name with its facts; never a path of the machine that trained
it.
"""

from __future__ import annotations

import math
import os
import warnings
from pathlib import Path
from typing import Any

from babyemo.checkpoint import Checkpoint
from babyemo.errors import BabyEmoError
from babyemo.models.store import (
    model_label,
    packaged_models,
    packaged_name_of,
)

INTENDED_USE = (
    "Research on infants' and young children's facial expressions (angry, crying, happy "
    "and other trained classes) in still photos or video frames: screening large photo "
    "collections, pre-annotating frames for human coders, comparing recipes. Outputs are "
    "probabilities for the trained classes only; low-confidence rows can be marked "
    "`uncertain` with `babyemo predict --min-confidence P`.")
"""Default "intended use" text of a card without its own."""

OUT_OF_SCOPE = (
    "Not for clinical diagnosis, pain or distress assessment, or any medical decision. Not "
    "a safety device: a baby monitor must not rely on it to detect that a child needs "
    "help. Not for identifying or tracking individuals. Not validated on children of every "
    "age, skin tone or camera setting (see the training data's biases), on video, or on "
    "faces that are partly hidden; outside those conditions its metrics do not apply.")
"""Default "out-of-scope use" text of a card without its own."""


INIT_FACTS = ("arch", "dataset", "n_train", "epoch", "input_size", "val_macro_f1")
"""Facts of a donor model recorded in ``train["init"]`` that identify it when no name or
hash was recorded (checkpoints written before babyemo recorded them)."""


def _read_metadata(path: Path) -> dict[str, Any]:
    """A checkpoint's dict, with its tensors memory-mapped rather than read.

    Only the small pickle is read (the weights of an 11 MB file stay on disk). Anything
    the fast path cannot read goes through :func:`babyemo.checkpoint.read_checkpoint_dict`,
    which raises the typed error.
    """
    import torch

    from babyemo.checkpoint import FORMAT, FORMAT_VERSION, REQUIRED_KEYS, read_checkpoint_dict

    try:
        with warnings.catch_warnings():  # as read_checkpoint_dict: foreign files warn
            warnings.simplefilter("ignore", UserWarning)
            data = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # legacy (non-zip) or corrupt file: let the full reader judge it
        return read_checkpoint_dict(path)
    if (not isinstance(data, dict) or data.get("format") != FORMAT
            or data.get("format_version") != FORMAT_VERSION
            or any(k not in data for k in REQUIRED_KEYS)):
        return read_checkpoint_dict(path)
    return data


def own_test_evaluation(raw: dict[str, Any]) -> dict[str, Any] | None:
    """The latest recorded evaluation of a checkpoint on its own dataset's whole test split.

    Args:
        raw: The checkpoint's dict (:attr:`babyemo.checkpoint.Checkpoint.raw`).

    Returns:
        The ``evaluations`` entry (same dataset as trained on, split ``test``, no
        ``where`` and no label map), or ``None``.
    """
    dataset = (raw.get("train") or {}).get("dataset")
    evaluations = raw.get("evaluations")
    found = None
    for ev in evaluations if isinstance(evaluations, list) else []:
        if (isinstance(ev, dict) and ev.get("split") == "test" and ev.get("dataset") == dataset
                and not ev.get("where") and not ev.get("label_map")):
            found = ev
    return found


def checkpoint_facts(checkpoint: str | os.PathLike[str]) -> dict[str, Any]:
    """What a listing shows of a checkpoint, read without loading its weights.

    Args:
        checkpoint: A ``.pt`` file.

    Returns:
        Plain-type facts: ``arch``, ``class_names``, ``dataset``, ``n_train``, ``epoch``
        (the epoch kept), ``input_size`` (pixels), ``created`` (ISO-8601 UTC),
        ``val_macro_f1`` (validation split at that epoch; ``None`` for a model trained on
        train+val), ``test_macro_f1`` and ``test_n`` (its latest recorded evaluation on its
        own dataset's whole test split, see :func:`own_test_evaluation`; ``None``
        without one).

    Raises:
        CheckpointError: Missing or unreadable file, or not a babyemo checkpoint.
    """
    data = _read_metadata(Path(checkpoint))
    train = data.get("train") or {}
    metrics = data.get("metrics") or {}
    test = own_test_evaluation(data)
    return {"arch": data["arch"], "class_names": list(data["class_names"]),
            "dataset": train.get("dataset"), "n_train": train.get("n_train"),
            "epoch": metrics.get("epoch", train.get("epoch")),
            "input_size": (data.get("input") or {}).get("size"), "created": data.get("created"),
            "val_macro_f1": (metrics.get("val") or {}).get("macro_f1"),
            "test_macro_f1": test.get("macro_f1") if test else None,
            "test_n": test.get("n") if test else None}


def _same_fact(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return math.isclose(float(a), float(b), rel_tol=1e-12, abs_tol=0.0)
        except (TypeError, ValueError):
            return False
    return a == b


def init_donor(init: dict[str, Any]) -> dict[str, Any]:
    """Who a model was initialised from, for readers who do not have the donor's file.

    In order: the name recorded at training (``init["name"]``, babyemo >= 0.2) when it is a
    packaged model's; else the packaged model whose weights have the recorded
    ``weights_sha256`` (a packaged model by content, even when the donor was registered
    under a local name that means nothing to a reader elsewhere, e.g. the run that became
    the packaged file); else the recorded local name; else the packaged model whose file
    has the recorded ``sha256``; else the packaged model whose facts (:data:`INIT_FACTS`:
    arch, dataset, training images, epoch, input size and validation macro-F1, all
    recorded) equal the recorded ones; else only the donor file's name.

    Args:
        init: ``train["init"]`` of a checkpoint (see ``docs/checkpoint-format.md``).

    Returns:
        ``{"name": registered name or None, "packaged": bool, "how": "recorded" |
        "weights_sha256" | "sha256" | "facts" | None, "file": the donor file's name, e.g.
        "fer-final.pt"}``.
    """
    packaged = packaged_models()
    file = Path(str(init.get("checkpoint") or "")).name or None
    name = init.get("name")
    name = name if isinstance(name, str) and name else None
    if name in packaged:
        return {"name": name, "packaged": True, "how": "recorded", "file": file}
    sha, weights_sha = init.get("sha256"), init.get("weights_sha256")
    if pname := packaged_name_of(weights_sha256=weights_sha):
        return {"name": pname, "packaged": True, "how": "weights_sha256", "file": file}
    if name:
        return {"name": name, "packaged": False, "how": "recorded", "file": file}
    if sha or weights_sha:
        pname = packaged_name_of(sha)
        return {"name": pname, "packaged": pname is not None,
                "how": "sha256" if pname else None, "file": file}
    for pname, rec in packaged.items():
        if all(init.get(k) is not None for k in INIT_FACTS):
            try:
                facts = checkpoint_facts(rec["checkpoint"])
            except BabyEmoError:
                continue
            if all(_same_fact(init[k], facts.get(k)) for k in INIT_FACTS):
                return {"name": pname, "packaged": True, "how": "facts", "file": file}
    return {"name": None, "packaged": False, "how": None, "file": file}


def _ece_floor(floor: dict[str, Any] | None) -> str:
    """``; a perfectly calibrated model ...`` for a recorded ``ece_if_calibrated``, or ``""``
    (evaluations recorded before it existed)."""
    if not floor:
        return ""
    return (f"; a perfectly calibrated model would show {floor['low']:.3f}-{floor['high']:.3f} "
            f"on these images by chance")


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _ci(ci: Any) -> str:
    return f"{ci[0]:.3f}–{ci[1]:.3f}" if ci else "—"


def _evaluation_section(ev: dict[str, Any]) -> list[str]:
    where = ", ".join(f"{c}={v}" for c, v in (ev.get("where") or {}).items())
    engine = ev.get("engine") or {}
    title = f"### {ev['dataset']}, split `{ev['split']}`" + (f" ({where})" if where else "")
    lines = [title, ""]
    facts = [f"n = {ev['n']}", f"engine {engine.get('backend', 'torch')} "
             f"{engine.get('precision', '')}" + (" + flip TTA" if engine.get("tta") else "")
             + (", whole images (no face crop)" if engine.get("whole_images") else "")]
    if ev.get("label_map"):
        facts.append(f"label map {ev['label_map']}")
    lines += [", ".join(facts) + f"; evaluated {ev.get('created', '')}.", ""]
    ci = ev.get("ci95") or {}
    n_boot = ev.get("bootstrap_resamples") or 0
    lines += ["| metric | value | 95% CI" + (f" ({n_boot} bootstrap resamples)" if n_boot else "")
              + " |", "|---|---|---|"]
    for key, label in (("accuracy", "accuracy"), ("balanced_accuracy", "balanced accuracy"),
                       ("macro_f1", "macro-F1")):
        lines.append(f"| {label} | {ev[key]:.3f} | {_ci(ci.get(key))} |")
    lines.append("")
    per_ci = ci.get("per_class") or {}
    lines += ["| class | precision | recall | F1 | F1 95% CI | support |",
              "|---|---|---|---|---|---|"]
    for c, pc in ev["per_class"].items():
        lines.append(f"| {c} | {pc['precision']:.3f} | {pc['recall']:.3f} | {pc['f1']:.3f} | "
                     f"{_ci((per_ci.get(c) or {}).get('f1'))} | {pc['support']} |")
    lines.append("")
    names = list(ev["per_class"])
    cm = ev.get("confusion_matrix")
    if cm:
        lines += ["Confusion matrix (rows = true class, columns = predicted):", "",
                  "| true \\ pred | " + " | ".join(names) + " |",
                  "|---|" + "---|" * len(names)]
        lines += [f"| {c} | " + " | ".join(str(v) for v in row) + " |"
                  for c, row in zip(names, cm, strict=True)]
        lines.append("")
    cal = ev.get("calibration") or {}
    if cal.get("ece_before") is not None:
        lines += [f"Calibration: ECE ({cal.get('n_bins')} bins) {cal['ece_before']:.3f} at T = 1, "
                  f"{cal['ece_after']:.3f} at the stored T = {cal.get('temperature', 1.0):.3f}"
                  f" (fitted on {cal.get('fitted_on') or 'nothing: uncalibrated'})"
                  + _ece_floor(cal.get("ece_if_calibrated")) + ".", ""]
    slices = ev.get("slices")
    if slices:
        lines += [f"Per `{slices['column']}` slice:", "",
                  "| value | n | accuracy | balanced accuracy | macro-F1 | macro-F1 95% CI | ECE |",
                  "|---|---|---|---|---|---|---|"]
        for g in slices["groups"]:
            lines.append(f"| {g['value']} | {g['n']} | {_pct(g.get('accuracy'))} | "
                         f"{_pct(g.get('balanced_accuracy'))} | {_pct(g.get('macro_f1'))} | "
                         f"{_ci((g.get('ci95') or {}).get('macro_f1'))} | "
                         f"{_pct(g.get('ece'))} |")
        lines.append("")
    return lines


def _start_weights(cfg: dict[str, Any], init: dict[str, Any] | None) -> str:
    """The recipe line's words on the starting weights (the donor has a line of its own)."""
    if init:
        return ""
    if cfg.get("pretrained"):
        return ", ImageNet-pretrained weights (torchvision)"
    if cfg.get("init") == "auto":
        return (", trained from scratch (`--init auto` found no packaged model of this "
                "architecture and input)")
    if cfg.get("init") in (None, "", "none"):
        return ", trained from scratch"
    return f", initialised from `{Path(str(cfg['init'])).name}`"


def _init_line(init: dict[str, Any], asked: Any) -> str:
    """The card's line on the model a checkpoint was initialised from (``train["init"]``).

    Names the donor (see :func:`init_donor`), never a path of the machine that trained it.
    """
    donor = init_donor(init)
    note = ""
    if donor["name"] is None:
        who = (f"the checkpoint file `{donor['file']}` (not a model registered here)"
               if donor["file"] else "a checkpoint")
    else:
        who = (f"`{donor['name']}`, a model packaged with babyemo (its card: `babyemo models "
               f"card {donor['name']}`)" if donor["packaged"]
               else f"the trained model `{donor['name']}`")
        if asked == "auto":
            who += ", chosen by `--init auto`"
        if donor["how"] == "facts":
            note = (f" The training run recorded the donor as the file `{donor['file']}`, "
                    f"which is `{donor['name']}`: the architecture, dataset, training images, "
                    "epoch, input size and val macro-F1 it recorded are exactly "
                    f"`{donor['name']}`'s.")
        elif donor["how"] == "sha256":
            note = (f" The training run recorded the donor as the file `{donor['file']}`, "
                    f"which is `{donor['name']}`: the sha256 it recorded is that file's.")
        elif donor["how"] == "weights_sha256":
            note = (f" The training run recorded the donor as the file `{donor['file']}`, "
                    f"which is `{donor['name']}`: the digest of the weights it recorded is "
                    f"`{donor['name']}`'s.")
    return (f"- Initialised from {who}: a `{init.get('arch')}` trained on "
            f"`{init.get('dataset')}` ({init.get('n_train')} images, kept at epoch "
            f"{init.get('epoch')}, {init.get('input_size')} px; val macro-F1 "
            f"{_pct(init.get('val_macro_f1'))}); {init.get('tensors_loaded')} of "
            f"{init.get('tensors')} tensors loaded, classifier rows copied for "
            f"{', '.join(init.get('head_classes') or []) or 'no class'}.{note}")


def _members_section(members: list[dict[str, Any]]) -> list[str]:
    """The card's *Ensemble members* section (no lines for a single model)."""
    if not members:
        return []
    lines = ["", "## Ensemble members", "",
             f"The model averages the calibrated probabilities softmax(z / T) of {len(members)} "
             "members, each fed the image at its own input size; its own temperature above "
             "then rescales the average.", "",
             "| member | architecture | input | temperature | dataset | training images | "
             "epoch | val macro-F1 | sha256 |", "|---|---|---|---|---|---|---|---|---|"]
    for m in members:
        fold = m.get("fold")
        fold = f" (fold {fold})" if isinstance(fold, (int, str)) else ""
        lines.append(f"| {m.get('name')}{fold} | "
                     f"`{m.get('arch')}` | {m.get('input_size')} px | "
                     f"{float(m.get('temperature') or 1.0):.3f} | {m.get('dataset') or '—'} | "
                     f"{m.get('n_train') if m.get('n_train') is not None else '—'} | "
                     f"{m.get('epoch') if m.get('epoch') is not None else '—'} | "
                     f"{_pct(m.get('val_macro_f1'))} | `{str(m.get('sha256') or '')[:12]}` |")
    return lines


def model_card(ckpt: Checkpoint, name: str | None = None) -> str:
    """The Markdown model card of a checkpoint.

    Args:
        ckpt: The loaded checkpoint.
        name: The model's registered name, for the title and the command that records an
            evaluation (default: :func:`model_label` of the file, and ``--checkpoint``).

    Returns:
        Markdown text.
    """
    from babyemo.data.sources.catalog import catalogue_notes

    card = ckpt.raw.get("card") if isinstance(ckpt.raw.get("card"), dict) else {}
    train = ckpt.train or {}
    cfg = train.get("config") or {}
    spec = ckpt.input_spec
    n_params = sum(int(t.numel()) for k, t in ckpt.state_dict.items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    size_mb = ckpt.path.stat().st_size / 1e6 if ckpt.path.is_file() else float("nan")
    title = name or model_label(ckpt.path)
    faces = ckpt.faces
    from babyemo.models.ensemble import members_of

    members = members_of(ckpt)
    arch = (f"`{ckpt.arch}` {ckpt.arch_kwargs or ''}" if not members else
            f"`{ckpt.arch}` of {len(members)} members (see *Ensemble members*)")
    lines = [f"# Model card: {title}", "",
             "## Model details", "",
             f"- Architecture: {arch} — {n_params:,} "
             f"parameters, file {size_mb:.1f} MB.",
             f"- Classes (logit order): {', '.join(ckpt.class_names)}.",
             f"- Input: {spec.size}x{spec.size} px, "
             f"{'RGB' if spec.channels == 3 else 'grayscale'}, scaled to [0, 1] then "
             f"normalised with mean {list(spec.mean)} and std {list(spec.std)}.",
             "- Face crops: " + (f"detector `{faces['detector']}`, margin {faces['margin']}, "
                                 f"{'eyes levelled' if faces.get('align') else 'not aligned'}"
                                 if faces else "no (whole images)") + ".",
             f"- Calibration: temperature {ckpt.temperature:.3f}"
             + (f" (fitted on {ckpt.calibration.get('fitted_on')}, n = "
                f"{ckpt.calibration.get('n')}"
                + (", of the same recipe trained on train only"
                   if ckpt.calibration.get("copied_from") else "") + ")"
                if ckpt.calibration else " (uncalibrated)")
             + ".",
             f"- babyemo {ckpt.raw.get('babyemo_version')}, created {ckpt.raw.get('created')}.",
             *_members_section(members),
             "", "## Intended use", "", card.get("intended_use", INTENDED_USE), "",
             "## Out-of-scope use", "", card.get("out_of_scope", OUT_OF_SCOPE), "",
             "## Training data", ""]
    dataset = train.get("dataset")
    splits = "+".join(cfg.get("train_splits") or ["train"])
    if members:
        lines.append(f"- Dataset: `{dataset or 'see the members'}`; each member's training "
                     "set and epoch are in *Ensemble members*.")
    else:
        lines.append(f"- Dataset: `{dataset}`, splits {splits}: {train.get('n_train')} images "
                     f"({train.get('n_val')} held out for validation); manifest sha256 "
                     f"`{str(train.get('manifest_sha256', ''))[:16]}…`.")
    if cfg and not members:
        aug = cfg.get("augment") or {}
        epochs = cfg.get("epochs")
        lines.append(f"- Recipe: {epochs} epoch{'' if epochs == 1 else 's'}, batch "
                     f"{cfg.get('batch_size')}, "
                     f"{cfg.get('optimizer')} lr {cfg.get('lr')} weight decay "
                     f"{cfg.get('weight_decay')}, {cfg.get('scheduler')} schedule, label "
                     f"smoothing {cfg.get('label_smoothing')}, augmentation {aug}, seed "
                     f"{cfg.get('seed')}" + _start_weights(cfg, train.get("init")) + ".")
    init = train.get("init") or {}
    if init:
        lines.append(_init_line(init, cfg.get("init")))
    if card.get("training_data"):
        lines.append(f"- {card['training_data']}")
    notes = catalogue_notes(dataset) if dataset else None
    lines += ["", "### Known biases", ""]
    if card.get("biases"):
        lines.append(card["biases"])
    if notes:
        lines += ["", f"From babyemo's catalogue entry of `{dataset}`: {notes['demographics']}",
                  "", f"Terms: {notes['terms']}"]
    if not card.get("biases") and not notes:
        lines.append("Not documented.")
    lines += ["", "## Metrics", ""]
    evaluations = ckpt.evaluations
    if not evaluations:
        which = f"--model {name}" if name else f"--checkpoint {ckpt.path}"
        lines += ["No evaluation is recorded in this checkpoint, so this card has no test "
                  "metrics. Record one (accuracy, macro-F1 and per-class results on images "
                  "the model never trained on, with 95% intervals from `--bootstrap`) and "
                  f"regenerate the card: `babyemo evaluate {which} --split test --bootstrap "
                  "1000 --record`.", ""]
    val = (ckpt.metrics or {}).get("val") or {}
    oof = (ckpt.metrics or {}).get("out_of_fold") or {}
    if oof:
        lines += [f"Out-of-fold predictions of the members (`{oof.get('file')}`, n = "
                  f"{oof.get('n')}; each image scored by a member that did not train on it): "
                  f"accuracy {oof['accuracy']:.3f}, macro-F1 {oof['macro_f1']:.3f}.", ""]
    if val:
        lines += [f"Validation (model selection) at epoch {ckpt.metrics.get('epoch')}: "
                  f"accuracy {val['accuracy']:.3f}, macro-F1 {val['macro_f1']:.3f}.", ""]
    for ev in evaluations:
        lines += _evaluation_section(ev)
    if card.get("notes"):
        lines += ["## Notes", "", card["notes"], ""]
    return "\n".join(lines).rstrip() + "\n"


def write_model_card(checkpoint: str | os.PathLike[str] | None = None, *,
                     model: str | None = None, out: str | os.PathLike[str] | None = None
                     ) -> tuple[str, Path | None]:
    """Build the model card of a trained model and optionally write it.

    Args:
        checkpoint: A ``.pt`` file (named by its registered name when it has one); or give
            ``model``; neither = the default model.
        model: Name of a trained model in the registry.
        out: Markdown file to write (atomically); ``None``: only return the text.

    Returns:
        ``(markdown, path written or None)``.

    Raises:
        RegistryError: No model given and none registered, or an unknown name.
        CheckpointError: Unusable checkpoint.
        StateError: The registry file (``models.json``) is corrupt.
        ConfigError: ``out`` cannot be written or is the checkpoint (see
            :func:`~babyemo.data.loading.folders.check_outputs`).
    """
    from babyemo.data.loading.folders import check_outputs
    from babyemo.fs import atomic_write_text
    from babyemo.models import store

    path = store.resolve_checkpoint(checkpoint, model)
    check_outputs({"output file": out}, inputs=[path])
    ckpt = store.load(checkpoint, model)
    text = model_card(ckpt, ckpt.name)
    if out is None:
        return text, None
    atomic_write_text(Path(out), text)
    return text, Path(out)
