"""Bad input (issue #6) through the CLI: ``data prepare``, ``data inspect``, ``train``,
``evaluate`` and ``predict``.

Every case ends with either a clear one-line ``Error:`` (exit code 1, nothing written) or
a row/entry naming the file and the reason while the rest of the run completes. No file is
lost (every file is a manifest row, a skipped entry or a prediction row) and nothing
crashes (no exception other than the CLI's exit). ``docs/reliability.md`` lists the cases.

The file-level cases come from :data:`tests.bad_files.CASES`; each ``test_<command>_case``
test is one cell (case x command) of the matrix. The module-scoped fixtures run each
command once over a folder holding every case, with the tiny architecture trained one
epoch (through ``babyemo train``, on the readable cases) for evaluate and predict.
"""

from __future__ import annotations

import csv
import gc
import json
import os
import shutil
import types
from pathlib import Path

import pytest
from typer.testing import CliRunner

from babyemo.cli import app
from babyemo.data.loading.file_errors import FILE_ERROR_CODES
from tests.bad_files import BAD, CASES, READABLE, build_all, deny_read
from tests.conftest import make_imagefolder

runner = CliRunner()
CLASSES = ("angry", "crying", "happy")
BAD_IN_A_MANIFEST = [c for c in BAD if c != "newline_name"]
"""Bad cases that can be put in a manifest after prepare (a newline name is a valid image
that only ``data prepare`` refuses, for its name)."""
PREDICT_EXPECTED = {case: (None if case == "newline_name" else expected)
                    for case, (_, _, expected) in CASES.items()}
"""``predict`` reads files with any name: a newline in a name is one quoted CSV field."""


def run(*args) -> types.SimpleNamespace:
    """Invoke the CLI; fail on a crash (an exception other than the CLI's own exit)."""
    result = runner.invoke(app, [str(a) for a in args])
    crashed = result.exception is not None and not isinstance(result.exception, SystemExit)
    assert not crashed, f"crash: {result.exception!r}\n{result.output}"
    assert "Traceback" not in result.output
    return result


