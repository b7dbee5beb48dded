import csv
import json
import math
import os

import numpy as np
import pytest

from babyemo.errors import RegistryError
from babyemo.prediction import Predictor, predict_to_files
from babyemo.runtime import Runtime
from tests.conftest import make_image


def _photos(tmp_path):
    d = tmp_path / "photos"
    make_image(d / "a.png", color=(220, 40, 40))
    make_image(d / "sub dir" / "b (1).jpg", color=(40, 40, 220))
    make_image(d / "webp_named.jpg", fmt="WEBP")
    (d / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    (d / "empty.png").write_bytes(b"")
    (d / "notes.txt").write_text("hello")
    (d / ".DS_Store").write_bytes(b"\0\0")
    return d


def test_predict_csv_has_a_row_per_file_and_errors(checkpoint, tmp_path):
    photos = _photos(tmp_path)
    predictor = Predictor(checkpoint, runtime=Runtime(precision="fp32", batch_size=2))
    out = tmp_path / "out.csv"
    summary = predict_to_files([photos], predictor, csv_out=out, json_out=tmp_path / "o.json")
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0].keys()) == ["path", "label", "confidence", "prob_angry", "prob_crying",
                                    "prob_happy", "face", "error", "error_detail"]
    assert {r["face"] for r in rows} == {""}  # no face detection: the column is empty
    by_name = {r["path"].rsplit("/", 1)[-1]: r for r in rows}
    # notes.txt is not named like an image: skipped and counted, not an error row
    assert set(by_name) == {"a.png", "b (1).jpg", "webp_named.jpg", "broken.jpg", "empty.png"}
    for ok in ("a.png", "b (1).jpg", "webp_named.jpg"):
        r = by_name[ok]
        assert r["error"] == r["error_detail"] == "" and r["label"] in ("angry", "crying", "happy")
        probs = [float(r[f"prob_{c}"]) for c in ("angry", "crying", "happy")]
        assert math.isclose(sum(probs), 1, abs_tol=2e-3) and float(r["confidence"]) == max(probs)
    for bad in ("broken.jpg", "empty.png"):
        assert by_name[bad]["error"] and by_name[bad]["label"] == ""
    assert (by_name["empty.png"]["error"], by_name["empty.png"]["error_detail"]) == (
        "empty_file", "empty file")
    assert by_name["broken.jpg"]["error"] == "truncated"  # a JPEG start, then 20 bytes
    assert summary.n_files == 5 and summary.n_errors == 2 and summary.n_hidden_skipped == 1
    assert summary.n_non_image_skipped == 1 and summary.n_no_face == 0
    assert summary.n_failed == 2 and summary.error_counts == {"empty_file": 1, "truncated": 1}
    assert sum(summary.label_counts.values()) == 3
    data = json.loads((tmp_path / "o.json").read_text())
    assert len(data) == 5 and sum(d["error"] is not None for d in data) == 2
    assert all("face" in d and d["face"] is None for d in data)  # no face detection
    assert {d["error_detail"] for d in data if d["error"]} == {
        by_name["broken.jpg"]["error_detail"], "empty file"}


def test_all_files_tries_every_file_and_named_files_are_always_tried(checkpoint, tmp_path):
    photos = _photos(tmp_path)
    predictor = Predictor(checkpoint, runtime=Runtime(precision="fp32", workers=0))
    summary = predict_to_files([photos], predictor, csv_out=tmp_path / "all.csv",
                               all_files=True)
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(
        (tmp_path / "all.csv").open())}
    assert (rows["notes.txt"]["error"], rows["notes.txt"]["error_detail"]) == (
        "not_an_image", "not an image: the file holds text")
    assert summary.n_files == 6 and summary.n_non_image_skipped == 0
    named = predict_to_files([photos / "notes.txt", photos / "a.png"], predictor,
                             csv_out=tmp_path / "named.csv")
    assert named.n_files == 2 and named.n_errors == 1 and named.n_non_image_skipped == 0


