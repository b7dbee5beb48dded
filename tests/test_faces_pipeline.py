"""Face crops through prepare, train, evaluate and predict.

Synthetic tests use a fake detector registered through the public decorator: it finds a
"face" wherever the image's top-left pixel is not pure white, and none otherwise. The
real-data tests run the real YuNet detector (OpenCV) on real photos.
"""

from __future__ import annotations

import csv

import pytest
from PIL import Image

from babyemo.checkpoint import load_checkpoint
from babyemo.config import TrainConfig
from babyemo.data.preparation.face_index import annotate_faces
from babyemo.data.preparation.manifest import read_manifest, write_manifest
from babyemo.data.preparation.prepare import prepare
from babyemo.errors import DataError
from babyemo.evaluation import evaluate
from babyemo.faces import Face, register_detector
from babyemo.prediction import Predictor, predict_to_files
from babyemo.runtime import Runtime
from babyemo.training import train
from tests.conftest import make_image, make_imagefolder

FAKE = "fake_corner_detector"


class _Fake:
    name = FAKE

    def detect(self, image: Image.Image) -> list[Face]:
        if image.convert("RGB").getpixel((0, 0)) == (255, 255, 255):
            return []
        w, h = image.size
        eyes = ((w * 0.35, h * 0.4), (w * 0.65, h * 0.4))
        return [Face(box=(w * 0.2, h * 0.2, w * 0.6, h * 0.6), score=0.9,
                     landmarks=(*eyes, (w * 0.5, h * 0.5), (w * 0.4, h * 0.6),
                                (w * 0.6, h * 0.6)))]


register_detector(FAKE, description="test: a centred face unless the corner is white")(_Fake)


@pytest.fixture
def face_manifest(tmp_path):
    root = make_imagefolder(tmp_path / "images", per_class=12, size=(48, 48))
    # two photos without a "face": white top-left pixel
    for p in sorted(root.glob("happy/*.png"))[:2]:
        img = Image.open(p).convert("RGB")
        img.putpixel((0, 0), (255, 255, 255))
        img.save(p)
    return prepare(root, out=tmp_path / "prepared", split=(0.5, 0.25, 0.25), seed=0,
                   faces=FAKE).manifest_path


def test_prepare_stores_face_boxes(face_manifest):
    m = read_manifest(face_manifest)
    assert m.has_faces and m.info["faces"]["detector"] == FAKE
    assert m.info["faces"]["n_with_face"] == 34 and m.info["faces"]["n_images"] == 36
    with_face = [r for r in m.rows if r.n_faces]
    assert with_face[0].face["box"] == pytest.approx((9.6, 9.6, 28.8, 28.8))
    assert len(with_face[0].face["landmarks"]) == 5
    assert sum(1 for r in m.rows if r.n_faces == 0 and r.face is None) == 2
    header = face_manifest.read_text().splitlines()[0].split(",")
    assert header[-7:] == ["n_faces", "face_x", "face_y", "face_w", "face_h", "face_score",
                           "face_landmarks"]


def test_inspect_reports_detection_rate(face_manifest):
    from babyemo.data.inspection.report import inspect_dataset

    faces = inspect_dataset(face_manifest).faces
    assert faces["detector"] == FAKE and faces["with_face"] == 34
    assert faces["multi_face"] == 0 and faces["tiny_face"] == 36 - 2  # 28.8-px boxes < 32
    m = read_manifest(face_manifest)
    happy_splits = {r.split for r in m.rows if r.label == "happy" and not r.n_faces}
    for split in happy_splits:
        n = sum(1 for r in m.rows if r.label == "happy" and r.split == split)
        missing = sum(1 for r in m.rows if r.label == "happy" and r.split == split
                      and not r.n_faces)
        assert faces["rate"][split]["happy"] == pytest.approx(1 - missing / n)
    assert faces["rate"]["train"]["angry"] == 1.0
    assert len(faces["no_face_examples"]) == 2