def assert_error(result, *fragments: str) -> str:
    """Exit 1 with exactly one ``Error:`` line on stderr, holding every fragment."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    return lines[0]


def entries(root: Path) -> set[str]:
    """Every entry below ``root`` that is not a folder (symlinks not followed), relative."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(root):
        names = filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]
        out |= {Path(dirpath, n).relative_to(root).as_posix() for n in names}
    return out


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """A babyemo home for the module-scoped runs (the autouse one is per test)."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BABYEMO_HOME", str(tmp_path_factory.mktemp("home")))
        for var in ("BABYEMO_DATASETS", "BABYEMO_MODELS", "BABYEMO_DEBUG"):
            mp.delenv(var, raising=False)
        yield


@pytest.fixture(scope="module")
def bad_folder(tmp_path_factory) -> Path:
    """Three class folders of 4 good images; ``happy/`` also holds every case."""
    root = make_imagefolder(tmp_path_factory.mktemp("bad") / "images", per_class=4)
    build_all(root / "happy")
    return root


@pytest.fixture(scope="module")
def prepared_bad(home, bad_folder, tmp_path_factory):
    out = tmp_path_factory.mktemp("prepared")
    result = run("data", "prepare", bad_folder, "--out", out)
    assert result.exit_code == 0, result.output
    rows = {r["path"]: r for r in csv.DictReader((out / "manifest.csv").open(encoding="utf-8"))}
    info = json.loads((out / "dataset.json").read_text(encoding="utf-8"))
    return types.SimpleNamespace(result=result, rows=rows, info=info,
                                 skipped={f["path"]: f for f in info["skipped_files"]})


@pytest.fixture(scope="module")
def inspected_bad(home, bad_folder):
    result = run("data", "inspect", bad_folder, "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    text = run("data", "inspect", bad_folder)
    assert text.exit_code == 0, text.output
    return types.SimpleNamespace(report=report, text=text.stdout,
                                 skipped={f["path"]: f for f in report["skipped_files"]})


@pytest.fixture(scope="module")
def trained(home, tiny_arch, tmp_path_factory):
    """Given train/val/test folders, every readable case in ``train/happy/``; prepared,
    trained one epoch and evaluated on every row, all through the CLI."""
    base = tmp_path_factory.mktemp("train")
    root = base / "images"
    make_imagefolder(root / "train", per_class=4)
    make_imagefolder(root / "val", per_class=2)
    make_imagefolder(root / "test", per_class=2)
    build_all(root / "train" / "happy", READABLE)
    prep = run("data", "prepare", root, "--out", base / "prepared")
    assert prep.exit_code == 0, prep.output
    manifest = base / "prepared" / "manifest.csv"
    rows = {r["path"]: r for r in csv.DictReader(manifest.open(encoding="utf-8"))}
    result = run("train", "--data", manifest, "--arch", tiny_arch, "--epochs", 1,
                 "--batch-size", 32, "--precision", "fp32", "--image-size", 24,
                 "--workers", 0, "--out", base / "run")
    assert result.exit_code == 0, result.output
    best = base / "run" / "best.pt"
    ev = run("evaluate", "--checkpoint", best, "--data", manifest, "--split", "all", "--json")
    assert ev.exit_code == 0, ev.output
    return types.SimpleNamespace(root=root, manifest=manifest, rows=rows, best=best,
                                 train_result=result, eval_report=json.loads(ev.stdout))


@pytest.fixture(scope="module")
def predicted_bad(home, bad_folder, trained, tmp_path_factory):
    out = tmp_path_factory.mktemp("predict")
    result = run("predict", bad_folder, "--checkpoint", trained.best, "--csv",
                 out / "out.csv", "--json", out / "out.json")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((out / "out.csv").open(encoding="utf-8", newline="")))
    data = json.loads((out / "out.json").read_text(encoding="utf-8"))
    return types.SimpleNamespace(result=result, rows={r["path"]: r for r in rows},
                                 n_rows=len(rows), json=data)


# --- the matrix: one test per case and command -------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
def test_prepare_case(prepared_bad, case):
    name, _, expected = CASES[case]
    rel = f"happy/{name}"
    if expected is None:
        assert rel in prepared_bad.rows and rel not in prepared_bad.skipped
    else:
        assert rel not in prepared_bad.rows
        assert expected in prepared_bad.skipped[rel]["reason"]
        listed = rel.replace("\n", "\\n") + ": " + prepared_bad.skipped[rel]["reason"]
        assert listed in prepared_bad.result.stdout  # the CLI names the file and reason


@pytest.mark.parametrize("case", list(CASES))
def test_inspect_case(inspected_bad, prepared_bad, case):
    name, _, expected = CASES[case]
    rel = f"happy/{name}"
    if expected is None:
        assert rel not in inspected_bad.skipped
    else:
        assert expected in inspected_bad.skipped[rel]["reason"]
        assert rel.replace("\n", "\\n") in inspected_bad.text
    assert inspected_bad.report["n_images"] == len(prepared_bad.rows)


@pytest.mark.parametrize("case", list(CASES))
def test_train_case(trained, case):
    """Readable cases are train rows that one epoch decoded; bad ones never reach a
    manifest (see test_prepare_case), and stale-manifest ones are tested below."""
    name, _, expected = CASES[case]
    rel = f"train/happy/{name}"
    if expected is None:
        assert trained.rows[rel]["split"] == "train"
        assert "best epoch 1" in trained.train_result.stdout
    else:
        assert rel not in trained.rows


@pytest.mark.parametrize("case", list(CASES))
def test_evaluate_case(trained, case):
    """Readable cases are rows that ``evaluate --split all`` decoded and counted."""
    rel = f"train/happy/{CASES[case][0]}"
    assert trained.eval_report["n"] == len(trained.rows)  # every row evaluated
    assert (rel in trained.rows) == (CASES[case][2] is None)


@pytest.mark.parametrize("case", list(CASES))
def test_predict_case(predicted_bad, bad_folder, case):
    name = CASES[case][0]
    expected = PREDICT_EXPECTED[case]
    row = predicted_bad.rows[str(bad_folder / "happy" / name)]
    if expected is None:
        assert row["error"] == "" and row["label"] in CLASSES
    else:
        assert row["label"] == "" and expected in row["error_detail"]
        assert row["error"] in FILE_ERROR_CODES  # a code; the reason is in error_detail


def test_predict_with_face_detection_over_every_case(bad_folder, trained, tmp_path,
                                                     monkeypatch):
    """The face-crop path (full-resolution decode, detector, crop) on every case: one row
    per file, the same reasons; needs the YuNet model file of ``../shared/models``."""
    from tests.conftest import SHARED_MODELS

    if not any(SHARED_MODELS.glob("face_detection_yunet*.onnx")):
        pytest.skip(f"no YuNet model file in {SHARED_MODELS}")
    monkeypatch.setenv("BABYEMO_MODELS", str(SHARED_MODELS))
    result = run("predict", bad_folder, "--checkpoint", trained.best, "--faces", "yunet",
                 "--no-face-fallback", "full", "--csv", tmp_path / "faces.csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "faces.csv").open(encoding="utf-8", newline="")))
    by_path = {r["path"]: r for r in rows}  # one row per face, or per file without one
    assert set(by_path) == {str(bad_folder / rel) for rel in entries(bad_folder)}
    for case, expected in PREDICT_EXPECTED.items():
        row = by_path[str(bad_folder / "happy" / CASES[case][0])]
        assert (row["error"] == "") if expected is None else (expected in row["error_detail"]), \
            case


# --- nothing lost ------------------------------------------------------------------------


def test_prepare_and_inspect_lose_no_file(prepared_bad, inspected_bad, bad_folder):
    on_disk = entries(bad_folder)
    accounted = set(prepared_bad.rows) | set(prepared_bad.skipped)
    assert accounted == on_disk, on_disk ^ accounted
    skipped = sum(prepared_bad.info["skipped"].values())
    assert len(prepared_bad.rows) + skipped == len(on_disk)
    assert f"Skipped: {skipped} (" in prepared_bad.result.stdout
    assert inspected_bad.report["skipped"] == prepared_bad.info["skipped"]


def test_predict_loses_no_file(predicted_bad, bad_folder):
    on_disk = {str(bad_folder / rel) for rel in entries(bad_folder)}
    assert set(predicted_bad.rows) == on_disk and predicted_bad.n_rows == len(on_disk)
    assert len(predicted_bad.json) == len(on_disk)
    failed = sum(1 for r in predicted_bad.rows.values() if r["error"])
    assert f"{len(on_disk)} files, {len(on_disk)} rows" in predicted_bad.result.stdout
    assert f"errors: {failed} files could not be read" in predicted_bad.result.stdout


# --- a manifest that went stale after prepare: a file replaced by a bad one ---------------


def _stale(tmp_path, case, split):
    """A prepared dataset one of whose ``split`` files is then replaced by ``case``."""
    from babyemo.data.preparation.prepare import prepare

    root = make_imagefolder(tmp_path / "images", per_class=4)
    manifest = prepare(root, out=tmp_path / "prepared", split=(0.5, 0.25, 0.25)).manifest
    row = next(r for r in manifest.rows if r.split == split)
    target = manifest.resolve(row)
    target.unlink()
    CASES[case][1](target)
    return manifest.path, target


@pytest.mark.parametrize("case", BAD_IN_A_MANIFEST)
def test_train_stale_manifest_case(tmp_path, tiny_arch, case):
    manifest, target = _stale(tmp_path, case, "train")
    result = run("train", "--data", manifest, "--arch", tiny_arch, "--epochs", 1,
                 "--precision", "fp32", "--image-size", 24, "--workers", 0,
                 "--out", tmp_path / "run")
    _assert_stale_error(result, target, case)
    assert not (tmp_path / "run" / "best.pt").exists()
    assert not (tmp_path / "run" / "last.pt").exists()


def _assert_stale_error(result, target, case):
    """A file that is no longer a regular file (a link loop, a FIFO...) is refused before
    the run as missing or unreachable; one that is there but bad, when it is decoded."""
    line = assert_error(result)
    if "missing or unreachable" in line:
        assert f"{target.parent.name}/{target.name}" in line, line
    else:
        assert str(target) in line and CASES[case][2] in line, line


@pytest.mark.parametrize("case", BAD_IN_A_MANIFEST)
def test_evaluate_stale_manifest_case(tmp_path, trained, case):
    manifest, target = _stale(tmp_path, case, "test")
    result = run("evaluate", "--checkpoint", trained.best, "--data", manifest,
                 "--out", tmp_path / "eval")
    _assert_stale_error(result, target, case)
    assert not (tmp_path / "eval").exists()


def test_train_error_from_a_worker_process_is_one_line(tmp_path, tiny_arch):
    manifest, target = _stale(tmp_path, "zero_byte", "train")
    result = run("train", "--data", manifest, "--arch", tiny_arch, "--epochs", 1,
                 "--precision", "fp32", "--image-size", 24, "--workers", 1,
                 "--out", tmp_path / "run")
    assert_error(result, str(target), "empty file")
    assert "DataLoader worker" not in result.stderr
    del result
    gc.collect()  # shut the worker down now, not in a later test


# --- folders: empty, without images, one class, disappearing, unreadable ------------------


@pytest.mark.parametrize("command", ["prepare", "inspect", "predict"])
def test_empty_folder(tmp_path, command, trained):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".DS_Store").write_bytes(b"\0")
    args = {"prepare": ("data", "prepare", empty, "--out", tmp_path / "out"),
            "inspect": ("data", "inspect", empty),
            "predict": ("predict", empty, "--checkpoint", trained.best, "--csv",
                        tmp_path / "out.csv")}[command]
    fragment = "No files to predict on" if command == "predict" else "has no class folders"
    assert_error(run(*args), str(empty), fragment)
    assert not (tmp_path / "out").exists() and not (tmp_path / "out.csv").exists()


@pytest.mark.parametrize("command", ["train", "evaluate"])
def test_empty_manifest(tmp_path, command, tiny_arch, trained):
    folder = tmp_path / "prepared"
    folder.mkdir()
    (folder / "manifest.csv").write_text("path,label,split,sha256,width,height,format,dhash\n")
    args = {"train": ("train", "--data", folder, "--arch", tiny_arch, "--out", tmp_path / "r"),
            "evaluate": ("evaluate", "--checkpoint", trained.best, "--data", folder,
                         "--out", tmp_path / "r")}[command]
    assert_error(run(*args), "has no rows")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["prepare", "inspect"])
def test_class_folder_without_images(tmp_path, command):
    root = make_imagefolder(tmp_path / "images", per_class=3)
    (root / "sleepy").mkdir()
    (root / "bored").mkdir()
    (root / "bored" / "broken.jpg").write_bytes(b"")
    args = (("data", "prepare", root, "--out", tmp_path / "out") if command == "prepare"
            else ("data", "inspect", root))
    result = run(*args)
    assert result.exit_code == 0, result.output
    for cls in ("bored", "sleepy"):
        if command == "prepare":  # a warning of a command that writes: stderr
            assert f"Warning: class folder '{cls}' has no readable image" in result.stderr
        else:  # a finding of inspect: its result, stdout
            assert f"- class folder '{cls}' has no readable image" in result.stdout
    assert "bored/broken.jpg: empty file." in result.stdout


@pytest.mark.parametrize("command", ["prepare", "inspect"])
def test_one_class_only(tmp_path, command):
    root = make_imagefolder(tmp_path / "images", classes=("happy",), per_class=3)
    args = (("data", "prepare", root, "--out", tmp_path / "out") if command == "prepare"
            else ("data", "inspect", root))
    assert_error(run(*args), "one class only ('happy')")
    assert not (tmp_path / "out").exists()


def test_train_on_one_class_only(tmp_path, prepared, tiny_arch):
    from babyemo.data.preparation.manifest import read_manifest, write_manifest

    manifest = read_manifest(prepared)
    one = write_manifest([r for r in manifest.rows if r.label == "happy"], tmp_path / "one",
                         dict(manifest.info))
    result = run("train", "--data", one, "--arch", tiny_arch, "--out", tmp_path / "run")
    assert_error(result, "has 1 class(es)")
    assert not (tmp_path / "run").exists()


def test_evaluate_on_one_class_only(tmp_path, prepared, checkpoint):
    """A test split holding one of the model's classes is evaluated (handled)."""
    from babyemo.data.preparation.manifest import read_manifest, write_manifest

    manifest = read_manifest(prepared)
    one = write_manifest([r for r in manifest.rows if r.label == "happy"], tmp_path / "one",
                         dict(manifest.info))
    result = run("evaluate", "--checkpoint", checkpoint, "--data", one, "--out",
                 tmp_path / "ev")
    assert result.exit_code == 0, result.output
    n_test = len([r for r in manifest.rows if r.label == "happy" and r.split == "test"])
    assert len((tmp_path / "ev" / "predictions.csv").read_text().splitlines()) == n_test + 1


