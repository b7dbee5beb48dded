"""Hostile and hand-made manifests (issue 13): relative paths without ``dataset.json``, NUL
characters, an image listed twice (repeated, relabelled, or in two splits: a leak), a
training split without some class, names the OS refuses to look up.

Each is a typed error (:class:`~babyemo.errors.ManifestError` at read,
:class:`~babyemo.errors.DataError` for files that cannot be looked up) or a logged warning
(a class missing from a split), never a ``ValueError``/``OSError`` traceback, a wrong
folder or a silent miscount.
"""

from __future__ import annotations

import logging
import os
import re
import shutil

import pytest

from babyemo.config import InputSpec
from babyemo.data.loading.dataset import ManifestDataset
from babyemo.data.preparation.manifest import (
    COLUMNS,
    ManifestRow,
    new_info,
    read_manifest,
    warn_split_classes,
    warn_training_classes,
    write_manifest,
)
from babyemo.errors import DataError, ManifestError
from babyemo.runtime import Runtime
from tests.conftest import make_checkpoint, make_image

HEADER = ",".join(COLUMNS) + "\n"


def _line(path, label="angry", split="train", sha="ab"):
    return f"{path},{label},{split},{sha},32,32,PNG,00\n"


def _csv(folder, *lines):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "manifest.csv").write_text(HEADER + "".join(lines), encoding="utf-8")
    return folder / "manifest.csv"


# ----------------------------------------------------------------- relative locations


def test_a_relative_manifest_without_dataset_json_reads_its_own_folder(tmp_path, monkeypatch):
    """Issue 13: ``dsM/manifest.csv`` gave the root ``dsM/dsM`` (an error), and silently
    the wrong folder when one of that name existed."""
    ds = tmp_path / "dsM"
    make_image(ds / "angry" / "a.png")
    make_image(ds / "happy" / "b.png")
    _csv(ds, _line("angry/a.png"), _line("happy/b.png", "happy"))
    decoy = ds / "dsM"  # a folder of the same name inside it, with other images
    make_image(decoy / "angry" / "a.png", color=(0, 0, 0))
    make_image(decoy / "happy" / "b.png", color=(0, 0, 0))
    monkeypatch.chdir(tmp_path)
    for given in ("dsM/manifest.csv", "dsM", "./dsM/manifest.csv", "dsM/../dsM"):
        m = read_manifest(given)
        assert m.root == ds.resolve(), given
        assert m.name == "dsM" and m.missing_files() == []
        assert m.resolve(m.rows[0]) == ds.resolve() / "angry" / "a.png"
    monkeypatch.chdir(ds)
    m = read_manifest("manifest.csv")
    assert m.root == ds.resolve() and m.name == "dsM"


def test_a_relative_root_in_dataset_json_is_relative_to_the_manifest(tmp_path, monkeypatch):
    images = tmp_path / "images"
    make_image(images / "angry" / "a.png")
    rows = [ManifestRow("angry/a.png", "angry", "train", "ab", 32, 32, "PNG", "00")]
    info = new_info("x", images, "src", ["angry"])
    path = write_manifest(rows, tmp_path / "prepared", {**info, "root": "../images"})
    (tmp_path / "prepared" / "images").mkdir()  # a decoy beside the cwd's guess
    for cwd in (tmp_path, tmp_path / "prepared", images):
        monkeypatch.chdir(cwd)
        assert read_manifest(os.path.relpath(path, cwd)).root == images.resolve()


# ---------------------------------------------------------------- NUL characters


@pytest.mark.parametrize("line, column", [
    (_line("angry/a\0b.png"), "path"),
    (_line("angry/a.png", label="ang\0ry"), "label"),
    (_line("angry/a.png", sha="a\0b"), "sha256"),
    ("angry/a.png,angry,train,ab,32,32,PN\0G,00\n", "format"),
])
def test_a_nul_character_is_a_manifest_error_naming_the_line(tmp_path, line, column):
    """Issue 13: a NUL byte in a manifest path gave a ``ValueError`` traceback."""
    make_image(tmp_path / "angry" / "a.png")
    path = _csv(tmp_path, _line("angry/ok.png"), line)
    with pytest.raises(ManifestError, match=rf"line 3: the {column} value .* contains a NUL"):
        read_manifest(path)


