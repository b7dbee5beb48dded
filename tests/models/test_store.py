"""The trained-model registry: packaged models, the default model, names and files."""

from __future__ import annotations

from pathlib import Path

import pytest

from babyemo.calibration import OUT_OF_FOLD
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
    assert set(models) == {store.PACKAGED_MODEL, store.PACKAGED_INIT}
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
    # its temperature: fitted on out-of-fold logits of its recipe, one per training image
    assert ckpt.calibration["fitted_on"] == OUT_OF_FOLD and ckpt.temperature > 0
    assert ckpt.calibration["n"] == ckpt.train["n_train"] == 866
    fer = load_checkpoint(models[store.PACKAGED_INIT]["checkpoint"])
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


# --------------------------------------------------------------------------- shared home

_RACER = """
import sys
from babyemo import paths
from babyemo.models import store
tag, n = sys.argv[1], int(sys.argv[2])
for i in range(n):
    store.register_trained(f"{tag}-{i}", f"/runs/{tag}-{i}/best.pt", arch="x")
    paths.update_state(**{f"{tag}-{i}": i})
"""


def test_two_processes_registering_at_once_lose_no_entry(tmp_path):
    """Issue 12: the store and the state are read-modify-written under a lock."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "BABYEMO_HOME": str(tmp_path / "home")}
    n = 40
    procs = [subprocess.Popen([sys.executable, "-c", _RACER, tag, str(n)], env=env,
                              stderr=subprocess.PIPE, text=True) for tag in ("a", "b")]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    os.environ["BABYEMO_HOME"] = env["BABYEMO_HOME"]  # (restored by the autouse fixture)
    from babyemo import paths

    names = {n_ for n_ in store.list_trained() if not n_.startswith("babyemo-")}
    assert names == {f"{t}-{i}" for t in "ab" for i in range(n)}
    assert len(paths.read_state()) == 2 * n
    assert (tmp_path / "home" / "models.json.bak").is_file()


def test_a_corrupt_store_is_an_error_and_is_never_rewritten(tmp_path):
    from babyemo import paths
    from babyemo.errors import StateError

    store.register_trained("kept", tmp_path / "a.pt")
    store.register_trained("also-kept", tmp_path / "b.pt")
    good = store._file().read_text()
    broken = good.replace('"kept": {', '"kept": {,', 1)  # one stray comma
    store._file().write_text(broken)
    with pytest.raises(StateError, match="models.json is not valid JSON") as err:
        store.list_trained()
    assert "models.json.bak" in err.value.hint  # the previous version, kept on every write
    with pytest.raises(StateError):
        store.register_trained("new", tmp_path / "c.pt")
    assert store._file().read_text() == broken  # nothing rewritten from a failed read
    assert "kept" in (paths.home() / "models.json.bak").read_text()


def test_a_deleted_checkpoint_does_not_block_its_name(tmp_path, caplog):
    old = tmp_path / "old" / "best.pt"
    old.parent.mkdir()
    old.write_bytes(b"x")
    store.register_trained("run", old)
    with pytest.raises(RegistryError, match="already exists"):
        store.register_trained("run", tmp_path / "new" / "best.pt")
    old.unlink()
    store.register_trained("run", tmp_path / "new" / "best.pt")
    assert store.get_trained("run")["checkpoint"] == str((tmp_path / "new" / "best.pt").resolve())
    assert "no longer exists" in caplog.text