def test_label_not_in_the_checkpoint(tmp_path, prepared, trained):
    checkpoint = trained.best
    from babyemo.data.preparation.manifest import read_manifest, write_manifest

    manifest = read_manifest(prepared)
    for row in manifest.rows:
        if row.label == "crying":
            row.label = "sleepy"
    renamed = write_manifest(manifest.rows, tmp_path / "renamed", dict(manifest.info))
    result = run("evaluate", "--checkpoint", checkpoint, "--data", renamed, "--out",
                 tmp_path / "ev")
    assert_error(result, "['sleepy']", "not among the model's class names")
    assert not (tmp_path / "ev").exists()


@pytest.mark.parametrize("command", ["train", "evaluate", "inspect"])
def test_manifest_row_whose_file_is_missing(tmp_path, prepared, trained, tiny_arch, command):
    checkpoint = trained.best
    from babyemo.data.preparation.manifest import read_manifest

    manifest = read_manifest(prepared)
    split = "test" if command == "evaluate" else "train"
    row = next(r for r in manifest.rows if r.split == split)
    manifest.resolve(row).unlink()
    if command == "inspect":
        result = run("data", "inspect", prepared)
        assert result.exit_code == 0, result.output
        assert "1 file(s) of the manifest are missing" in result.stdout
        assert f"{row.path}: missing" in result.stdout
        return
    out = tmp_path / "out"
    args = (("train", "--data", prepared, "--arch", tiny_arch, "--epochs", 1, "--workers", 0,
             "--image-size", 24, "--out", out) if command == "train"
            else ("evaluate", "--checkpoint", checkpoint, "--data", prepared, "--out", out))
    assert_error(run(*args), row.path, "missing or unreachable")
    assert not (out / "best.pt").exists() and not (out / "report.json").exists()
    # checked before anything is written: the same --out works again without --overwrite
    assert not out.exists() or not any(out.iterdir())


