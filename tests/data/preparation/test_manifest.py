"""manifest.csv + dataset.json: round trip, validation, path safety."""

from __future__ import annotations

import hashlib
import json
import os

import pytest

from babyemo.data.preparation.manifest import (
    COLUMNS,
    Manifest,
    ManifestRow,
    new_info,
    read_manifest,
    write_manifest,
)
from babyemo.errors import ManifestError
from tests.conftest import make_image


def _rows() -> list[ManifestRow]:
    return [
        ManifestRow("happy/a b (1).jpg", "happy", "train", "aa" * 32, 32, 24, "JPEG",
                    "00ff00ff00ff00ff"),
        ManifestRow("angry/x.png", "angry", "train", "bb" * 32, 10, 10, "PNG",
                    "0123456789abcdef"),
        ManifestRow("angry/sub/y.jpg", "angry", "val", "cc" * 32, 64, 48, "WEBP",
                    "fedcba9876543210"),
        ManifestRow("crying/z,comma.jpg", "crying", "test", "dd" * 32, 5, 7, "JPEG",
                    "0000000000000000"),
    ]


def _write(tmp_path, rows=None, **info_extra):
    root = tmp_path / "images"
    root.mkdir(exist_ok=True)
    info = new_info("toy", root, str(root), ["happy", "angry", "crying"], **info_extra)
    return write_manifest(rows or _rows(), tmp_path / "prepared", info), root


def test_round_trip(tmp_path):
    path, root = _write(tmp_path, split={"ratios": [0.5, 0.25, 0.25], "seed": 3,
                                         "given": False})
    assert path.name == "manifest.csv" and (path.parent / "dataset.json").is_file()
    assert path.read_text(encoding="utf-8").splitlines()[0] == ",".join(COLUMNS)
    for where in (path, path.parent):
        m = read_manifest(where)
        assert m.rows == _rows()
        assert m.path == path and m.root == root.resolve() and m.name == "toy"
    assert m.class_names == ["angry", "crying", "happy"]
    assert m.splits() == ["train", "val", "test"]
    assert [r.path for r in m.rows_for("val")] == ["angry/sub/y.jpg"]
    assert m.rows_for("nope") == []
    assert m.counts() == {"train": {"angry": 1, "crying": 0, "happy": 1},
                          "val": {"angry": 1, "crying": 0, "happy": 0},
                          "test": {"angry": 0, "crying": 1, "happy": 0}}
    assert m.sha256() == hashlib.sha256(path.read_bytes()).hexdigest()
    info = json.loads((path.parent / "dataset.json").read_text(encoding="utf-8"))
    assert info["format"] == "babyemo-dataset" and info["format_version"] == 1
    assert info["root"] == str(root.resolve()) and info["split"]["seed"] == 3
    assert info["class_names"] == ["angry", "crying", "happy"]
    # writing a Manifest object again gives identical bytes; no temp files are left
    before = path.read_bytes()
    write_manifest(m, path.parent)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["dataset.json", "manifest.csv"]


def test_without_dataset_json_root_is_csv_folder(tmp_path):
    path, _ = _write(tmp_path)
    (path.parent / "dataset.json").unlink()
    m = read_manifest(path)
    assert m.root == path.parent.resolve() and m.info == {} and m.name == "prepared"


def test_missing_manifest_is_clear(tmp_path):
    with pytest.raises(ManifestError, match="No manifest") as err:
        read_manifest(tmp_path / "nothing")
    assert "babyemo data prepare" in err.value.hint


@pytest.mark.parametrize("text, match", [
    ("path,label,split\nangry/x.png,angry,train\n", "lacks the column"),
    (",".join(COLUMNS) + "\n", "no rows"),
    (",".join(COLUMNS) + "\nangry/x.png,angry,training,ab,1,1,PNG,00\n", "split 'training'"),
    (",".join(COLUMNS) + "\nangry/x.png,angry,train,ab,wide,1,PNG,00\n", "integers"),
    (",".join(COLUMNS) + "\n../x.png,angry,train,ab,1,1,PNG,00\n", "not a relative path"),
    (",".join(COLUMNS) + "\nangry/x.png,,train,ab,1,1,PNG,00\n", "empty label"),
])
def test_bad_manifests_are_refused(tmp_path, text, match):
    (tmp_path / "manifest.csv").write_text(text, encoding="utf-8")
    with pytest.raises(ManifestError, match=match):
        read_manifest(tmp_path)


def test_bad_dataset_json_and_moved_root(tmp_path):
    path, root = _write(tmp_path)
    info_path = path.parent / "dataset.json"
    info = json.loads(info_path.read_text())
    info_path.write_text(json.dumps({**info, "format": "other"}))
    with pytest.raises(ManifestError, match="not a babyemo dataset"):
        read_manifest(path)
    info_path.write_text(json.dumps({**info, "format_version": 99}))
    with pytest.raises(ManifestError, match="format_version"):
        read_manifest(path)
    info_path.write_text(json.dumps({**info, "root": str(tmp_path / "gone")}))
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(path)


