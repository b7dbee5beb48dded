"""inspect_dataset: synthetic problems are found; the real FER-2013 defects are found."""

from __future__ import annotations

import json
import shutil
import time

import pytest
from PIL import Image

from babyemo.data.inspection.report import inspect_dataset
from babyemo.data.preparation.prepare import prepare
from babyemo.errors import DataError
from tests.data.helpers import make_distinct_folder, save_pattern


def _problem_dataset(root):
    """Given train/test splits with leaks, a label conflict, imbalance and odd files."""
    make_distinct_folder(root / "train", classes=("angry", "crying"), per_class=12)
    make_distinct_folder(root / "train", classes=("happy",), per_class=4, seed0=50)
    make_distinct_folder(root / "test", per_class=3, seed0=900)
    shutil.copy(root / "train/angry/angry_000.png", root / "test/angry/leak.png")
    shutil.copy(root / "train/angry/angry_001.png", root / "train/crying/mislabel.png")
    Image.open(root / "train/happy/happy_000.png").convert("RGB").save(
        root / "test/happy/near.jpg", quality=70)
    save_pattern(root / "train/happy/webp_named.jpg", 4242, fmt="WEBP")
    Image.new("L", (48, 48), 90).save(root / "train/crying/flat.png")
    (root / "train/angry/broken.png").write_bytes(b"\x89PNG\r\n\x1a\n truncated")
    return root


def _check_problem_report(r, kind):
    assert r.kind == kind and r.n_images == 12 + 14 + 5 + 9 + 2
    assert r.class_names == ["angry", "crying", "happy"]
    assert r.counts == {"train": {"angry": 12, "crying": 14, "happy": 5},
                        "test": {"angry": 4, "crying": 3, "happy": 4}}
    assert r.imbalance["train"] == pytest.approx(14 / 5, abs=1e-3)
    assert r.exact_duplicates.groups == 2 and r.exact_duplicates.images == 4
    assert r.exact_duplicates.spanning_splits == 1
    assert r.exact_duplicates.conflicting_labels == 1
    assert r.near_duplicates.groups == 1 and r.near_duplicates.spanning_splits == 1
    assert r.near_duplicates.conflicting_labels == 0
    assert any("near.jpg" in p for p in r.near_duplicates.examples[0])
    assert r.formats == {"PNG": 40, "WEBP": 1, "JPEG": 1}
    assert r.extension_mismatches == 1
    assert r.extension_mismatch_examples == [{"path": "train/happy/webp_named.jpg",
                                              "format": "WEBP"}]
    assert r.near_blank == ["train/crying/flat.png"]
    assert r.modes == {"L": 1, "RGB": 41}
    assert [u["path"] for u in r.unreadable] == ["train/angry/broken.png"]
    assert r.skipped == {"unreadable": 1}
    assert r.sizes["width"] == {"min": 48, "median": 48.0, "max": 48}
    text = " | ".join(r.warnings)
    for phrase in ("byte-identical images span splits", "conflicting labels",
                   "near-duplicate group(s) span splits", "1 unreadable", "near-blank",
                   "does not match their format"):
        assert phrase in text, phrase


def test_inspect_folder_and_manifest_agree(tmp_path):
    root = _problem_dataset(tmp_path / "toy")
    folder_report = inspect_dataset(root)
    prepared = prepare(root, out=tmp_path / "prep", split=(0.85, 0.0, 0.15))  # no val carved
    assert any("no validation split" in w for w in prepared.warnings)
    manifest_report = inspect_dataset(prepared.manifest_path)
    for r, kind in ((folder_report, "folder"), (manifest_report, "manifest")):
        assert r.imbalance["all"] == pytest.approx(17 / 9, abs=1e-3)  # crying 17, happy 9
        assert any(w.startswith("class imbalance 1.89:1") for w in r.warnings)
        r.warnings = [w for w in r.warnings if not w.startswith("class imbalance")]
        _check_problem_report(r, kind)
    assert manifest_report.near_duplicate_distance == folder_report.near_duplicate_distance
    json.dumps(manifest_report.to_dict(), allow_nan=False)
    assert inspect_dataset(prepared.manifest_path.parent).n_images == 42


def test_imbalance_and_missing_class_warnings(tmp_path):
    root = tmp_path / "d"
    make_distinct_folder(root / "train", classes=("a", "b"), per_class=8)
    make_distinct_folder(root / "train", classes=("c",), per_class=2, seed0=77)
    make_distinct_folder(root / "test", classes=("a", "b"), per_class=2, seed0=500)
    r = inspect_dataset(root)
    assert r.imbalance == {"all": 5.0, "train": 4.0, "test": None}
    text = " | ".join(r.warnings)
    assert "class imbalance 5.00:1 (largest 'a' 10, smallest 'c' 2)" in text
    assert "split 'test' has no images of c" in text
    d = r.to_dict()
    assert d["imbalance"]["test"] is None and json.loads(json.dumps(d)) == d