def test_train_on_crops_records_face_settings_and_predict_crops_the_same(
        face_manifest, tiny_arch, tmp_path):
    result = train(TrainConfig(data=str(face_manifest), arch=tiny_arch, epochs=1, batch_size=8,
                               precision="fp32", out=str(tmp_path / "run"), face_margin=0.1))
    ckpt = load_checkpoint(result.best_checkpoint)
    assert ckpt.faces == {"detector": FAKE, "margin": 0.1, "align": True}
    assert ckpt.crop_spec.margin == 0.1
    report = evaluate(result.best_checkpoint, data=face_manifest, split="all")
    assert report.metrics["n"] == 36

    photos = tmp_path / "photos"
    make_image(photos / "one.png", color=(200, 30, 30), size=(60, 40))
    white = make_image(photos / "noface.png", color=(200, 30, 30), size=(60, 40))
    img = Image.open(white).convert("RGB")
    img.putpixel((0, 0), (255, 255, 255))
    img.save(white)
    out = tmp_path / "pred.csv"
    crops = tmp_path / "crops"
    predictor = Predictor(result.best_checkpoint, save_crops=crops, no_face_fallback="error",
                          runtime=Runtime(precision="fp32"))
    summary = predict_to_files([photos], predictor, csv_out=out)
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(out.open())}
    assert rows["noface.png"]["error"] == "no_face" and rows["noface.png"]["label"] == ""
    assert rows["noface.png"]["face"] == "" and rows["one.png"]["face"] == "detected"
    one = rows["one.png"]
    assert one["error"] == "" and one["face_index"] == "0"
    assert [float(one[k]) for k in ("box_x", "box_y", "box_w", "box_h")] == \
        pytest.approx([12.0, 8.0, 36.0, 24.0], abs=0.05)
    assert float(one["det_score"]) == pytest.approx(0.9)
    assert summary.n_no_face == 1 and summary.n_failed == 1 and summary.n_rows == 2
    saved = list(crops.iterdir())
    assert len(saved) == 1 and Image.open(saved[0]).size == (24, 24)  # the input size

    for fallback in ("whole_image", "full"):  # the default, and its old name
        full = Predictor(result.best_checkpoint, no_face_fallback=fallback,
                         runtime=Runtime(precision="fp32"))
        assert full.face_detection.fallback == "whole_image"
        by_name = {p.path.rsplit("/", 1)[-1]: p for p in full.predict_files(
            sorted(photos.iterdir()))}
        assert by_name["noface.png"].error is None and by_name["noface.png"].face_index is None
        assert by_name["noface.png"].box == (0.0, 0.0, 60.0, 40.0)
        assert (by_name["noface.png"].face, by_name["one.png"].face) == ("whole_image",
                                                                          "detected")
    default = Predictor(result.best_checkpoint, runtime=Runtime(precision="fp32"))
    assert default.face_detection.fallback == "whole_image"

    whole = Predictor(result.best_checkpoint, faces="none", runtime=Runtime(precision="fp32"))
    assert whole.face_detection is None
    preds = list(whole.predict_files(sorted(photos.iterdir())))
    assert all(p.error is None and p.face is None for p in preds)


def test_faces_asked_but_manifest_has_none(prepared, tiny_arch, tmp_path):
    with pytest.raises(DataError, match="prepare --faces yunet"):
        train(TrainConfig(data=str(prepared), arch=tiny_arch, epochs=1, faces="yunet",
                          out=str(tmp_path / "r")))