def test_a_nul_path_given_to_the_api_is_a_manifest_error(tmp_path):
    make_image(tmp_path / "angry" / "a.png")
    m = read_manifest(_csv(tmp_path, _line("angry/a.png")))
    with pytest.raises(ManifestError, match="NUL character"):
        m.resolve("angry/a\0.png")
    assert m.missing_files() == []
    m.rows[0].path = "angry/a\0.png"
    assert m.missing_files() == ["angry/a\0.png"]
    with pytest.raises(ManifestError, match="NUL"):
        write_manifest(m, tmp_path / "out")
    m.rows[0].path, m.rows[0].label = "angry/a.png", "ang\0ry"
    with pytest.raises(ManifestError, match="NUL"):
        write_manifest(m, tmp_path / "out")
    assert not (tmp_path / "out").exists()


# ------------------------------------------------------------ one image, several rows


@pytest.mark.parametrize("second, match", [
    (_line("angry/a.png"), r"lines 2 \(train/angry\), 4 \(train/angry\)\."),
    (_line("angry/a.png", label="happy"), r"lines 2 \(train/angry\), 4 \(train/happy\)\."),
    (_line("angry/a.png", split="test"),
     r"lines 2 \(train/angry\), 4 \(test/angry\) in more than one split \(a leak between "
     r"training and evaluation\)\."),
    (_line("angry/./a.png", split="test"), r"lines 2 \(train/angry\), 4 \(test/angry\) in "),
    (_line("angry//a.png", split="val"), r"lines 2 \(train/angry\), 4 \(val/angry\) in "),
])
def test_an_image_listed_twice_is_refused_at_read(tmp_path, second, match):
    """Issue 13: same-path rows in train and test went unnoticed by train and evaluate,
    and evaluate reported n=69 for 60 images."""
    path = _csv(tmp_path, _line("angry/a.png"), _line("happy/b.png", "happy"), second)
    with pytest.raises(ManifestError, match=r"'angry/a.png' is listed on " + match) as err:
        read_manifest(path)
    assert "each image once" in err.value.hint


def test_the_error_counts_every_repeated_path_and_write_refuses_them(tmp_path):
    lines = [_line(f"angry/{i}.png") for i in range(4)]
    path = _csv(tmp_path, *lines, *lines[:3])
    with pytest.raises(ManifestError, match=r"'angry/0.png' is listed on lines 2 \(train/angry\), "
                       r"6 \(train/angry\); 3 paths are listed more than once\."):
        read_manifest(path)
    rows = [ManifestRow("angry/a.png", "angry", s, "ab", 1, 1, "PNG", "00")
            for s in ("train", "test")]
    with pytest.raises(ManifestError, match="more than one split"):
        write_manifest(rows, tmp_path / "out", new_info("x", tmp_path, "x", ["angry"]))
    assert not (tmp_path / "out").exists()


def test_evaluate_refuses_a_manifest_listing_an_image_twice(prepared, tmp_path, tiny_arch):
    m = read_manifest(prepared)
    leak = m.rows_for("train")[0]
    text = prepared.read_text(encoding="utf-8")
    row_line = next(line for line in text.splitlines() if line.startswith(leak.path + ","))
    (prepared.parent / "manifest.csv").write_text(
        text + row_line.replace(",train,", ",test,") + "\n", encoding="utf-8")
    from babyemo.evaluation import evaluate

    ckpt = make_checkpoint(tmp_path / "m.pt", tiny_arch)
    with pytest.raises(ManifestError, match="in more than one split"):
        evaluate(ckpt, data=prepared, split="test", runtime=Runtime(device="cpu", workers=0))


# ----------------------------------------------------- classes missing from a split


def _manifest(tmp_path, spec):
    """A manifest with ``spec = {(split, label): n}`` images (files exist)."""
    root = tmp_path / "images"
    rows = []
    for (split, label), n in spec.items():
        for i in range(n):
            rel = f"{label}/{split}{i}.png"
            make_image(root / rel, color=(10 * i, 100, 200))
            rows.append(ManifestRow(rel, label, split, "ab", 32, 32, "PNG", "00"))
    info = new_info("x", root, "x", sorted({label for _, label in spec}))
    return read_manifest(write_manifest(rows, tmp_path / "prepared", info))


