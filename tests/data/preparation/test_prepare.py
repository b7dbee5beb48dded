"""prepare, split_manifest, the last prepared manifest: synthetic images, the real infant set."""

from __future__ import annotations

import hashlib
import shutil
import time
import zipfile
from collections import Counter

import pytest
from PIL import Image

from babyemo import paths
from babyemo.data.inspection import hashing
from babyemo.data.preparation.lookup import last_prepared
from babyemo.data.preparation.manifest import read_manifest
from babyemo.data.preparation.prepare import prepare, split_manifest
from babyemo.errors import ConfigError, DataError
from tests.data.helpers import CLASSES, make_distinct_folder, save_pattern


def split_of(manifest) -> dict[str, str]:
    return {r.path: r.split for r in manifest.rows}


# --------------------------------------------------------------------------- prepare


def test_prepare_imagefolder(tmp_path):
    root = make_distinct_folder(tmp_path / "toy")
    result = prepare(root, out=tmp_path / "out", seed=1)
    m = result.manifest
    assert result.n_images == 60 and len(m.rows) == 60
    assert result.manifest_path == tmp_path / "out" / "manifest.csv"
    assert m.class_names == list(CLASSES) and m.root == root.resolve()
    assert m.name == "toy" and m.info["source"] == str(root.resolve())
    assert m.info["split"] == {"ratios": [0.7, 0.15, 0.15], "seed": 1, "given": False,
                               "carved": []}
    for cls in CLASSES:
        per = Counter(r.split for r in m.rows if r.label == cls)
        assert per == {"train": 14, "val": 3, "test": 3}
    row = m.rows[0]
    assert row.format == "PNG" and (row.width, row.height) == (48, 48)
    assert row.sha256 == hashlib.sha256(m.resolve(row).read_bytes()).hexdigest()
    assert len(row.dhash) == 16 and int(row.dhash, 16) >= 0
    assert last_prepared() == result.manifest_path.resolve()
    assert paths.read_state()["last_manifest"] == str(result.manifest_path.resolve())


def test_default_out_and_name(tmp_path):
    root = make_distinct_folder(tmp_path / "my photos", per_class=4)
    result = prepare(root)
    assert result.manifest_path == paths.prepared_dir() / "my-photos" / "manifest.csv"
    named = prepare(root, name="kids_v2")
    assert named.manifest_path.parent.name == "kids_v2"
    with pytest.raises(ConfigError):
        prepare(root, name="../evil")


def test_last_prepared_without_prepare():
    with pytest.raises(DataError, match="No dataset was prepared in this babyemo home") as err:
        last_prepared()
    assert "babyemo data prepare" in err.value.hint


