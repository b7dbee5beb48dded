"""Label audit (issue 19): cleanlab on the out-of-fold probabilities of a folds run.

The folds run is fabricated (``folds.json`` + ``oof_logits.npz`` written directly): a
few non-test rows have logits that strongly favour another class than their label.
"""

from __future__ import annotations

import csv
import json
import shutil
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from babyemo.data.preparation.manifest import read_manifest, write_manifest
from babyemo.errors import ConfigError, DataError, ManifestError, MissingDependencyError
from babyemo.evaluation.audit import (
    AUDIT_FILE,
    ISSUE_COLUMNS,
    ISSUES_FILE,
    AuditResult,
    AuditRow,
    audit_labels,
    conflict_groups,
    read_oof,
)
from tests.evaluation.audit_helpers import (
    CLASSES,
    DUP_TEST,
    DUP_TRAIN,
    MISLABELLED,
    TEMPERATURES,
    TEST_ROWS,
    make_manifest,
    write_folds_run,
)


@pytest.fixture(scope="module")
def folds_run(tmp_path_factory):
    """One prepared manifest and its fabricated folds run, shared by the module (read
    only: tests that change something copy it first)."""
    tmp = tmp_path_factory.mktemp("audit")
    with pytest.MonkeyPatch.context() as mp:  # prepare remembers the last dataset there
        mp.setenv("BABYEMO_HOME", str(tmp / "home"))
        manifest = make_manifest(tmp)
    return write_folds_run(manifest, tmp / "run")


def _read_csv(path: Path) -> tuple[list[str], list[dict[str, str]]]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        return list(reader.fieldnames or []), list(reader)


def test_mislabelled_rows_are_flagged_ranked_first_and_written(folds_run, tmp_path):
    manifest = read_manifest(folds_run.manifest)
    out = tmp_path / "audit"
    result = audit_labels(folds_run.manifest, folds_run.run, out=out, top=2)

    non_test = [r for r in manifest.rows if r.split != "test"]
    assert result.n == len(non_test) == len(folds_run.paths)
    assert result.n_test == len(TEST_ROWS) == len(manifest.rows) - len(non_test)
    assert result.test_flagged is None and result.class_names == list(CLASSES)
    assert result.manifest_sha256 == manifest.sha256()
    # the mislabelled rows, and only they, are flagged; most suspect (strongest) first
    assert [r.path for r in result.rows[:3]] == list(MISLABELLED)
    assert [r.path for r in result.suspects()] == list(MISLABELLED)
    assert result.n_issues == 3 and result.issues_per_class == dict.fromkeys(CLASSES, 1)
    for r in result.rows[:3]:
        assert r.issue and r.suggested_label == MISLABELLED[r.path][0]
        assert r.given_label == folds_run.labels[r.path] != r.suggested_label
    assert not any(r.issue for r in result.rows[3:])
    assert all(r.suggested_label == r.given_label for r in result.rows[3:])
    # quality = self-confidence: the out-of-fold probability (with the fold's T) of the label
    for r in result.rows:
        p = folds_run.probs(r.path)[CLASSES.index(r.given_label)]
        assert r.quality == pytest.approx(p, abs=1e-5)
    assert [r.rank for r in result.rows] == list(range(1, result.n + 1))
    assert [r.quality for r in result.rows] == sorted(r.quality for r in result.rows)

    columns, rows = _read_csv(out / ISSUES_FILE)
    assert tuple(columns) == ISSUE_COLUMNS == ("path", "split", "given_label",
                                               "suggested_label", "quality", "rank",
                                               "issue", "conflict_group")
    assert [r["path"] for r in rows] == [r.path for r in result.rows]
    assert not {r["path"] for r in rows} & set(TEST_ROWS)  # test rows are not audited
    assert [int(r["rank"]) for r in rows] == list(range(1, len(rows) + 1))
    assert [r["issue"] for r in rows] == ["True"] * 3 + ["False"] * (len(rows) - 3)
    split_of = {r.path: r.split for r in manifest.rows}
    for r, want in zip(rows, result.rows, strict=True):
        assert r["split"] == split_of[r["path"]] != "test"
        assert (r["given_label"], r["suggested_label"]) == (want.given_label,
                                                            want.suggested_label)
        assert float(r["quality"]) == pytest.approx(want.quality, abs=1e-5)
    # the byte-identical pair with conflicting labels is marked on both rows
    groups = {r["path"]: r["conflict_group"] for r in rows}
    assert [groups[p] for p in DUP_TRAIN] == ["exact-1", "exact-1"]
    assert {g for p, g in groups.items() if p not in DUP_TRAIN} == {""}

    report = json.loads((out / AUDIT_FILE).read_text(encoding="utf-8"))
    assert report["format"] == "babyemo-label-audit"
    assert report["manifest_sha256"] == manifest.sha256()
    assert Path(report["manifest"]) == manifest.path
    assert Path(report["oof_run"]) == folds_run.run
    assert report["n"] == result.n and report["n_issues"] == 3 and report["top"] == 2
    assert report["issues_per_class"] == dict.fromkeys(CLASSES, 1)
    assert report["n_test"] == len(TEST_ROWS) and report["test_flagged"] is None
    assert report["class_names"] == list(CLASSES) and report["cleanlab_version"]
    assert [g["paths"] for g in report["conflict_groups"]] == [list(DUP_TRAIN),
                                                              list(DUP_TEST)]
    assert report["conflict_groups"][1]["splits"] == ["test", "test"]  # test rows included
    assert "rows" not in report
    assert report["conflict_check"] == result.conflict_check()

    sheets = sorted(out.glob("suspects-*.png"))
    assert [p.name for p in sheets] == [f"suspects-{i}-{c}.png" for i, c in enumerate(CLASSES)]
    for i, c in enumerate(CLASSES):
        assert result.files[f"sheet:{c}"] == sheets[i]
        assert Path(report["files"][f"sheet:{c}"]) == sheets[i]
        with Image.open(sheets[i]) as img:
            img.load()
            assert img.format == "PNG" and img.width > 100 and img.height > 100
    assert result.files["issues"] == out / ISSUES_FILE
    assert result.files["audit"] == out / AUDIT_FILE

    # again into the same folder, the manifest taken from folds.json: the same ranking
    again = audit_labels(None, folds_run.run, out=out)
    assert again.manifest == manifest.path and again.top == 24
    assert _read_csv(out / ISSUES_FILE)[1] == rows


