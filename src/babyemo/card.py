"""Model cards: a Markdown description of a trained model, written from its checkpoint.

The layout follows Mitchell et al. 2019, *Model Cards for Model Reporting* (FAT* '19):
model details, intended use and out-of-scope use, training data and its known biases,
metrics with their uncertainty (here 95% bootstrap intervals) overall, per class and per
slice, and calibration. Everything comes from the checkpoint itself: its training record,
the evaluations stored with ``babyemo evaluate --record`` and an optional ``card`` entry of
free text (``intended_use``, ``out_of_scope``, ``training_data``, ``biases``, ``notes``),
so a card can be regenerated at any time and cannot drift from the weights.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from babyemo.checkpoint import Checkpoint, load_checkpoint

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
                  f" (fitted on {cal.get('fitted_on') or 'nothing: uncalibrated'}).", ""]
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


def model_card(ckpt: Checkpoint, name: str | None = None) -> str:
    """The Markdown model card of a checkpoint.

    Args:
        ckpt: The loaded checkpoint.
        name: Model name for the title (default: the file name).

    Returns:
        Markdown text.
    """
    from babyemo.data.inspect import catalogue_notes

    card = ckpt.raw.get("card") if isinstance(ckpt.raw.get("card"), dict) else {}
    train = ckpt.train or {}
    cfg = train.get("config") or {}
    spec = ckpt.input_spec
    n_params = sum(int(t.numel()) for k, t in ckpt.state_dict.items()
                   if not k.endswith(("running_mean", "running_var", "num_batches_tracked")))
    size_mb = ckpt.path.stat().st_size / 1e6 if ckpt.path.is_file() else float("nan")
    title = name or ckpt.path.stem
    faces = ckpt.faces
    lines = [f"# Model card: {title}", "",
             "## Model details", "",
             f"- Architecture: `{ckpt.arch}` {ckpt.arch_kwargs or ''} — {n_params:,} "
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
             "", "## Intended use", "", card.get("intended_use", INTENDED_USE), "",
             "## Out-of-scope use", "", card.get("out_of_scope", OUT_OF_SCOPE), "",
             "## Training data", ""]
    dataset = train.get("dataset")
    splits = "+".join(cfg.get("train_splits") or ["train"])
    lines.append(f"- Dataset: `{dataset}`, splits {splits}: {train.get('n_train')} images "
                 f"({train.get('n_val')} held out for validation); manifest sha256 "
                 f"`{str(train.get('manifest_sha256', ''))[:16]}…`.")
    if cfg:
        aug = cfg.get("augment") or {}
        lines.append(f"- Recipe: {cfg.get('epochs')} epochs, batch {cfg.get('batch_size')}, "
                     f"{cfg.get('optimizer')} lr {cfg.get('lr')} weight decay "
                     f"{cfg.get('weight_decay')}, {cfg.get('scheduler')} schedule, label "
                     f"smoothing {cfg.get('label_smoothing')}, augmentation {aug}, seed "
                     f"{cfg.get('seed')}"
                     + (f", initialised from `{Path(cfg['init']).name}`" if cfg.get("init")
                        else "") + ".")
    init = train.get("init") or {}
    if init:
        lines.append(f"- Initialised from a `{init.get('arch')}` trained on "
                     f"`{init.get('dataset')}` ({init.get('n_train')} images, "
                     f"{init.get('epoch')} epochs, "
                     f"{init.get('input_size')} px; val macro-F1 "
                     f"{_pct(init.get('val_macro_f1'))}): {init.get('tensors_loaded')} of "
                     f"{init.get('tensors')} tensors loaded, classifier rows copied for "
                     f"{', '.join(init.get('head_classes') or []) or 'no class'}.")
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
        lines += ["No evaluation is recorded in this checkpoint (run `babyemo evaluate "
                  "--record`).", ""]
    val = (ckpt.metrics or {}).get("val") or {}
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
        checkpoint: A ``.pt`` file; or give ``model``; neither = the default model.
        model: Name of a trained model in the registry.
        out: Markdown file to write (atomically); ``None``: only return the text.

    Returns:
        ``(markdown, path written or None)``.

    Raises:
        RegistryError: No model given and none registered, or an unknown name.
        CheckpointError: Unusable checkpoint.
    """
    from babyemo.io import atomic_write_text
    from babyemo.models.store import default_model, resolve_checkpoint

    path = resolve_checkpoint(checkpoint, model)
    name = model or (None if checkpoint is not None else default_model())
    text = model_card(load_checkpoint(path), name)
    if out is None:
        return text, None
    atomic_write_text(Path(out), text)
    return text, Path(out)