def test_resolve_refuses_escapes(tmp_path):
    path, root = _write(tmp_path)
    m = read_manifest(path)
    assert m.resolve(m.rows[0]) == root.resolve() / "happy" / "a b (1).jpg"
    assert m.resolve("angry/sub/y.jpg").is_absolute()
    for bad in ["/etc/passwd", "../outside.jpg", "angry/../../x.jpg", "C:/x.jpg",
                "angry\\x.jpg", ""]:
        with pytest.raises(ManifestError):
            m.resolve(bad)
    outside = make_image(tmp_path / "secret.png")
    (root / "angry").mkdir()
    os.symlink(outside, root / "angry" / "link.png")
    with pytest.raises(ManifestError, match="outside the dataset root"):
        m.resolve("angry/link.png")
    inside = make_image(root / "angry" / "real.png")
    os.symlink(inside, root / "angry" / "alias.png")
    assert m.resolve("angry/alias.png") == root.resolve() / "angry" / "alias.png"


def test_write_refuses_bad_input(tmp_path):
    with pytest.raises(ManifestError, match="needs the dataset.json"):
        write_manifest(_rows(), tmp_path)
    bad = _rows()
    bad[0].split = "holdout"
    with pytest.raises(ManifestError, match="holdout"):
        write_manifest(bad, tmp_path, {"name": "x"})
    with pytest.raises(ManifestError, match="empty"):
        write_manifest(Manifest(tmp_path / "m.csv", tmp_path, "x", [], [], {}), tmp_path)
    assert not (tmp_path / "manifest.csv").exists()


def test_missing_files_are_listed_per_split(tmp_path):
    path, root = _write(tmp_path)
    make_image(root / "happy" / "a b (1).jpg")
    make_image(root / "angry" / "sub" / "y.jpg")
    outside = make_image(tmp_path / "secret.png")
    (root / "angry" / "x.png").symlink_to(outside)  # escapes the root: counts as missing
    m = read_manifest(path)
    assert m.missing_files() == ["angry/x.png", "crying/z,comma.jpg"]
    assert m.missing_files("train") == ["angry/x.png"]
    assert m.missing_files(("val", "test")) == ["crying/z,comma.jpg"]


def test_paths_are_kept_verbatim_and_unstorable_rows_refused(tmp_path):
    """Found by tests/data/test_manifest_fuzz.py: the reader stripped a path's surrounding
    whitespace (a class folder ' happy' gave paths that did not exist), and a carriage
    return in a path was written unquoted and split the row."""
    rows = _rows()
    rows[0].path = " happy/a.jpg"
    rows[1].path = "angry/trailing space.jpg\u2028"
    path, _ = _write(tmp_path, rows)
    assert read_manifest(path).rows == rows
    for change, match in [(dict(path="angry/x\ry.jpg"), "carriage return"),
                          (dict(label=" angry"), "cannot be stored"),
                          (dict(label="angry\r"), "cannot be stored"),
                          (dict(label=""), "empty label")]:
        bad = _rows()
        for k, v in change.items():
            setattr(bad[2], k, v)
        out = tmp_path / "bad"
        with pytest.raises(ManifestError, match=match):
            write_manifest(bad, out, {"name": "x"})
        assert not out.exists()


def test_dataset_json_root_must_be_a_path(tmp_path):
    path, _ = _write(tmp_path)
    info_path = path.parent / "dataset.json"
    info = json.loads(info_path.read_text())
    for bad in (5, ["a"], {"x": 1}):
        info_path.write_text(json.dumps({**info, "root": bad}))
        with pytest.raises(ManifestError, match="must be a folder path"):
            read_manifest(path)


@pytest.mark.parametrize("bad", ["", "xyz", "1" * 17, "-1", "0x1f", "1_0"])
def test_dhashes_has_one_rule_for_every_duplicate_check(tmp_path, bad):
    from dataclasses import replace

    from babyemo.data.inspection.report import inspect_dataset
    from babyemo.data.inspection.stock import train_duplicates
    from babyemo.evaluation.audit import conflict_groups
    from babyemo.training.folds import fold_groups

    path, _ = _write(tmp_path)
    good = read_manifest(path)
    assert good.dhashes() == [0x00FF00FF00FF00FF, 0x0123456789ABCDEF, 0xFEDCBA9876543210, 0]
    rows = _rows()
    rows[1] = replace(rows[1], dhash=bad)
    (tmp_path / "bad").mkdir()
    path, _ = _write(tmp_path / "bad", rows)
    manifest = read_manifest(path)
    with pytest.raises(ManifestError, match="angry/x.png") as info:
        manifest.dhashes()
    assert "data prepare" in info.value.hint
    # an empty hash is refused, not read as 0 (which would tie such rows together)
    for check in (fold_groups, conflict_groups, train_duplicates):
        with pytest.raises(ManifestError, match="angry/x.png"):
            check(manifest)
    with pytest.raises(ManifestError, match="angry/x.png"):
        inspect_dataset(path)