def test_conflict_groups_find_byte_identical_pairs_with_two_labels(folds_run):
    groups = conflict_groups(read_manifest(folds_run.manifest))
    assert groups == [
        {"id": "exact-1", "kind": "exact", "paths": list(DUP_TRAIN),
         "labels": ["angry", "happy"], "splits": ["train", "train"]},
        {"id": "exact-2", "kind": "exact", "paths": list(DUP_TEST),
         "labels": ["crying", "happy"], "splits": ["test", "test"]}]


def test_conflict_check_counts_flagged_groups_and_where_their_best_member_ranks(tmp_path):
    def row(path, label, rank, issue, split="train", suggested="x"):
        return AuditRow(path=path, split=split, given_label=label, suggested_label=suggested,
                        quality=rank / 100, rank=rank, issue=issue)

    rows = [row(f"r{i}.png", "a", i, i <= 10) for i in range(1, 101)]
    rows[0] = row("g1-a.png", "a", 1, True, suggested="b")  # group 1: both audited, one
    # flagged (suggested the other's label), at the top
    rows[49] = row("g1-b.png", "b", 50, False)
    rows[29] = row("g2-a.png", "a", 30, False)    # group 2: both audited, none flagged
    rows[59] = row("g2-b.png", "b", 60, False)
    rows[14] = row("g3-a.png", "a", 15, False)    # group 3: one audited + one test row
    test_rows = [row("g3-t.png", "b", 1, True, split="test"),
                 row("g4-t.png", "b", 2, False, split="test")]

    def group(n, kind, *paths):
        return {"id": f"{kind}-{n}", "kind": kind, "paths": list(paths), "labels": [],
                "splits": []}

    groups = [group(1, "exact", "g1-a.png", "g1-b.png"),
              group(2, "exact", "g2-a.png", "g2-b.png"),
              group(3, "exact", "g3-a.png", "g3-t.png"),
              group(4, "exact", "g4-t.png", "g4-u.png")]  # no audited member
    result = AuditResult(out=tmp_path, manifest=tmp_path / "m.csv", manifest_sha256="0",
                         oof_run=tmp_path, class_names=["a", "b"], rows=rows, n_issues=10,
                         issues_per_class={}, n_test=2, test_flagged=1,
                         conflict_groups=groups, top=24, cleanlab_version="",
                         test_rows=test_rows)
    check = result.conflict_check()
    assert list(check) == ["exact"]  # no near-duplicate groups: no entry
    # a random ranking: a group of m of the 100 images misses k marked ones with
    # probability C(100 - k, m) / C(100, m); audited sizes 2, 2, 1
    def random_hits(k):
        return 2 * (1 - (100 - k) / 100 * (99 - k) / 99) + k / 100

    assert check["exact"] == {
        "groups": 4, "audited_conflicts": 2, "audited_conflicts_flagged": 1,
        "audited_conflicts_resolved": 1, "with_audited": 3, "with_audited_flagged": 1,
        "best_percentile_median": pytest.approx(0.15),  # ranks 1, 30, 15 of 100
        "best_in_top_10": 1, "best_in_top_20": 2, "any_flagged": 2,
        "if_random": {"with_audited_flagged": pytest.approx(random_hits(10)),
                      "best_in_top_10": pytest.approx(random_hits(10)),
                      "best_in_top_20": pytest.approx(random_hits(20))}}
    assert random_hits(20) == pytest.approx(0.923232, abs=1e-6)
    assert "any_flagged" not in replace(result, test_rows=None).conflict_check()["exact"]
    # the flagged side suggested a third class: flagged, but not resolved
    rows[0] = row("g1-a.png", "a", 1, True, suggested="c")
    assert replace(result, rows=rows).conflict_check()["exact"][
        "audited_conflicts_resolved"] == 0