def test_training_without_a_class_is_warned_naming_where_its_images_are(tmp_path, caplog):
    m = _manifest(tmp_path, {("train", "angry"): 3, ("train", "crying"): 2,
                             ("val", "happy"): 1, ("test", "happy"): 2,
                             ("test", "angry"): 1})
    with caplog.at_level(logging.WARNING, logger="babyemo.data.preparation.manifest"):
        warnings = warn_training_classes(m)
    assert len(warnings) == 2 and [r.getMessage() for r in caplog.records] == warnings
    assert re.fullmatch(r"The train split of .* has no image of 1 class\(es\): 'happy' \(1 in "
                        r"val, 2 in test\)\. The model cannot learn them: .*", warnings[0])
    assert "babyemo data split" in warnings[0]
    assert re.match(r"The val split of .* has no image of 'angry', 'crying'", warnings[1])
    assert warn_training_classes(m, ("train", "val")) == []  # --train-on train,val has it


def test_a_val_split_without_a_class_is_a_warning(tmp_path):
    m = _manifest(tmp_path, {("train", "angry"): 2, ("train", "happy"): 2,
                             ("val", "angry"): 1, ("test", "happy"): 1})
    assert [w.split(":")[0] for w in warn_training_classes(m)] == [
        f"The val split of {m.path} has no image of 'happy'"]
    complete = _manifest(tmp_path / "b", {("train", "angry"): 1, ("train", "happy"): 1,
                                          ("val", "angry"): 1, ("val", "happy"): 1})
    assert warn_training_classes(complete) == []


def test_train_says_which_class_it_cannot_learn(tmp_path, tiny_arch, caplog):
    """Issue 13: a train split missing a class went unmentioned by train."""
    from babyemo.config import TrainConfig
    from babyemo.training import train

    m = _manifest(tmp_path, {("train", "angry"): 4, ("train", "crying"): 4,
                             ("val", "angry"): 1, ("val", "crying"): 1,
                             ("test", "happy"): 2})
    with caplog.at_level(logging.WARNING):
        result = train(TrainConfig(data=str(m.path), arch=tiny_arch, epochs=1, batch_size=4,
                                   precision="fp32", out=str(tmp_path / "run"), init="none"))
    assert result.best_checkpoint.is_file()
    assert any("has no image of 1 class(es): 'happy' (2 in test)" in r.getMessage()
               for r in caplog.records)


def test_evaluate_warns_when_the_split_lacks_a_class(prepared, tmp_path, tiny_arch, caplog):
    m = read_manifest(prepared)
    rows = [r for r in m.rows if not (r.split == "test" and r.label == "happy")]
    path = write_manifest(rows, tmp_path / "no-happy-test", m.info)
    assert warn_split_classes(read_manifest(path), "all") == []
    assert warn_split_classes(read_manifest(path), "val") == []
    from babyemo.evaluation import evaluate

    ckpt = make_checkpoint(tmp_path / "m.pt", tiny_arch)
    with caplog.at_level(logging.WARNING):
        report = evaluate(ckpt, data=path, split="test", runtime=Runtime(device="cpu", workers=0))
    assert report.metrics["n"] == len([r for r in rows if r.split == "test"])
    assert any("test split" in r.getMessage() and "'happy'" in r.getMessage()
               for r in caplog.records)


# ------------------------------------------------------- names the OS will not look up


def test_a_name_the_os_refuses_counts_as_missing_not_a_traceback(tmp_path):
    long_name = "x" * 300 + ".png"  # ENAMETOOLONG from stat(), not "no such file"
    images = tmp_path / "images"
    make_image(images / "angry" / "a.png")
    rows = [ManifestRow("angry/a.png", "angry", "train", "ab", 32, 32, "PNG", "00"),
            ManifestRow(f"angry/{long_name}", "angry", "train", "ab", 32, 32, "PNG", "00")]
    m = read_manifest(write_manifest(rows, tmp_path / "p", new_info("x", images, "x", ["a"])))
    assert m.missing_files() == [f"angry/{long_name}"]
    spec = InputSpec(size=16, mean=(0.5,) * 3, std=(0.5,) * 3)
    with pytest.raises(DataError, match=r"1 file\(s\) of .* are missing or unreachable"):
        ManifestDataset(m, "train", ["angry"], spec, lambda im: im)


def test_a_dataset_root_the_os_refuses_is_a_manifest_error(tmp_path):
    path = _csv(tmp_path / "p", _line("angry/a.png"))
    (tmp_path / "p" / "dataset.json").write_text(
        '{"format": "babyemo-dataset", "root": "' + "y" * 300 + '"}', encoding="utf-8")
    with pytest.raises(ManifestError, match="does not exist"):
        read_manifest(path)
    shutil.rmtree(tmp_path / "p")