@pytest.mark.realdata
def test_yunet_faces_train_and_predict_on_real_photos(infant_dir, baby_photos_dir, shared_data,
                                                  tiny_arch, tmp_path, monkeypatch):
    pytest.importorskip("cv2")
    monkeypatch.setenv("BABYEMO_MODELS", str(shared_data.parent / "models"))
    full = prepare(infant_dir, out=tmp_path / "all", seed=0).manifest
    taken: dict[tuple[str, str], int] = {}
    rows = []
    for row in full.rows:
        key = (row.split, row.label)
        if row.split != "test" and taken.get(key, 0) < (6 if row.split == "train" else 2):
            taken[key] = taken.get(key, 0) + 1
            rows.append(row)
    faces = annotate_faces(rows, full.root, "yunet")
    assert faces["n_images"] == 24 and faces["n_with_face"] >= 18
    boxes = [r.face["box"] for r in rows if r.face]
    assert all(w > 40 and h > 40 for _, _, w, h in boxes)  # 512-px face-centred photos
    manifest_path = write_manifest(rows, tmp_path / "subset", info={**full.info, "faces": faces})
    run = train(TrainConfig(data=str(manifest_path), arch=tiny_arch, epochs=1, batch_size=8,
                            out=str(tmp_path / "run")))
    photos = sorted(baby_photos_dir.iterdir())[:20]
    predictor = Predictor(run.best_checkpoint)
    assert predictor.face_detection is not None and predictor.face_detection.detector == "yunet"
    out = tmp_path / "pred.csv"
    summary = predict_to_files(photos, predictor, csv_out=out)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    files = {r["path"] for r in rows}
    assert len(files) == 20 and summary.n_files == 20
    assert not any(r["error"] for r in rows)  # an answer for every photo
    whole = [r for r in rows if r["face"] == "whole_image"]
    assert summary.n_no_face == len(whole) <= 6
    assert all(r["face_index"] == "" and r["det_score"] == "" for r in whole)
    face_rows = [r for r in rows if r["face"] == "detected"]
    assert len(face_rows) == summary.n_rows - len(whole) >= 14
    assert all(float(r["det_score"]) >= 0.6 and r["face_index"] != "" for r in face_rows)
    assert summary.detect_seconds > 0


TWO = "fake_two_face_detector"


@register_detector(TWO, description="test: two faces when the corner is black")
class _TwoFaces(_Fake):
    name = TWO

    def detect(self, image: Image.Image) -> list[Face]:
        faces = super().detect(image)
        if image.convert("RGB").getpixel((0, 0)) == (0, 0, 0):
            x, y, w, h = faces[0].box
            faces.append(Face(box=(x / 2, y / 2, w / 2, h / 2), score=0.8,
                              landmarks=faces[0].landmarks))
        return faces


def test_predict_counts_files_with_several_faces(face_manifest, tiny_arch, tmp_path):
    result = train(TrainConfig(data=str(face_manifest), arch=tiny_arch, epochs=1, batch_size=8,
                               precision="fp32", out=str(tmp_path / "run"), faces="none"))
    photos = tmp_path / "photos"
    photos.mkdir()
    for i, corner in enumerate([(0, 0, 0), (0, 0, 0), (10, 20, 30), (255, 255, 255)]):
        img = Image.new("RGB", (40, 40), (120, 90, 60))
        img.putpixel((0, 0), corner)
        img.save(photos / f"p{i}.png")
    summary = predict_to_files([photos], Predictor(result.best_checkpoint, faces=TWO,
                                                   runtime=Runtime(precision="fp32")),
                               csv_out=tmp_path / "out.csv")
    assert summary.n_rows == 2 + 2 + 1 + 1
    assert summary.n_multi_face == 2 and summary.n_no_face == 1


