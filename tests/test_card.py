"""Model cards written from a checkpoint."""

from __future__ import annotations

from babyemo.card import OUT_OF_SCOPE, model_card, write_model_card
from babyemo.checkpoint import load_checkpoint
from babyemo.evaluation import evaluate


def test_card_reports_training_and_recorded_evaluations(checkpoint, prepared, tmp_path):
    from babyemo.data.manifest import read_manifest

    rows = read_manifest(prepared).rows
    meta = tmp_path / "meta.csv"
    meta.write_text("path,source\n" + "".join(
        f"{r.path},{'stock' if i % 2 else 'other'}\n" for i, r in enumerate(rows)))
    report = evaluate(checkpoint, num_workers=0, data=prepared, split="test", precision="fp32",
                      bootstrap=100, slice_by="source", metadata=meta, record=True)
    text, written = write_model_card(checkpoint, out=tmp_path / "card.md")
    assert written == tmp_path / "card.md" and written.read_text() == text
    for heading in ("## Model details", "## Intended use", "## Out-of-scope use",
                    "## Training data", "### Known biases", "## Metrics"):
        assert heading in text
    assert "not for clinical diagnosis" in text.lower() and OUT_OF_SCOPE in text
    assert "angry, crying, happy" in text  # class names in logit order
    m = report.metrics
    assert f"| macro-F1 | {m['macro_f1']:.3f} | {m['ci95']['macro_f1'][0]:.3f}" in text
    lo, hi = m["ci95"]["per_class"]["happy"]["f1"]
    assert f"| happy | {m['per_class']['happy']['precision']:.3f}" in text
    assert f"{lo:.3f}–{hi:.3f}" in text
    assert "Per `source` slice" in text and "| other |" in text and "| stock |" in text
    assert "Confusion matrix (rows = true class, columns = predicted)" in text


def test_card_text_and_no_evaluation(checkpoint):
    from babyemo.checkpoint import read_checkpoint_dict
    from babyemo.io import atomic_open

    text = model_card(load_checkpoint(checkpoint), "tiny")
    assert text.startswith("# Model card: tiny") and "No evaluation is recorded" in text
    data = read_checkpoint_dict(checkpoint)
    data["card"] = {"intended_use": "Only a test.", "biases": "Synthetic colours only."}
    import torch

    with atomic_open(checkpoint, "wb") as f:
        torch.save(data, f)
    text = model_card(load_checkpoint(checkpoint))
    assert "Only a test." in text and "Synthetic colours only." in text
