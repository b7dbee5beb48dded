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
    predictor = Predictor(result.best_checkpoint, save_crops=crops,
                          runtime=Runtime(precision="fp32"))
    summary = predict_to_files([photos], predictor, csv_out=out)
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(out.open())}
    assert rows["noface.png"]["error"] == "no_face" and rows["noface.png"]["label"] == ""
    one = rows["one.png"]
    assert one["error"] == "" and one["face_index"] == "0"
    assert [float(one[k]) for k in ("box_x", "box_y", "box_w", "box_h")] == \
        pytest.approx([12.0, 8.0, 36.0, 24.0], abs=0.05)
    assert float(one["det_score"]) == pytest.approx(0.9)
    assert summary.n_no_face == 1 and summary.n_failed == 1 and summary.n_rows == 2
    saved = list(crops.iterdir())
    assert len(saved) == 1 and Image.open(saved[0]).size == (24, 24)  # the input size

    full = Predictor(result.best_checkpoint, no_face_fallback="full",
                     runtime=Runtime(precision="fp32"))
    by_name = {p.path.rsplit("/", 1)[-1]: p for p in full.predict_files(
        sorted(photos.iterdir()))}
    assert by_name["noface.png"].error is None and by_name["noface.png"].face_index is None
    assert by_name["noface.png"].box == (0.0, 0.0, 60.0, 40.0)

    whole = Predictor(result.best_checkpoint, faces="none", runtime=Runtime(precision="fp32"))
    assert whole.face_detection is None
    assert all(p.error is None for p in whole.predict_files(sorted(photos.iterdir())))


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
    no_face = [r for r in rows if r["error"] == "no_face"]
    assert summary.n_no_face == len(no_face) and len(no_face) <= 8
    face_rows = [r for r in rows if not r["error"]]
    assert len(face_rows) == summary.n_rows - len(no_face) >= 12
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