def test_scan_skips_and_counts(tmp_path):
    root = make_distinct_folder(tmp_path / "d", per_class=3)
    (root / "angry" / ".hidden.png").write_bytes((root / "angry" / "angry_000.png").read_bytes())
    save_pattern(root / "crying" / ".cache" / "c.png", 77)
    (root / "happy" / "notes.txt").write_text("not an image")
    (root / "happy" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 definitely not a jpeg")
    (root / "happy" / "empty.png").write_bytes(b"")
    save_pattern(root / "stray.png", 78)
    save_pattern(root / "angry" / "deep" / "er" / "nested.png", 79)
    result = prepare(root, out=tmp_path / "out")
    assert result.skipped == {"hidden": 2, "not_image": 1, "unreadable": 2,
                              "outside_class_folder": 1}
    rows = {r.path for r in result.manifest.rows}
    assert len(rows) == 10 and "angry/deep/er/nested.png" in rows
    assert not any(name in p for p in rows for name in ("hidden", "cache", "broken", "empty",
                                                          "notes", "stray"))
    reasons = {f["path"]: f["reason"] for f in result.skipped_files}
    assert reasons["happy/empty.png"] == "empty file."
    assert "broken.jpg" in "".join(reasons) and reasons["happy/notes.txt"]
    info = result.manifest.info
    assert info["skipped"] == result.skipped and info["skipped_files"] == result.skipped_files


def test_symlinks_leaving_the_root_are_skipped(tmp_path):
    root = make_distinct_folder(tmp_path / "d", per_class=3)
    elsewhere = make_distinct_folder(tmp_path / "elsewhere", classes=("sleepy",), per_class=2,
                                     seed0=700)
    (root / "sleepy").symlink_to(elsewhere / "sleepy", target_is_directory=True)
    (root / "happy" / "outside.png").symlink_to(elsewhere / "sleepy" / "sleepy_000.png")
    (root / "happy" / "inside.png").symlink_to(root / "angry" / "angry_000.png")
    result = prepare(root, out=tmp_path / "o")
    assert result.skipped == {"outside_root": 2}
    rows = {r.path for r in result.manifest.rows}
    assert "happy/inside.png" in rows and not any("sleepy" in p or "outside" in p for p in rows)
    for row in result.manifest.rows:  # everything in the manifest resolves
        assert result.manifest.resolve(row).is_file()


def test_format_sniffed_and_true_size(tmp_path):
    root = make_distinct_folder(tmp_path / "d", per_class=3)
    save_pattern(root / "happy" / "really_webp.jpg", 500, fmt="WEBP")
    save_pattern(root / "angry" / "big.jpg", 501, size=(640, 480), quality=90)
    rows = {r.path: r for r in prepare(root, out=tmp_path / "o").manifest.rows}
    assert rows["happy/really_webp.jpg"].format == "WEBP"
    big = rows["angry/big.jpg"]
    assert (big.format, big.width, big.height) == ("JPEG", 640, 480)


@pytest.mark.parametrize("make, match", [
    (lambda r: r.mkdir(), "no class folders"),
    (lambda r: save_pattern(r / "only" / "a.png", 1), "one class only"),
    (lambda r: [(r / c).mkdir(parents=True) for c in CLASSES], "No readable images"),
    (lambda r: [save_pattern(r / s / "a" / "x.png", i) for i, s in enumerate(("val", "test"))],
     "no train/ folder"),
])
def test_layout_errors(tmp_path, make, match):
    root = tmp_path / "bad"
    make(root)
    with pytest.raises(DataError, match=match):
        prepare(root, out=tmp_path / "o")


def test_missing_and_unknown_sources(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(DataError, match="No such file or folder"):
        prepare(tmp_path / "missing")
    with pytest.raises(DataError, match="not found") as err:
        prepare("fer2031")
    assert "fer2013" in err.value.hint
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(DataError, match="not a .zip"):
        prepare(tmp_path / "file.txt")


# --------------------------------------------------------------------------- sources


def test_catalogue_name_and_url_use_download(tmp_path, monkeypatch):
    from babyemo.data.sources import fetch

    folder = make_distinct_folder(tmp_path / "cache" / "infant-emotions", per_class=4)
    calls = []
    monkeypatch.setattr(fetch, "fetch_dataset",
                        lambda name, **kw: calls.append(name) or folder)
    result = prepare(out=tmp_path / "o1")  # default source
    assert calls == ["infant-emotions"] and result.manifest.name == "infant-emotions"
    assert result.manifest.info["source"] == "infant-emotions"
    url_folder = make_distinct_folder(tmp_path / "dl" / "kids", per_class=4)
    monkeypatch.setattr(fetch, "fetch_url_dataset",
                        lambda url, **kw: calls.append(url) or url_folder)
    result = prepare("https://example.org/kids.zip", out=tmp_path / "o2")
    assert calls[-1] == "https://example.org/kids.zip" and result.manifest.name == "kids"


def test_archive_is_extracted_once(tmp_path):
    src = make_distinct_folder(tmp_path / "src", per_class=4)
    archive = tmp_path / "kids-set.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(src.rglob("*.png")):
            zf.write(p, "kids-set/" + p.relative_to(src).as_posix())
    first = prepare(archive, out=tmp_path / "o")
    assert first.manifest.root == (paths.datasets_dir() / "kids-set" / "kids-set").resolve()
    assert first.n_images == 12 and first.manifest.name == "kids-set"
    again = prepare(archive, out=tmp_path / "o2")  # reuses the extracted folder
    assert again.manifest.root == first.manifest.root


# --------------------------------------------------------------------------- splitting


def test_duplicates_stay_in_one_split(tmp_path):
    root = make_distinct_folder(tmp_path / "d", per_class=20)
    original = root / "angry" / "angry_000.png"
    shutil.copy(original, root / "crying" / "copy_of_angry.png")   # exact, other class
    shutil.copy(original, root / "angry" / "copy2.png")             # exact, same class
    img = Image.open(root / "happy" / "happy_001.png").convert("RGB")
    img.save(root / "happy" / "happy_001_q95.jpg", quality=95)        # near-duplicates
    img.save(root / "happy" / "happy_001_q60.jpg", quality=60)
    with Image.open(root / "happy" / "happy_001_q60.jpg") as a, \
            Image.open(root / "happy" / "happy_001.png") as b:
        assert hashing.hamming(hashing.dhash(a), hashing.dhash(b)) <= 2
    for seed in range(6):
        m = prepare(root, out=tmp_path / f"o{seed}", seed=seed).manifest
        s = split_of(m)
        assert s["angry/angry_000.png"] == s["crying/copy_of_angry.png"] == s["angry/copy2.png"]
        assert (s["happy/happy_001.png"] == s["happy/happy_001_q95.jpg"]
                == s["happy/happy_001_q60.jpg"])
        assert len(set(s.values())) == 3


def test_given_splits_are_kept(tmp_path):
    root = tmp_path / "d"
    make_distinct_folder(root / "train", per_class=6)
    make_distinct_folder(root / "validation", per_class=2, seed0=100)
    make_distinct_folder(root / "test", per_class=2, seed0=200)
    result = prepare(root, out=tmp_path / "o")
    m = result.manifest
    for r in m.rows:
        folder = r.path.split("/")[0]
        assert r.split == {"validation": "val"}.get(folder, folder)
        assert r.label == r.path.split("/")[1]
    assert Counter(r.split for r in m.rows) == {"train": 18, "val": 6, "test": 6}
    assert m.info["split"]["given"] is True and m.info["layout"] == "splits"
    assert result.warnings == []


def test_train_only_is_split_and_train_val_has_no_test(tmp_path):
    only = tmp_path / "only"
    make_distinct_folder(only / "Train", per_class=20)
    m = prepare(only, out=tmp_path / "o1").manifest
    assert Counter(r.split for r in m.rows) == {"train": 42, "val": 9, "test": 9}
    assert m.class_names == list(CLASSES)
    tv = tmp_path / "tv"
    make_distinct_folder(tv / "train", per_class=5)
    make_distinct_folder(tv / "val", per_class=2, seed0=400)
    (tv / "README.txt").write_text("about")
    (tv / "extras").mkdir()
    result = prepare(tv, out=tmp_path / "o2")
    assert Counter(r.split for r in result.manifest.rows) == {"train": 15, "val": 6}
    assert any("no test split" in w for w in result.warnings)
    assert result.manifest.info["ignored_folders"] == ["extras"]
    assert result.skipped == {}  # files beside the split folders (README) are not data


def test_train_test_only_carves_val_and_resplit(tmp_path):
    root = tmp_path / "d"
    make_distinct_folder(root / "train", per_class=20)
    make_distinct_folder(root / "test", per_class=5, seed0=300)
    # the same photo in train and test: a leak the given split cannot fix
    shutil.copy(root / "train" / "happy" / "happy_003.png", root / "test" / "happy" / "dup.png")
    result = prepare(root, out=tmp_path / "o")
    m = result.manifest
    counts = Counter(r.split for r in m.rows)
    assert counts["test"] == 16 and counts["train"] + counts["val"] == 60
    assert counts["val"] == pytest.approx(60 * 0.15 / 0.85, abs=2)
    assert all(r.path.startswith("train/") for r in m.rows if r.split in ("train", "val"))
    assert m.info["split"]["carved"] == ["val"]
    assert any("span the given splits" in w for w in result.warnings)
    re = prepare(root, out=tmp_path / "o2", resplit=True).manifest
    s = split_of(re)
    assert s["train/happy/happy_003.png"] == s["test/happy/dup.png"]
    assert any(r.path.startswith("test/") and r.split == "train" for r in re.rows)
    assert re.info["split"]["given"] is False


def test_metadata_subjects_share_a_split(tmp_path):
    root = make_distinct_folder(tmp_path / "d", per_class=12)
    paths_ = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    meta = tmp_path / "meta.csv"
    lines = ["path,age_months,sex,subject_id,camera"]
    for i, p in enumerate(paths_):
        lines.append(f"{p},{i % 24},{'fm'[i % 2]},s{i % 5},c1")
    meta.write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = prepare(root, out=tmp_path / "o", metadata=meta)
    out = result.manifest_path.parent / "metadata.csv"
    assert out.read_bytes() == meta.read_bytes() and result.manifest.info["metadata"] == \
        "metadata.csv"
    subject_split: dict[str, set[str]] = {}
    for i, p in enumerate(paths_):
        subject_split.setdefault(f"s{i % 5}", set()).add(split_of(result.manifest)[p])
    assert all(len(v) == 1 for v in subject_split.values())
    # re-splitting keeps subjects together too
    m2 = split_manifest(result.manifest_path, seed=4)
    subject_split = {}
    for i, p in enumerate(paths_):
        subject_split.setdefault(f"s{i % 5}", set()).add(split_of(m2)[p])
    assert all(len(v) == 1 for v in subject_split.values())


@pytest.mark.parametrize("text, match", [
    ("file,age_months\nangry/angry_000.png,3\n", "no 'path' column"),
    ("path,age_months\nnope/x.png,3\n", "No path of the metadata"),
    ("path,age_months\nangry/angry_000.png,three\n", "not a number"),
    ("path\nangry/angry_000.png\nangry/angry_000.png\n", "appears twice"),
])
def test_bad_metadata(tmp_path, text, match):
    root = make_distinct_folder(tmp_path / "d", per_class=3)
    meta = tmp_path / "meta.csv"
    meta.write_text(text, encoding="utf-8")
    with pytest.raises(DataError, match=match):
        prepare(root, out=tmp_path / "o", metadata=meta)


def test_split_manifest_needs_no_decoding(tmp_path, monkeypatch):
    root = make_distinct_folder(tmp_path / "d", per_class=20)
    shutil.copy(root / "angry" / "angry_005.png", root / "happy" / "copy.png")
    first = prepare(root, out=tmp_path / "o", seed=0).manifest
    from babyemo.data.loading import images
    from babyemo.data.preparation import scan as scan_mod

    def boom(*a, **k):
        raise AssertionError("split_manifest must not decode images")

    monkeypatch.setattr(images, "load_image", boom)
    monkeypatch.setattr(scan_mod, "load_image", boom)
    m = split_manifest(first.path, split=(0.5, 0.25, 0.25), seed=3)
    assert m.path == first.path and read_manifest(first.path).rows == m.rows
    counts = Counter(r.split for r in m.rows)  # 60 groups (one pair of copies) are split
    assert counts["train"] in (30, 31, 32) and counts["val"] + counts["test"] == 61 - counts[
        "train"] and abs(counts["val"] - counts["test"]) <= 2
    s = split_of(m)
    assert s["angry/angry_005.png"] == s["happy/copy.png"]
    assert s != split_of(first)
    assert m.info["split"]["seed"] == 3 and m.info["split"]["ratios"] == [0.5, 0.25, 0.25]
    other = split_manifest(first.path, seed=3, out=tmp_path / "elsewhere")
    assert other.path == tmp_path / "elsewhere" / "manifest.csv" and other.root == first.root
    assert last_prepared() == other.path.resolve()


# --------------------------------------------------------------------------- real data


@pytest.mark.realdata
def test_prepare_full_infant_set(infant_dir, tmp_path):
    start = time.perf_counter()
    result = prepare(infant_dir, out=tmp_path / "infant", seed=0)
    elapsed = time.perf_counter() - start
    m = result.manifest
    assert result.n_images == len(m.rows) == 1020 and result.skipped == {}
    assert m.class_names == ["angry", "crying", "happy"]
    for cls in m.class_names:
        per = Counter(r.split for r in m.rows if r.label == cls)
        assert sum(per.values()) == 340
        assert per["train"] == pytest.approx(238, abs=6)
        assert per["val"] == pytest.approx(51, abs=5) and per["test"] == pytest.approx(51, abs=5)
    # formats as sniffed from the bytes (the README's 43/10 does not match this folder)
    assert Counter(r.format for r in m.rows) == {"JPEG": 978, "WEBP": 33, "PNG": 9}
    assert {(r.width, r.height) for r in m.rows} == {(512, 512)}
    # near-duplicates: every pair up to distance 5 was checked by eye (26 true pairs);
    # the README's "about 9 pairs, one across classes" undercounts (see hashing.py)
    assert m.info["near_duplicate_distance"] == 6
    groups = hashing.near_duplicate_groups([int(r.dhash, 16) for r in m.rows], 6)
    assert 25 <= len(groups) <= 40
    cross = [g for g in groups if len({m.rows[i].label for i in g}) > 1]
    assert 1 <= len(cross) <= 5
    labels_of = [{m.rows[i].path.split("/")[-1][:20]: m.rows[i].label for i in g} for g in cross]
    assert {"images (102)_jpeg.rf": "angry", "crying-newborn-baby-": "crying"} in labels_of
    assert all(len({m.rows[i].split for i in g}) == 1 for g in groups)
    assert elapsed < 30, f"prepare took {elapsed:.1f}s"