def test_unsplit_folder_counts_as_all(tmp_path):
    root = make_distinct_folder(tmp_path / "plain", per_class=4)
    r = inspect_dataset(root)
    assert r.counts == {"all": {"angry": 4, "crying": 4, "happy": 4}}
    assert r.imbalance == {"all": 1.0} and r.warnings == [] and r.catalogue is None
    assert r.exact_duplicates.groups == 0 and r.near_duplicates.groups == 0


def test_metadata_distribution_and_subject_leak(tmp_path):
    root = tmp_path / "d"
    make_distinct_folder(root / "train", per_class=4)
    make_distinct_folder(root / "val", per_class=2, seed0=300)
    make_distinct_folder(root / "test", per_class=2, seed0=600)
    lines = ["path,age_months,sex,subject_id"]
    for p in sorted(root.rglob("*.png")):
        rel = p.relative_to(root).as_posix()
        subject = "twin-1" if rel in ("train/angry/angry_000.png", "test/happy/happy_001.png") \
            else rel
        lines.append(f"{rel},{6 if 'angry' in rel else 12},{'f' if 'happy' in rel else 'm'},"
                     f"{subject}")
    meta = tmp_path / "meta.csv"
    meta.write_text("\n".join(lines) + "\n")
    prepared = prepare(root, out=tmp_path / "prep", metadata=meta)
    r = inspect_dataset(prepared.manifest_path)
    md = r.metadata
    assert md["images_with_metadata"] == 24 and md["columns"] == ["age_months", "sex",
                                                                  "subject_id"]
    assert md["by_class"]["sex"] == {"angry": {"m": 8}, "crying": {"m": 8}, "happy": {"f": 8}}
    assert md["by_class"]["age_months"]["angry"] == {"n": 8, "missing": 0, "min": 6.0,
                                                     "median": 6.0, "max": 6.0}
    assert md["by_split"]["sex"]["train"] == {"m": 8, "f": 4}
    assert md["subjects"]["in_several_splits"] == 1 and md["subjects"]["examples"] == ["twin-1"]
    assert any("subject(s) appear in more than one split" in w for w in r.warnings)


def test_catalogue_notes_for_known_names(tmp_path):
    root = make_distinct_folder(tmp_path / "fer2013", per_class=3)
    r = inspect_dataset(root)
    assert r.catalogue is not None and "duplicates" in r.catalogue["demographics"]
    assert r.catalogue["terms"] and r.catalogue["citation"]


def test_nothing_to_inspect(tmp_path):
    with pytest.raises(DataError, match="Nothing to inspect"):
        inspect_dataset(tmp_path / "missing")


@pytest.mark.realdata
def test_inspect_full_fer2013(fer_dir):
    start = time.perf_counter()
    r = inspect_dataset(fer_dir)
    elapsed = time.perf_counter() - start
    assert r.n_images == 35887 and r.skipped == {}
    assert sum(r.counts["train"].values()) == 28709 and sum(r.counts["test"].values()) == 7178
    assert r.counts["train"] == {"angry": 3995, "disgust": 436, "fear": 4097, "happy": 7215,
                                 "neutral": 4965, "sad": 4830, "surprise": 3171}
    # the documented defects of FER-2013 (../shared/data/README.md)
    assert r.exact_duplicates.groups == 1516
    assert r.exact_duplicates.spanning_splits == 531
    assert r.exact_duplicates.conflicting_labels == 57
    assert len(r.near_blank) == 13
    assert r.near_duplicate_distance == 2
    assert 300 <= r.near_duplicates.groups <= 800 and r.near_duplicates.spanning_splits > 0
    assert r.modes == {"L": 35887} and r.formats == {"JPEG": 35887}
    assert r.imbalance["all"] == pytest.approx(8989 / 547, abs=1e-3)
    text = " | ".join(r.warnings)
    assert "531 group(s) of byte-identical images span splits" in text
    assert "13 near-blank" in text
    assert elapsed < 60, f"inspect took {elapsed:.1f}s"


@pytest.mark.realdata
def test_inspect_infant_folder(infant_dir):
    r = inspect_dataset(infant_dir)
    assert r.n_images == 1020 and r.counts == {"all": {"angry": 340, "crying": 340,
                                                       "happy": 340}}
    assert r.formats == {"JPEG": 978, "WEBP": 33, "PNG": 9} and r.extension_mismatches == 0
    assert r.exact_duplicates.groups == 0
    assert 25 <= r.near_duplicates.groups <= 40 and 1 <= r.near_duplicates.conflicting_labels
    assert r.catalogue is not None and "light-skinned" in r.catalogue["demographics"]
    assert r.near_blank == []