def test_options_are_checked_before_the_model_is_loaded(tmp_path, monkeypatch):
    from babyemo import prediction
    from babyemo.errors import ConfigError, DataError

    def no_loading(*args, **kwargs):
        raise AssertionError("the model was loaded before the options were checked")

    monkeypatch.setattr(prediction.store, "load", no_loading)
    for kwargs, match in (({"no_face_fallback": "skip"}, "no-face fallback"),
                          ({"min_confidence": 2.0}, r"\[0, 1\]"),
                          ({"save_crops": __file__}, "is a file, not a folder")):
        with pytest.raises(ConfigError, match=match):
            Predictor(**kwargs)
    for runtime, match in (({"readers": 0}, "'readers' must be an int >= 1"),
                           ({"batch_size": 0}, "'batch_size' must be an int >= 1")):
        with pytest.raises(ConfigError, match=match):
            Predictor(runtime=Runtime(**runtime))
    predictor = object.__new__(Predictor)  # never used: inputs and outputs fail first
    with pytest.raises(DataError, match="No such file or folder"):
        predict_to_files([tmp_path / "missing"], predictor, csv_out=tmp_path / "o.csv")
    make_image(tmp_path / "a.png")
    with pytest.raises(ConfigError, match="csv_out .* is a folder"):
        predict_to_files([tmp_path / "a.png"], predictor, csv_out=tmp_path)
    assert not (tmp_path / "o.csv").exists()


def test_prediction_does_not_depend_on_batch_neighbours(checkpoint, tmp_path):
    photos = _photos(tmp_path)
    one = Predictor(checkpoint, runtime=Runtime(precision="fp32", batch_size=1))
    many = Predictor(checkpoint, runtime=Runtime(precision="fp32", batch_size=8))
    files = sorted(p for p in photos.rglob("*") if p.is_file())
    a = {p.path: p for p in one.predict_files(files)}
    b = {p.path: p for p in many.predict_files(files)}
    assert a.keys() == b.keys()
    for k in a:
        assert a[k].label == b[k].label and a[k].error == b[k].error
        if a[k].error is None:
            assert a[k].probs == pytest.approx(b[k].probs, abs=1e-5)


def test_no_model_at_all_is_a_clear_error(monkeypatch):
    from babyemo.models import store

    monkeypatch.setattr(store, "packaged_models", lambda: {})  # a tree without weights
    with pytest.raises(RegistryError, match="no trained model"):
        Predictor()


def test_min_confidence_labels_uncertain_and_keeps_top_class(tiny_arch, tmp_path):
    from babyemo.errors import ConfigError
    from babyemo.prediction import UNCERTAIN
    from tests.conftest import make_checkpoint

    ckpt = make_checkpoint(tmp_path / "m.pt", tiny_arch)
    photos = _photos(tmp_path)
    plain = {
        p.path: p
        for p in Predictor(ckpt, runtime=Runtime(precision="fp32", workers=0)).predict_files(
            sorted(photos.rglob("*.png")) + sorted(photos.rglob("*.jpg"))
        )
    }
    ok = [p for p in plain.values() if p.error is None]
    threshold = float(np.median([p.confidence for p in ok])) + 1e-6
    predictor = Predictor(
        ckpt, min_confidence=threshold, runtime=Runtime(precision="fp32", workers=0)
    )
    out = tmp_path / "out.csv"
    summary = predict_to_files([photos], predictor, csv_out=out, json_out=tmp_path / "o.json")
    rows = list(csv.DictReader(out.open()))
    assert list(rows[0])[:4] == ["path", "label", "confidence", "top_class"]
    good = [r for r in rows if not r["error"]]
    for r in good:
        low = plain[r["path"]].confidence < threshold  # (the CSV value is rounded)
        assert r["label"] == (UNCERTAIN if low else r["top_class"])
        assert r["top_class"] == plain[r["path"]].label
    assert any(r["label"] == UNCERTAIN for r in good)
    assert summary.label_counts.get(UNCERTAIN) == sum(r["label"] == UNCERTAIN for r in good)
    data = json.loads((tmp_path / "o.json").read_text())
    assert all("top_class" in d for d in data)
    with pytest.raises(ConfigError, match=r"\[0, 1\]"):
        Predictor(ckpt, min_confidence=1.5)


