"""Applying a reviewed label CSV to a new manifest (issue 19, ``babyemo data relabel``)."""

from __future__ import annotations

import csv
import json
from dataclasses import replace
from pathlib import Path

import pytest

from babyemo.data.preparation.manifest import read_manifest
from babyemo.data.preparation.prepare import prepare
from babyemo.data.preparation.relabel import EXCLUDE, read_review, relabel_manifest
from babyemo.errors import ConfigError, DataError
from tests.data.helpers import file_sha256, make_distinct_folder


@pytest.fixture
def dataset(tmp_path: Path) -> Path:
    """18 distinct images (3 classes) prepared with a metadata CSV; returns manifest.csv."""
    root = make_distinct_folder(tmp_path / "images", per_class=6)
    meta = tmp_path / "meta.csv"
    paths = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.png"))
    meta.write_text("path,subject_id\n" + "".join(f"{p},s{i}\n" for i, p in enumerate(paths)),
                    encoding="utf-8")
    return prepare(root, out=tmp_path / "prepared", split=(0.5, 0.25, 0.25), seed=0,
                   metadata=meta).manifest_path


def write_review(path: Path, rows: list[tuple[str, str]], *,
                 columns: tuple[str, ...] = ("path", "given_label", "label")) -> Path:
    """A review CSV (``columns`` must hold ``path``; ``label`` may be left out)."""
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(columns)
        for p, label in rows:
            values = {"path": p, "given_label": "?", "label": label}
            writer.writerow([values.get(c, "") for c in columns])
    return path


def _of(manifest_path: Path, split: str, label: str, n: int = 1) -> list[str]:
    rows = [r.path for r in read_manifest(manifest_path).rows
            if r.split == split and r.label == label]
    assert len(rows) >= n
    return rows[:n]


def test_relabel_exclude_confirm_and_undecided(dataset, tmp_path):
    parent = read_manifest(dataset)
    before = {p.name: p.read_bytes() for p in dataset.parent.iterdir()}
    relabelled, = _of(dataset, "train", "angry")
    excluded, = _of(dataset, "train", "crying")
    undecided, confirmed = _of(dataset, "train", "happy", 2)
    review = write_review(tmp_path / "review.csv", [
        (relabelled, "happy"), (excluded, f" {EXCLUDE} "), (undecided, ""),
        (confirmed, "happy")])
    out = tmp_path / "relabelled"
    result = relabel_manifest(dataset, review, out=out)

    assert {p.name: p.read_bytes() for p in dataset.parent.iterdir()} == before  # unchanged
    assert result.manifest_path == out / "manifest.csv" and result.parent == parent.path
    assert (result.n_relabelled, result.n_excluded, result.n_confirmed,
            result.n_undecided, result.n_test_changed) == (1, 1, 1, 1, 0)
    assert result.changes == {"angry -> happy": 1, "crying -> exclude": 1}
    assert result.warnings == []
    new = read_manifest(out)
    assert new.root == parent.root and new.class_names == parent.class_names
    assert [r.path for r in new.rows] == [r.path for r in parent.rows if r.path != excluded]
    old = {r.path: r for r in parent.rows}
    for row in new.rows:  # only the label of the relabelled row differs
        want = old[row.path]
        assert row == (want if row.path != relabelled else replace(want, label="happy"))

    info = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    entry = info["relabel"]
    assert entry["parent"] == str(parent.path.resolve())
    assert entry["parent_sha256"] == parent.sha256() == file_sha256(dataset)
    assert entry["review"] == str(review.resolve())
    assert entry["review_sha256"] == file_sha256(review)
    assert entry["changes"] == {"angry -> happy": 1, "crying -> exclude": 1}
    assert (entry["relabelled"], entry["excluded"], entry["confirmed"],
            entry["undecided"], entry["test_changed"]) == (1, 1, 1, 1, 0)
    assert entry["allow_test"] is False and entry["previous"] is None and entry["created"]
    assert info["split"] == parent.info["split"] and info["name"] == parent.name
    # the parent's metadata.csv is copied along
    assert info["metadata"] == "metadata.csv"
    assert (out / "metadata.csv").read_bytes() == (dataset.parent / "metadata.csv").read_bytes()

    # relabelling the relabelled manifest chains the reviews
    again = write_review(tmp_path / "again.csv", [(relabelled, "crying")],
                         columns=("label", "path"))
    second = relabel_manifest(out, again, out=tmp_path / "second")
    entry2 = json.loads((tmp_path / "second" / "dataset.json").read_text())["relabel"]
    assert entry2["parent"] == str((out / "manifest.csv").resolve())
    assert entry2["parent_sha256"] == file_sha256(out / "manifest.csv")
    assert entry2["changes"] == {"happy -> crying": 1} and entry2["previous"] == entry
    assert {r.path: r.label for r in second.manifest.rows}[relabelled] == "crying"
    assert len(second.manifest.rows) == len(new.rows)


def test_without_metadata_none_is_copied(prepared, tmp_path):
    path, = _of(prepared, "train", "angry")
    review = write_review(tmp_path / "r.csv", [(path, "crying")], columns=("path", "label"))
    result = relabel_manifest(prepared.parent, review, out=tmp_path / "new")
    assert not (tmp_path / "new" / "metadata.csv").exists()
    assert result.manifest.info["metadata"] is None
    assert result.changes == {"angry -> crying": 1}


