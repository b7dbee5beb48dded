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


def test_the_packaged_model_file_if_present_is_small_and_self_describing():
    models = store.packaged_models()
    if not models:
        pytest.skip("no packaged model in this tree")
    path = models[store.PACKAGED_MODEL]["checkpoint"]
    assert Path(path).stat().st_size <= 15 * 1024 * 1024
    ckpt = load_checkpoint(path)
    assert ckpt.class_names == ["angry", "crying", "happy"]
    assert ckpt.train["dataset"] == "infant-emotions"
    assert ckpt.train["config"]["train_splits"] == ["train", "val"]
    test = [e for e in ckpt.evaluations if e["split"] == "test" and not e["where"]]
    assert test and test[0]["ci95"] and test[0]["n"] == 154
    assert ckpt.calibration and ckpt.temperature > 0


def test_checkpoint_or_model_takes_a_file_or_a_name(checkpoint, tmp_path):
    assert store.checkpoint_or_model(checkpoint) == checkpoint
    store.register_trained("named", checkpoint)
    assert store.checkpoint_or_model("named") == checkpoint.resolve()
    with pytest.raises(RegistryError, match="neither a checkpoint file nor"):
        store.checkpoint_or_model(tmp_path / "nothing.pt")