def test_read_oof_applies_each_fold_temperature(folds_run):
    paths, probs, classes = read_oof(folds_run.run)
    assert paths == folds_run.paths and classes == list(CLASSES)
    assert probs.dtype == np.float32 and probs.shape == (len(paths), 3)
    assert TEMPERATURES[0] != TEMPERATURES[1] and set(folds_run.fold.tolist()) == {1, 2}
    for i, p in enumerate(paths):
        assert probs[i] == pytest.approx(folds_run.probs(p), abs=1e-6)


def _copy_run(folds_run, tmp_path: Path) -> Path:
    return Path(shutil.copytree(folds_run.run, tmp_path / "run"))


def test_a_folder_that_is_not_a_folds_run_is_refused(folds_run, tmp_path):
    with pytest.raises(ConfigError, match="folds.json"):
        audit_labels(folds_run.manifest, tmp_path, out=tmp_path / "a")
    with pytest.raises(ConfigError, match="folds.json"):
        audit_labels(folds_run.manifest, tmp_path / "missing", out=tmp_path / "a")
    run = _copy_run(folds_run, tmp_path)
    (run / "folds.json").write_text('{"format": "something-else"}')
    with pytest.raises(ManifestError, match="folds plan"):
        audit_labels(folds_run.manifest, run, out=tmp_path / "a")
    (run / "folds.json").write_text("{not json")
    with pytest.raises(ManifestError, match="folds plan"):
        audit_labels(folds_run.manifest, run, out=tmp_path / "a")
    assert not (tmp_path / "a").exists()


def test_another_manifest_than_the_runs_is_refused(folds_run, tmp_path):
    manifest = read_manifest(folds_run.manifest)
    rows = [replace(r, label="happy") if r.path == "angry/angry_002.png" else r
            for r in manifest.rows]
    other = write_manifest(rows, tmp_path / "edited", info=manifest.info)
    with pytest.raises(ManifestError, match="SHA-256") as e:
        audit_labels(other, folds_run.run, out=tmp_path / "a")
    assert e.value.hint
    assert not (tmp_path / "a").exists()