def test_evaluate_no_face_fallback_whole_image_or_no_answer(face_manifest, tiny_arch,
                                                            tmp_path):
    """The 2 of 36 images without a face box: classified whole (default), or without an
    answer and wrong in every metric (``error``), as ``predict`` would leave them."""
    import json

    import numpy as np
    from typer.testing import CliRunner

    from babyemo.cli import app

    result = train(TrainConfig(data=str(face_manifest), arch=tiny_arch, epochs=1, batch_size=8,
                               precision="fp32", out=str(tmp_path / "run")))
    whole = evaluate(result.best_checkpoint, data=face_manifest, split="all")
    out = tmp_path / "eval"
    error = evaluate(result.best_checkpoint, data=face_manifest, split="all",
                     no_face_fallback="error", bootstrap=100, out=out)
    assert whole.no_face == {"fallback": "whole_image", "n": 2,
                             "per_class": {"angry": 0, "crying": 0, "happy": 2}}
    assert error.no_face == {**whole.no_face, "fallback": "error"}
    assert whole.answered.all() and error.answered.sum() == 34
    assert np.array_equal(error.y_pred, whole.y_pred)  # the model's own, unchanged
    ok = error.answered & (error.y_pred == error.y_true)
    m = error.metrics
    assert m["n"] == 36 and m["accuracy"] == pytest.approx(ok.sum() / 36)
    assert m["accuracy"] <= whole.metrics["accuracy"]
    happy = ok[error.y_true == 2].sum() / (error.y_true == 2).sum()
    assert m["per_class"]["happy"]["recall"] == pytest.approx(happy)
    assert set(m["per_class"]) == {"angry", "crying", "happy"}
    assert error.confusion.shape == (3, 3) and error.confusion.sum() == 34
    assert set(m["ci95"]["per_class"]) == {"angry", "crying", "happy"}
    assert "+noface_error" in error.summary("d")["key"]
    assert "+noface_error" not in whole.summary("d")["key"]
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 36 and list(rows[0])[-3:] == ["face", "error", "error_detail"]
    missing = [r for r in rows if r["error"]]
    assert len(missing) == 2 and all(r["error"] == "no_face" and r["label"] == "" and
                                     r["true"] == "happy" and r["face"] == "" for r in missing)
    assert {r["face"] for r in rows if not r["error"]} == {"detected"}
    assert json.loads((out / "report.json").read_text())["no_face"]["fallback"] == "error"
    faces = sorted(row.face for row, _ in whole.rows())
    assert faces == ["detected"] * 34 + ["whole_image"] * 2

    args = ["evaluate", "--checkpoint", str(result.best_checkpoint), "--data",
            str(face_manifest), "--split", "all"]
    run = CliRunner().invoke(app, [*args, "--no-face-fallback", "error"])
    assert run.exit_code == 0, run.output
    text = " ".join(run.stdout.split())
    assert ("no face box in 2 of 36 images (happy 2): no answer, counted as wrong in every "
            "metric") in text
    assert f"accuracy {m['accuracy']:.3f}" in text
    run = CliRunner().invoke(app, args)
    assert run.exit_code == 0, run.output
    assert "no face box in 2 of 36 images (happy 2): classified whole" in " ".join(
        run.stdout.split())
    assert CliRunner().invoke(app, ["evaluate", "--no-face-fallback", "nope"]).exit_code == 2


SECOND = "fake_upright_second_pass"


@register_detector(SECOND, description="test: upright dot faces, with a second pass")
def _make_second():
    from babyemo.faces import SecondPassDetector
    from tests.faces.test_second_pass import Upright

    return SecondPassDetector(Upright())


def test_prepare_records_faces_of_the_second_pass(tmp_path):
    from tests.faces.test_second_pass import _dot_face

    dots = {}
    for cls, angles in (("angry", (0, 10, 90, -5)), ("happy", (180, 0, -90, 5))):
        for i, angle in enumerate(angles):
            img, points = _dot_face(angle)
            path = tmp_path / "images" / cls / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            img.save(path)
            dots[f"{cls}/{i}.png"] = points
    manifest = read_manifest(prepare(tmp_path / "images", out=tmp_path / "prepared",
                                     split=(0.5, 0.25, 0.25), faces=SECOND).manifest_path)
    info = manifest.info["faces"]
    assert info["n_with_face"] == 8 and info["n_second_pass"] == 3
    assert info["settings"]["second_pass"]["angles"][:3] == [0.0, 45.0, 90.0]
    for row in manifest.rows:  # turned faces stored like upright ones, eyes on the dots
        eye0, eye1, _ = dots[row.path]
        assert row.face["landmarks"][0] == pytest.approx(eye0, abs=1.5)
        assert row.face["landmarks"][1] == pytest.approx(eye1, abs=1.5)