def test_bad_rows_are_all_counted_and_named(dataset, tmp_path):
    a, b = _of(dataset, "train", "angry", 2)
    review = write_review(tmp_path / "review.csv", [
        (a, "happy"),                # line 2: fine
        ("angry/nope.png", "happy"),  # line 3: not in the manifest
        (a, "crying"),               # line 4: listed again
        (b, "joy"),                  # line 5: not a class
    ])
    with pytest.raises(DataError) as e:
        relabel_manifest(dataset, review, out=tmp_path / "new")
    message = str(e.value)
    assert "3 bad row(s)" in message
    assert "line 3: 'angry/nope.png' is not in the manifest" in message
    assert "line 4:" in message and "listed again (line 2)" in message
    assert "line 5: label 'joy'" in message and "line 2" not in message.split(";")[0]
    assert e.value.hint
    assert not (tmp_path / "new").exists()


def test_a_path_spelt_differently_is_the_same_row(dataset, tmp_path):
    a, = _of(dataset, "train", "angry")
    folder, name = a.split("/")
    review = write_review(tmp_path / "review.csv", [(a, "happy"), (f"{folder}//{name}", "")])
    with pytest.raises(DataError, match="listed again"):
        relabel_manifest(dataset, review, out=tmp_path / "new")
    review = write_review(tmp_path / "review.csv", [(f"./{folder}/{name}", "happy")])
    result = relabel_manifest(dataset, review, out=tmp_path / "new")
    assert {r.path: r.label for r in result.manifest.rows}[a] == "happy"


def test_test_rows_are_refused_unless_allowed(dataset, tmp_path):
    t_angry, = _of(dataset, "test", "angry")
    t_happy, = _of(dataset, "test", "happy")
    for label in ("crying", EXCLUDE):
        review = write_review(tmp_path / "review.csv", [(t_angry, label)])
        with pytest.raises(DataError, match="test image") as e:
            relabel_manifest(dataset, review, out=tmp_path / "new")
        assert "--allow-test" in e.value.hint
    assert not (tmp_path / "new").exists()
    # confirming a test row's label changes nothing: accepted
    review = write_review(tmp_path / "confirm.csv", [(t_happy, "happy")])
    assert relabel_manifest(dataset, review, out=tmp_path / "c").n_confirmed == 1

    review = write_review(tmp_path / "review.csv", [(t_angry, "crying"), (t_happy, "happy")])
    result = relabel_manifest(dataset, review, out=tmp_path / "new", allow_test=True)
    assert result.n_test_changed == 1 and result.n_confirmed == 1
    entry = result.manifest.info["relabel"]
    assert entry["test_changed"] == 1 and entry["allow_test"] is True
    assert {r.path: (r.split, r.label) for r in result.manifest.rows}[t_angry] == ("test",
                                                                                  "crying")


def test_a_class_left_empty_is_warned_and_everything_excluded_is_refused(dataset, tmp_path):
    manifest = read_manifest(dataset)
    happy = [r.path for r in manifest.rows if r.label == "happy"]
    review = write_review(tmp_path / "r.csv", [(p, "angry") for p in happy])
    result = relabel_manifest(dataset, review, out=tmp_path / "new", allow_test=True)
    assert result.manifest.class_names == ["angry", "crying"]
    assert len(result.warnings) == 1 and "happy" in result.warnings[0]

    review = write_review(tmp_path / "all.csv", [(r.path, EXCLUDE) for r in manifest.rows])
    with pytest.raises(DataError, match="excludes every image"):
        relabel_manifest(dataset, review, out=tmp_path / "none", allow_test=True)
    assert not (tmp_path / "none" / "manifest.csv").exists()


def test_the_original_folder_is_never_the_output(dataset, tmp_path):
    a, = _of(dataset, "train", "angry")
    review = write_review(tmp_path / "r.csv", [(a, "happy")])
    before = dataset.read_bytes()
    for out in (dataset.parent, dataset.parent / ".." / dataset.parent.name):
        with pytest.raises(ConfigError, match="--out"):  # its manifest.csv is an input
            relabel_manifest(dataset, review, out=out)
    renamed = dataset.parent / "reviewed-list.csv"  # a manifest under another file name
    renamed.write_bytes(before)
    with pytest.raises(ConfigError, match="never modified"):
        relabel_manifest(renamed, review, out=dataset.parent)
    with pytest.raises(ConfigError, match="--out"):  # inside the image root
        relabel_manifest(dataset, review, out=read_manifest(dataset).root / "new")
    assert dataset.read_bytes() == before


def test_review_files_without_the_columns_are_refused(dataset, tmp_path):
    a, = _of(dataset, "train", "angry")
    for columns, missing in ((("path", "given_label"), "label"),
                             (("file", "label"), "path")):
        review = write_review(tmp_path / "r.csv", [(a, "happy")], columns=columns)
        with pytest.raises(DataError, match=f"lacks the column\\(s\\) {missing}"):
            relabel_manifest(dataset, review, out=tmp_path / "new")
    with pytest.raises(DataError, match="No review file"):
        relabel_manifest(dataset, tmp_path / "missing.csv", out=tmp_path / "new")
    assert not (tmp_path / "new").exists()


def test_read_review_returns_lines_and_stripped_labels(tmp_path):
    review = tmp_path / "r.csv"
    review.write_bytes("\ufeffpath,label,note\na.png, happy ,x\nb.png,,y\n".encode())
    assert read_review(review) == [(2, "a.png", "happy"), (3, "b.png", "")]