@pytest.mark.parametrize("command", ["prepare", "inspect"])
def test_folder_disappears_mid_scan(tmp_path, monkeypatch, command):
    from babyemo.data.preparation import scan

    root = make_imagefolder(tmp_path / "images", per_class=4)
    (root / "angry" / "more").mkdir()
    for i in range(2):
        shutil.copy(root / "angry" / "angry_000.png", root / "angry" / "more" / f"m{i}.png")
    real_probe = scan.probe_image

    def probe_then_vanish(path):
        if (root / "angry" / "more").exists():
            shutil.rmtree(root / "angry" / "more")
        return real_probe(path)

    monkeypatch.setattr(scan, "probe_image", probe_then_vanish)
    args = (("data", "prepare", root, "--out", tmp_path / "out") if command == "prepare"
            else ("data", "inspect", root))
    result = run(*args)
    assert result.exit_code == 0, result.output
    for i in range(2):
        assert f"angry/more/m{i}.png: file not found (deleted or moved while running?)" \
            in result.stdout
    assert "unreadable 2" in result.stdout


def test_folder_disappears_mid_predict(tmp_path, monkeypatch, trained):
    from babyemo.data.loading import folders

    photos = make_imagefolder(tmp_path / "photos", per_class=2)
    real_find = folders.collect_input_files  # predict lists the files before loading the model

    def find_then_vanish(*args, **kwargs):
        found = real_find(*args, **kwargs)
        shutil.rmtree(photos / "crying")
        return found

    monkeypatch.setattr(folders, "collect_input_files", find_then_vanish)
    result = run("predict", photos, "--checkpoint", trained.best, "--csv", tmp_path / "o.csv")
    assert result.exit_code == 0, result.output
    rows = list(csv.DictReader((tmp_path / "o.csv").open()))
    assert len(rows) == 6 and "6 files, 6 rows" in result.stdout
    assert "errors: 2 files could not be read (unreadable 2)" in result.stdout
    gone = [r for r in rows if "/crying/" in r["path"]]
    assert all(r["error"] == "unreadable" and r["error_detail"].startswith("file not found")
               for r in gone) and len(gone) == 2