def test_probabilities_are_temperature_scaled(tiny_arch, tmp_path):
    from tests.conftest import make_checkpoint

    files = [
        make_image(tmp_path / "a.png", color=(220, 40, 40)),
        make_image(tmp_path / "b.png", color=(40, 40, 220)),
    ]
    plain = list(
        Predictor(
            make_checkpoint(tmp_path / "m.pt", tiny_arch), runtime=Runtime(precision="fp32")
        ).predict_files(files)
    )
    hot = Predictor(
        make_checkpoint(tmp_path / "t.pt", tiny_arch, temperature=0.5),
        runtime=Runtime(precision="fp32"),
    )
    assert hot.model.temperature == 0.5
    for p, q in zip(plain, hot.predict_files(files), strict=True):
        logp = np.log(np.array(p.probs))
        expected = np.exp(2 * logp) / np.exp(2 * logp).sum()
        assert q.probs == pytest.approx(tuple(expected), abs=1e-5)
        assert q.label == p.label and q.top_class == p.label


def test_readers_give_the_rows_of_one_reader_in_input_order(checkpoint, tmp_path):
    import torch

    photos = _photos(tmp_path)
    for i in range(9):  # enough files for several batches per stream
        make_image(photos / "more" / f"{i}.png", color=(20 * i, 255 - 20 * i, 90))
    files = sorted(p for p in photos.rglob("*") if p.is_file())
    threads = torch.get_num_threads()
    one = list(
        Predictor(
            checkpoint, runtime=Runtime(precision="fp32", batch_size=2, readers=1)
        ).predict_files(files)
    )
    three = Predictor(checkpoint, runtime=Runtime(precision="fp32", batch_size=2, readers=3))
    assert three.model.readers == 3
    rows = list(three.predict_files(files))
    assert [r.path for r in rows] == [r.path for r in one] == [str(f) for f in files]
    for a, b in zip(one, rows, strict=True):
        assert (a.label, a.error) == (b.label, b.error)
        if a.error is None:
            assert a.probs == pytest.approx(b.probs, abs=1e-5)
    assert sum(r.error is not None for r in rows) == 4  # broken, empty, notes, .DS_Store
    assert {r.error for r in rows if r.error} == {"truncated", "empty_file", "not_an_image"}
    assert torch.get_num_threads() == threads  # the readers. 1-thread setting is undone


def test_default_readers_one_per_thread_on_cpu_else_one(checkpoint):
    import torch

    from babyemo.errors import ConfigError

    cpu = Predictor(checkpoint, runtime=Runtime(device="cpu", workers=0))
    assert cpu.model.readers == max(1, min(os.cpu_count() or 1, torch.get_num_threads()))
    assert Predictor(checkpoint, runtime=Runtime(device="cpu", workers=1)).model.readers == 1
    with pytest.raises(ConfigError, match="readers"):
        Predictor(checkpoint, runtime=Runtime(readers=0))


def test_rows_keep_the_input_order_with_skipped_entries_where_they_were_found(checkpoint,
                                                                             tmp_path):
    """Issue 14: skipped entries (a FIFO, a broken link) were written after every
    predicted row; now each row stands where its entry was found."""
    import os

    photos = tmp_path / "in"
    make_image(photos / "a.png")
    os.symlink(photos / "gone.png", photos / "b.png")  # a broken link: an error row
    make_image(photos / "c.png", color=(10, 200, 30))
    out = tmp_path / "o.csv"
    summary = predict_to_files([photos], Predictor(checkpoint, runtime=Runtime(
        precision="fp32", readers=2, batch_size=1)), csv_out=out)
    rows = list(csv.DictReader(out.open()))
    assert [r["path"].rsplit("/", 1)[-1] for r in rows] == ["a.png", "b.png", "c.png"]
    assert rows[1]["error"] == "broken_link" and summary.n_errors == 1
