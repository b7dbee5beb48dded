"""Which manifest a command uses: the model's own for evaluate/calibrate, never another
process's "last prepared" (issue 12)."""

from __future__ import annotations

import shutil

import pytest

from babyemo import paths
from babyemo.data.preparation import lookup
from babyemo.data.preparation.prepare import prepare
from babyemo.errors import ManifestError
from babyemo.fs import sha256_file
from tests.conftest import make_imagefolder


def _train_record(manifest):
    return {"manifest": str(manifest.resolve()), "manifest_sha256": sha256_file(manifest),
            "dataset": "kids"}


def test_given_data_wins(prepared, tmp_path):
    choice = lookup.manifest_for_model(tmp_path / "x.csv", _train_record(prepared), "m")
    assert choice == lookup.ManifestChoice(tmp_path / "x.csv", lookup.GIVEN)
    assert lookup.manifest_for_training(prepared).source == lookup.GIVEN


def test_the_recorded_manifest_not_the_last_prepared(prepared, tmp_path):
    record = _train_record(prepared)
    other = prepare(make_imagefolder(tmp_path / "other", per_class=4), out=tmp_path / "o")
    assert lookup.last_prepared() == other.manifest_path.resolve()  # another prepare since
    choice = lookup.manifest_for_model(None, record, "m")
    assert choice.path == prepared.resolve() and choice.source == lookup.RECORDED
    assert "recorded in the checkpoint" in choice.describe()


def test_a_changed_manifest_is_refused_without_data(prepared):
    record = _train_record(prepared)
    prepared.write_text(prepared.read_text().replace(",test,", ",train,", 1))
    with pytest.raises(ManifestError, match="has changed since") as err:
        lookup.manifest_for_model(None, record, "my-model")
    assert "my-model" in err.value.message and f"--data {prepared.resolve()}" in err.value.hint


def test_a_missing_manifest_is_found_by_its_bytes_in_the_prepared_folder(prepared):
    record = _train_record(prepared)
    copy = paths.prepared_dir() / "kids" / "manifest.csv"
    copy.parent.mkdir(parents=True)
    shutil.copy(prepared, copy)
    record["manifest"] = "/elsewhere/on/another/machine/manifest.csv"
    choice = lookup.manifest_for_model(None, record, "m")
    assert choice.path == copy and choice.source == lookup.FOUND


def test_a_missing_manifest_without_a_copy_says_what_to_pass(prepared):
    record = {**_train_record(prepared), "manifest": "/gone/manifest.csv"}
    assert lookup.manifest_for_model(None, record, "m").path == prepared.resolve()  # same bytes
    record["manifest_sha256"] = "0" * 64  # no prepared manifest has these bytes
    with pytest.raises(ManifestError, match="not on this machine") as err:
        lookup.manifest_for_model(None, record, "m")
    assert "--data" in err.value.hint and "babyemo data prepare kids" in err.value.hint
    with pytest.raises(ManifestError, match="records no training manifest"):
        lookup.manifest_for_model(None, {}, "m")


def test_last_prepared_hints_do_not_mislead(prepared):
    shutil.rmtree(prepared.parent)  # prepared, then deleted: not "run prepare first"
    with pytest.raises(ManifestError, match="no longer exists") as err:
        lookup.last_prepared()
    assert "deleted or moved" in err.value.message and "--data" in err.value.hint