@pytest.mark.parametrize("command", ["train", "evaluate", "inspect"])
def test_dataset_folder_gone_after_prepare(tmp_path, prepared, trained, tiny_arch, command):
    checkpoint = trained.best
    shutil.rmtree(prepared.parent.parent / "images")
    args = {"train": ("train", "--data", prepared, "--arch", tiny_arch, "--out", tmp_path / "r"),
            "evaluate": ("evaluate", "--checkpoint", checkpoint, "--data", prepared),
            "inspect": ("data", "inspect", prepared)}[command]
    assert_error(run(*args), "does not exist")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize("command", ["prepare", "inspect", "predict"])
def test_unreadable_file(tmp_path, monkeypatch, command, trained):
    root = make_imagefolder(tmp_path / "images", per_class=3)
    locked = root / "happy" / "happy_001.png"
    deny_read(locked, monkeypatch)
    if command == "predict":
        result = run("predict", root, "--checkpoint", trained.best, "--csv", tmp_path / "o.csv")
        rows = {r["path"]: r for r in csv.DictReader((tmp_path / "o.csv").open())}
        assert len(rows) == 9 and (rows[str(locked)]["error"],
                                   rows[str(locked)]["error_detail"]) == ("unreadable",
                                                                          "permission denied")
        assert "errors: 1 file could not be read (unreadable 1)" in result.stdout
        return
    args = (("data", "prepare", root, "--out", tmp_path / "out") if command == "prepare"
            else ("data", "inspect", root))
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "happy/happy_001.png: permission denied." in result.stdout


