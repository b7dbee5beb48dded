"""The trained-model registry: packaged models, the default model, names and files."""

from __future__ import annotations

from pathlib import Path

import pytest

from babyemo.checkpoint import load_checkpoint
from babyemo.errors import RegistryError
from babyemo.models import store


def test_packaged_model_is_the_default_unless_the_user_chooses(checkpoint, monkeypatch):
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


def test_the_packaged_models_are_small_and_self_describing():
    models = store.packaged_models()
    if not models:
        pytest.skip("no packaged model in this tree")
    assert set(models) == {store.PACKAGED_MODEL, store.PACKAGED_PRETRAINED}
    for rec in models.values():
        assert Path(rec["checkpoint"]).stat().st_size <= 15 * 1024 * 1024
    ckpt = load_checkpoint(models[store.PACKAGED_MODEL]["checkpoint"])
    assert ckpt.class_names == ["angry", "crying", "happy"] and ckpt.faces is not None
    assert ckpt.train["dataset"] == "infant-emotions"
    assert ckpt.train["config"]["train_splits"] == ["train", "val"]
    assert ckpt.train["init"]["dataset"] == "fer2013"
    test = [e for e in ckpt.evaluations
            if e["dataset"] == "infant-emotions" and e["split"] == "test" and not e["where"]]
    assert test and test[0]["ci95"] and test[0]["n"] == 154 and test[0]["slices"]
    assert ckpt.calibration and ckpt.calibration["copied_from"] and ckpt.temperature > 0
    fer = load_checkpoint(models[store.PACKAGED_PRETRAINED]["checkpoint"])
    assert fer.arch == ckpt.arch and fer.num_classes == 7 and fer.train["dataset"] == "fer2013"
    private = [e for e in fer.evaluations if e["where"].get("fer_subset") == "PrivateTest"]
    assert {e["n"] for e in private} == {3589, 3257}  # as published, and without copies
    assert store.default_model() == store.PACKAGED_MODEL


def test_checkpoint_or_model_takes_a_file_or_a_name(checkpoint, tmp_path):
    assert store.checkpoint_or_model(checkpoint) == checkpoint
    store.register_trained("named", checkpoint)
    assert store.checkpoint_or_model("named") == checkpoint.resolve()
    with pytest.raises(RegistryError, match="neither a checkpoint file nor"):
        store.checkpoint_or_model(tmp_path / "nothing.pt")