def test_out_of_fold_predictions_must_cover_the_non_test_rows(folds_run, tmp_path):
    cases = {"missing": {"drop": 1}, "extra": {"extra": True}}
    for name, kw in cases.items():
        run = write_folds_run(folds_run.manifest, tmp_path / name, **kw).run
        with pytest.raises(DataError, match="do not match the non-test rows"):
            audit_labels(folds_run.manifest, run, out=tmp_path / f"out-{name}")
    run = _copy_run(folds_run, tmp_path)
    (run / "oof_logits.npz").unlink()  # an unfinished run
    with pytest.raises(DataError, match="did not finish"):
        audit_labels(folds_run.manifest, run, out=tmp_path / "a")
    with np.load(folds_run.run / "oof_logits.npz") as z:
        arrays = dict(z)
    np.savez(run / "oof_logits.npz", **{**arrays, "logits": arrays["logits"][:, :2]})
    with pytest.raises(DataError, match="not readable"):
        audit_labels(folds_run.manifest, run, out=tmp_path / "a")
    np.savez(run / "oof_logits.npz",
             **{**arrays, "class_names": np.array(["angry", "crying", "joy"])})
    with pytest.raises(DataError, match="no class happy"):
        audit_labels(folds_run.manifest, run, out=tmp_path / "a")


def test_output_folder_is_checked_before_any_work(folds_run, tmp_path):
    with pytest.raises(ConfigError, match="--out"):  # inside the image root (scanned data)
        audit_labels(folds_run.manifest, folds_run.run, out=folds_run.root / "audit")
    assert not (folds_run.root / "audit").exists()
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    with pytest.raises(ConfigError, match="--out"):
        audit_labels(folds_run.manifest, folds_run.run, out=a_file)
    (tmp_path / "out" / ISSUES_FILE).mkdir(parents=True)  # a file it writes is a folder
    with pytest.raises(ConfigError, match="--out"):
        audit_labels(folds_run.manifest, folds_run.run, out=tmp_path / "out")
    assert not (tmp_path / "out" / AUDIT_FILE).exists()


@pytest.mark.parametrize("top", [0, -3, True, 1.5])
def test_top_must_be_a_positive_int(folds_run, tmp_path, top):
    with pytest.raises(ConfigError, match="--top"):
        audit_labels(folds_run.manifest, folds_run.run, out=tmp_path / "a", top=top)


def test_missing_cleanlab_names_the_extra(folds_run, tmp_path, monkeypatch):
    for name in [m for m in sys.modules if m == "cleanlab" or m.startswith("cleanlab.")]:
        monkeypatch.setitem(sys.modules, name, None)
    monkeypatch.setitem(sys.modules, "cleanlab", None)
    with pytest.raises(MissingDependencyError, match="cleanlab") as e:
        audit_labels(folds_run.manifest, folds_run.run, out=tmp_path / "a")
    assert "audit" in e.value.hint
    assert not (tmp_path / "a").exists()


def test_contact_sheets_use_face_crops_and_survive_an_unreadable_image(tmp_path, caplog):
    manifest_path = make_manifest(tmp_path)
    manifest = read_manifest(manifest_path)
    face = {"box": (8.0, 8.0, 30.0, 30.0), "score": 0.9,
            "landmarks": ((16.0, 18.0), (30.0, 18.0), (23.0, 25.0), (17.0, 32.0), (29.0, 32.0))}
    rows = [replace(r, n_faces=1, face=face) for r in manifest.rows]
    manifest_path = write_manifest(rows, manifest_path.parent, info=manifest.info)
    broken = next(iter(MISLABELLED))
    (manifest.root / broken).write_bytes(b"not an image")
    run = write_folds_run(manifest_path, tmp_path / "run")
    with caplog.at_level("WARNING", logger="babyemo.evaluation.audit"):
        result = audit_labels(manifest_path, run.run, out=tmp_path / "audit", top=1)
    assert [r.path for r in result.suspects()] == list(MISLABELLED)
    assert any("Contact sheet" in m and broken in m for m in caplog.messages)
    for c in CLASSES:
        with Image.open(result.files[f"sheet:{c}"]) as img:
            img.load()
            assert img.format == "PNG"
