"""Model cards written from a checkpoint, and the packaged default model in the registry."""

from __future__ import annotations

import pytest

from babyemo.card import OUT_OF_SCOPE, model_card, write_model_card
from babyemo.checkpoint import load_checkpoint
from babyemo.evaluation import evaluate
from babyemo.models import store


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


def test_packaged_model_is_the_default_unless_the_user_chooses(checkpoint, monkeypatch):
    from babyemo.errors import RegistryError

    packaged = {store.PACKAGED_MODEL: {"checkpoint": str(checkpoint), "packaged": True,
                                       "created": ""}}
    monkeypatch.setattr(store, "packaged_models", lambda: {})
    store.register_trained("mine", checkpoint)
    assert store.default_model() == "mine"  # no packaged model: the latest trained
    monkeypatch.setattr(store, "packaged_models", lambda: packaged)
    assert store.default_model() == store.PACKAGED_MODEL
    assert list(store.list_trained()) == [store.PACKAGED_MODEL, "run", "mine"]
    assert store.resolve_checkpoint() == checkpoint
    store.set_default("mine")
    assert store.default_model() == "mine"
    store.register_trained("other", checkpoint.parent / "last.pt")
    assert store.default_model() == "mine"  # the choice survives new trainings
    store.set_default(None)
    assert store.default_model() == store.PACKAGED_MODEL
    with pytest.raises(RegistryError):
        store.set_default("nope")
    with pytest.raises(RegistryError, match="packaged"):
        store.register_trained(store.PACKAGED_MODEL, checkpoint.parent / "last.pt")


def test_the_packaged_model_file_if_present_is_small_and_self_describing():
    models = store.packaged_models()
    if not models:
        pytest.skip("no packaged model in this tree")
    path = models[store.PACKAGED_MODEL]["checkpoint"]
    from pathlib import Path

    assert Path(path).stat().st_size <= 15 * 1024 * 1024
    ckpt = load_checkpoint(path)
    assert ckpt.class_names == ["angry", "crying", "happy"]
    assert ckpt.train["dataset"] == "infant-emotions"
    assert ckpt.train["config"]["train_splits"] == ["train", "val"]
    test = [e for e in ckpt.evaluations if e["split"] == "test" and not e["where"]]
    assert test and test[0]["ci95"] and test[0]["n"] == 154
    assert ckpt.calibration and ckpt.temperature > 0