@pytest.mark.parametrize("command", ["prepare", "predict"])
def test_unreadable_folder(tmp_path, monkeypatch, command, trained):
    root = make_imagefolder(tmp_path / "images", per_class=3)
    (root / "happy" / "sub").mkdir()
    shutil.copy(root / "happy" / "happy_000.png", root / "happy" / "sub" / "x.png")
    locked = root / "happy" / "sub"
    if os.geteuid() != 0:
        locked.chmod(0)
    else:  # root reads any folder: make listing this one fail as it would for a user
        real_scandir = os.scandir
        monkeypatch.setattr(os, "scandir", lambda p=".": (
            _raise(PermissionError(13, "Permission denied", str(p)))
            if os.fspath(p) == str(locked) else real_scandir(p)))
    try:
        if command == "predict":
            result = run("predict", root, "--checkpoint", trained.best, "--csv",
                         tmp_path / "o.csv")
            rows = {r["path"]: r for r in csv.DictReader((tmp_path / "o.csv").open())}
            assert rows[str(locked)]["error_detail"] == "cannot list folder (permission denied)"
            assert len(rows) == 10
        else:
            result = run("data", "prepare", root, "--out", tmp_path / "out")
            assert "happy/sub: cannot list folder (permission denied)" in result.stdout
        assert result.exit_code == 0, result.output
    finally:
        locked.chmod(0o755)


def _raise(error):
    raise error


@pytest.mark.parametrize("command", ["prepare", "predict"])
def test_special_files_and_folder_loops(tmp_path, command, trained):
    """A FIFO named like an image (reading it would hang), a folder link back up (a loop)
    and a name that is not UTF-8."""
    root = make_imagefolder(tmp_path / "images", per_class=3)
    os.mkfifo(root / "happy" / "pipe.jpg")
    (root / "happy" / "again").symlink_to(root / "happy", target_is_directory=True)
    bad_name = os.fsdecode(b"caf\xe9.png")  # Latin-1 bytes on a UTF-8 file system
    shutil.copy(root / "happy" / "happy_000.png", root / "happy" / bad_name)
    if command == "prepare":
        result = run("data", "prepare", root, "--out", tmp_path / "out")
        assert result.exit_code == 0, result.output
        assert "happy/pipe.jpg: not a regular file (a pipe, socket or device)" in result.stdout
        assert "happy/caf\\xe9.png: file or folder name is not valid UTF-8" in result.stdout
        info = json.loads((tmp_path / "out" / "dataset.json").read_text(encoding="utf-8"))
        assert info["skipped"] == {"not_a_file": 1, "unsupported_name": 1}
        return
    result = run("predict", root, "--checkpoint", trained.best, "--csv", tmp_path / "o.csv")
    assert result.exit_code == 0, result.output
    rows = {r["path"]: r for r in csv.DictReader((tmp_path / "o.csv").open(encoding="utf-8"))}
    assert rows[str(root / "happy" / "pipe.jpg")]["error"] == "not_a_file"
    assert rows[str(root / "happy" / "again")]["error"] == "link_loop"
    assert rows[str(root / "happy" / "again")]["error_detail"].startswith("link to a folder")
    assert rows[str(root / "happy" / "caf\\xe9.png")]["error"] == ""
    assert len(rows) == 12
