"""Stock-photo metadata generator: file-name rules, CSV, and the real infant set."""

from __future__ import annotations

import csv

import pytest

from babyemo.data.inspection.stock import clean_stem, stock_site, write_stock_metadata
from babyemo.data.preparation.metadata import read_metadata
from babyemo.errors import DataError
from tests.conftest import make_image


@pytest.mark.parametrize("name, site", [
    ("angry/istockphoto-1147491380-612x612_jpg.rf.abc123.jpg", "istock"),
    ("gettyimages-101883584-612x612_jpg.rf.Xy.jpg", "gettyimages"),
    ("angry-little-girl-blue-background-260nw-1701488545_jpg.rf.xELR.jpg", "shutterstock"),
    ("shutterstock_123456.jpg", "shutterstock"),
    ("240_F_167162968_3XZTaU8jNBkBXMLM6TreWNJu0x3OyVer_jpg.rf.zbkr.jpg", "adobestock"),
    ("360_F_1011479432_Iu6EkFwepmru65ufsIJGbF9GzqXxZuDl (1)_jpg.rf.uBH.jpg", "adobestock"),
    ("depositphotos_593442460-stock-photo-baby-crib (1)_jpg.rf.Ha.jpg", "depositphotos"),
    ("69057026-sad-baby-crying-on-bed-alone-at-home_jpg.rf.q.jpg", "123rf"),
    ("angry-blond-baby-girl-with-a-toy-in-hands-shouts-2H6Y9PJ_jpg.rf.1c.jpg", "alamy"),
    ("portrait-crying-baby-tears-face-94856197_jpg.rf.a.jpg", "dreamstime"),
    ("portrait-adorable-newborn-baby_23-2150763250_jpg.rf.b.jpg", "freepik"),
    ("premium_photo-1658507030460-2de25561d4e6_jpg.rf.c.jpg", "unsplash"),
    ("pexels-photo-459953.jpeg", "pexels"),
    ("baby-on-a-white-background-photo_jpg.rf.d.jpg", "vecteezy"),
    ("baby-7213274_1280_jpg.rf.e.jpg", "pixabay"),
    ("A-cute-baby-girl-398004-pixahive-683x1024.jpg", "pixahive"),
    ("AdobeStock_12345.jpeg", "adobestock"),
    ("images (101)_jpg.rf.f.jpg", None),
    ("2209f684ff7c41cfa384e5573486a2f9_jpg.rf.11JP6OBYAvlGJcEJngM5.jpg", None),
    ("Why-newborn-babies-cry-through-the-night-768x403_jpg.rf.g.jpg", None),
    ("424340867_fc05988f01_z_jpg.rf.h.jpg", None),
    ("IMG_20240101_123456.jpg", None),
])
def test_stock_site_from_file_names(name, site):
    assert stock_site(name) == site


def test_clean_stem_removes_roboflow_and_copy_suffixes():
    assert clean_stem("angry/360_F_1_abc (1)_jpg.rf.XyZ.jpg") == "360_F_1_abc"
    assert clean_stem("a.b/photo.webp") == "photo"


def test_metadata_for_a_folder_and_a_manifest(prepared, tmp_path):
    folder = prepared.parent.parent / "images"
    make_image(folder / "happy" / "gettyimages-1-612x612.png")
    summary = write_stock_metadata(folder, tmp_path / "meta.csv")
    assert summary.n == 37 and summary.n_stock == 1 and summary.by_site == {"gettyimages": 1}
    assert summary.by_label["happy"] == {"n": 13, "stock": 1}
    columns, rows = read_metadata(tmp_path / "meta.csv")
    assert columns == ["source", "stock_site", "fer_subset", "train_duplicate"]
    assert rows["happy/gettyimages-1-612x612.png"] == {
        "source": "stock", "stock_site": "gettyimages", "fer_subset": "", "train_duplicate": ""}
    assert rows["angry/angry_000.png"]["source"] == "other"
    by_manifest = write_stock_metadata(prepared, tmp_path / "m.csv")  # paths as in manifest
    assert by_manifest.n == 36 and by_manifest.n_stock == 0
    with pytest.raises(DataError):
        write_stock_metadata(tmp_path / "missing" / "folder", tmp_path / "x.csv")


@pytest.mark.realdata
def test_real_infant_set_stock_share(infant_dir, tmp_path):
    summary = write_stock_metadata(infant_dir, tmp_path / "meta.csv")
    assert summary.n == 1020
    # the README: about 45% stock, angry and crying far more than happy
    assert 0.4 < summary.stock_share < 0.6
    share = {k: v["stock"] / v["n"] for k, v in summary.by_label.items()}
    assert share["angry"] > 1.5 * share["happy"] and share["crying"] > 1.5 * share["happy"]
    assert list(summary.by_site)[:4] == ["istock", "gettyimages", "shutterstock", "adobestock"]
    with (tmp_path / "meta.csv").open() as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 1020 and all((infant_dir / r["path"]).is_file() for r in rows)


def test_fer_subset_from_fer2013_file_names():
    from babyemo.data.inspection.stock import fer_subset

    assert fer_subset("test/angry/PrivateTest_10131363.jpg") == "PrivateTest"
    assert fer_subset("PublicTest_1.jpg") == "PublicTest"
    assert fer_subset("train/happy/Training_99.jpg") == "Training"
    assert fer_subset("PrivateTest_copy.jpg") == "" and fer_subset("baby.jpg") == ""


def test_train_duplicates_marks_val_and_test_copies_of_train_images(tmp_path):
    from dataclasses import replace

    from PIL import Image

    from babyemo.data.inspection.stock import train_duplicates
    from babyemo.data.preparation.manifest import read_manifest, write_manifest
    from babyemo.data.preparation.prepare import prepare

    root = tmp_path / "images"
    for label, hue in (("angry", 0), ("happy", 1)):
        for i in range(6):
            img = Image.effect_noise((32, 32), 40 + 10 * i).convert("RGB")
            img.putpixel((hue, i), (255, 0, 0))
            (root / label).mkdir(parents=True, exist_ok=True)
            img.save(root / label / f"{label}_{i}.png")
    manifest = prepare(root, out=tmp_path / "p", split=(0.5, 0.25, 0.25), seed=0).manifest
    # plant a leak: a test row whose file is byte-identical to a train file
    train_row = manifest.rows_for("train")[0]
    victim = manifest.rows_for("test")[0]
    rows = [r if r is not victim else replace(r, sha256=train_row.sha256, dhash=train_row.dhash)
            for r in manifest.rows]
    leaky = read_manifest(write_manifest(rows, tmp_path / "leaky", info=manifest.info))
    marks = train_duplicates(leaky)
    assert marks[victim.path] == "yes"
    assert all(marks[r.path] == "" for r in leaky.rows_for("train"))
    others = [r for r in leaky.rows if r.split != "train" and r.path != victim.path]
    assert others and all(marks[r.path] == "no" for r in others)
