"""``babyemo predict`` as a new user meets it (issue 12): arguments checked before the model
loads, a summary that separates unreadable files from photos without a face and skipped
non-images, readable at 80 columns, and ``--strict`` failing on unreadable files only."""

from __future__ import annotations

import csv
import io
import re
import types
from pathlib import Path

import pytest
from rich.console import Console
from typer.testing import CliRunner

from babyemo.cli import app
from babyemo.cli.predict import _say_wrapped, summary_lines
from babyemo.data.loading.dataset import FaceDetection
from babyemo.faces import register_detector
from babyemo.prediction import PredictResult
from tests.conftest import make_checkpoint, make_image

runner = CliRunner()

NEVER = "cli_never"
CORNER = "cli_corner"


class _Never:
    name = NEVER

    def detect(self, image):
        return []


class _Corner:
    """A face in the middle unless the top-left pixel is white."""

    name = CORNER

    def detect(self, image):
        from babyemo.faces import Face

        if image.convert("RGB").getpixel((0, 0)) == (255, 255, 255):
            return []
        w, h = image.size
        return [Face(box=(w * 0.2, h * 0.2, w * 0.6, h * 0.6), score=0.9)]


register_detector(NEVER, description="test: finds no face")(_Never)
register_detector(CORNER, description="test: a face unless the corner is white")(_Corner)


@pytest.fixture
def model(tiny_arch, tmp_path):
    return make_checkpoint(tmp_path / "m.pt", tiny_arch)


def _error_line(result) -> str:
    assert result.exit_code == 1, result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.fixture
def never_load(monkeypatch):
    """Fail the test if the command imports the model before rejecting its arguments."""
    from babyemo import prediction

    def loaded(*args, **kwargs):
        raise AssertionError("the model was loaded before the arguments were checked")

    monkeypatch.setattr(prediction, "Predictor", loaded)


@pytest.mark.parametrize("args, fragment", [
    (["{tmp}/missing"], "No such file or folder: {tmp}/missing"),
    (["{photos}", "--csv", "{tmp}"], "--csv {tmp} is a folder, not a file"),
    (["{photos}", "--csv", "{photos}/a.png/out.csv"], "is a file, not a folder"),
    (["{photos}", "--csv", "{tmp}/o", "--json", "{tmp}/o"], "--csv and --json are the same"),
    (["{photos}", "--save-crops", "{photos}/a.png"], "--save-crops {photos}/a.png is a file"),
    (["{photos}", "--checkpoint", "{tmp}/nope.pt"], "Checkpoint not found: {tmp}/nope.pt"),
    (["{photos}", "--model", "nope"], "Unknown trained model 'nope'"),
    (["{photos}", "--faces", "yunett"], "Unknown face detector 'yunett'"),
    (["{tmp}/only-text"], "No files to predict on in {tmp}/only-text (1 non-image file "
                          "skipped)"),
])
def test_bad_arguments_fail_before_the_model_loads(tmp_path, never_load, args, fragment):
    photos = tmp_path / "photos"
    make_image(photos / "a.png")
    (tmp_path / "only-text").mkdir()
    (tmp_path / "only-text" / "readme.txt").write_text("x")
    fill = {"tmp": str(tmp_path), "photos": str(photos)}
    result = runner.invoke(app, ["predict", *[a.format(**fill) for a in args]])
    assert fragment.format(**fill) in _error_line(result)
    assert not (tmp_path / "o").exists()


def _mixed_folder(root):
    """Two photos with a face, one without (white corner), one empty, one truncated, a
    text file named .jpg, a readme.txt and a hidden file."""
    from PIL import Image

    make_image(root / "face1.png", color=(200, 40, 40), size=(48, 48))
    make_image(root / "face2.jpg", color=(40, 40, 200), size=(48, 48))
    white = make_image(root / "noface.png", color=(200, 40, 40), size=(48, 48))
    img = Image.open(white).convert("RGB")
    img.putpixel((0, 0), (255, 255, 255))
    img.save(white)
    (root / "empty.jpg").write_bytes(b"")
    data = (root / "face2.jpg").read_bytes()
    (root / "cut.jpg").write_bytes(data[: len(data) // 2])
    (root / "notes.jpg").write_text("not a photo\n" * 10)
    (root / "readme.txt").write_text("photos of the lab\n")
    (root / ".DS_Store").write_bytes(b"\0\0")
    return root


def test_summary_separates_errors_no_face_and_skipped(model, tmp_path):
    photos = _mixed_folder(tmp_path / "photos")
    out = tmp_path / "o.csv"
    result = runner.invoke(app, ["predict", str(photos), "--checkpoint", str(model),
                                 "--faces", CORNER, "--csv", str(out), "--strict",
                                 "--no-face-fallback", "error"])
    assert result.exit_code == 1, result.output  # --strict: 3 files could not be read
    text = result.stdout
    assert re.search(r"^6 files, 6 rows in \d+\.\d s \(\d+\.\d files/s\), after \d+\.\d s "
                     r"loading the model$", text, re.M), text
    assert f"faces ({CORNER}): 2 photos with a face, 0 of them with several" in text
    assert ("no face found in 1 photo: rows with error=no_face (no answer; --no-face-fallback "
            "error), not counted as errors" in " ".join(text.split()))
    assert ("errors: 3 files could not be read (empty_file 1, not_an_image 1, truncated 1)"
            in text)
    assert "skipped: 1 non-image file (--all-files tries them), 1 hidden entry" in text
    assert re.search(r"^face detection: \d+\.\d s \(\d+% of the time\)$|^face detection: "
                     r"\d+\.\d s summed over \d+ parallel (readers|worker processes) "
                     r"\(\d+% of their time\)$", text, re.M), text
    assert "Error: 3 files could not be read (--strict)." in result.stderr
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(out.open())}
    assert set(rows) == {"face1.png", "face2.jpg", "noface.png", "empty.jpg", "cut.jpg",
                         "notes.jpg"}
    assert rows["noface.png"]["error"] == "no_face" and rows["noface.png"]["face"] == ""
    assert rows["face1.png"]["face"] == "detected" and rows["face1.png"]["face_index"] == "0"
    assert rows["cut.jpg"]["error"] == "truncated" and "truncated JPEG file" in \
        rows["cut.jpg"]["error_detail"]
    # the default: the photo without a face is classified whole, and its row says so
    result = runner.invoke(app, ["predict", str(photos), "--checkpoint", str(model),
                                 "--faces", CORNER, "--csv", str(out)])
    assert result.exit_code == 0, result.output
    assert ("no face found in 1 photo: classified whole, rows with face=whole_image"
            in " ".join(result.stdout.split()))
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(out.open())}
    whole = rows["noface.png"]
    assert (whole["error"], whole["face"], whole["face_index"]) == ("", "whole_image", "")
    assert whole["label"] in ("angry", "crying", "happy") and whole["box_w"] == "48.0"
    assert [rows[f]["face"] for f in ("face1.png", "face2.jpg")] == ["detected"] * 2
    assert rows["cut.jpg"]["face"] == "" and rows["cut.jpg"]["error"] == "truncated"


def test_strict_does_not_fail_on_photos_without_a_face(model, tmp_path):
    photos = tmp_path / "photos"
    make_image(photos / "a.png")
    make_image(photos / "b.png", color=(10, 90, 200))
    result = runner.invoke(app, ["predict", str(photos), "--checkpoint", str(model),
                                 "--faces", NEVER, "--csv", str(tmp_path / "o.csv"),
                                 "--strict", "--no-face-fallback", "error"])
    assert result.exit_code == 0, result.output
    assert "no face found in 2 photos: rows with error=no_face" in result.stdout
    assert "errors: none (every file could be read)" in result.stdout
    assert "labels: none" in result.stdout
    # whole_image (the default), and full, its old name (not shown in --help)
    for extra in ([], ["--no-face-fallback", "whole_image"], ["--no-face-fallback", "full"]):
        result = runner.invoke(app, ["predict", str(photos), "--checkpoint", str(model),
                                     "--faces", NEVER, *extra, "--csv", str(tmp_path / "o.csv")])
        assert result.exit_code == 0, result.output
        assert "no face found in 2 photos: classified whole, rows with face=whole_image" in \
            " ".join(result.stdout.split())
        rows = list(csv.DictReader((tmp_path / "o.csv").open()))
        assert [r["face"] for r in rows] == ["whole_image"] * 2 and all(r["label"] for r in rows)
    result = runner.invoke(app, ["predict", str(photos), "--checkpoint", str(model),
                                 "--no-face-fallback", "skip"])
    assert result.exit_code == 2 and "'skip' is not one of 'whole_image', 'error'" in \
        " ".join(result.output.split())
    help_text = runner.invoke(app, ["predict", "--help"]).output
    assert "<whole_image|error>" in help_text and "full" not in help_text


def test_all_files_and_named_files_are_tried(model, tmp_path):
    photos = _mixed_folder(tmp_path / "photos")
    out = tmp_path / "o.csv"
    result = runner.invoke(app, ["predict", str(photos), "--checkpoint", str(model),
                                 "--faces", "none", "--csv", str(out), "--all-files"])
    assert result.exit_code == 0, result.output
    rows = {r["path"].rsplit("/", 1)[-1]: r for r in csv.DictReader(out.open())}
    assert rows["readme.txt"]["error"] == "not_an_image" and "skipped:" in result.stdout
    assert "non-image" not in result.stdout  # only the hidden file was skipped
    result = runner.invoke(app, ["predict", str(photos / "readme.txt"), "--checkpoint",
                                 str(model), "--faces", "none", "--csv", "-"])
    assert result.exit_code == 0, result.output
    row = next(csv.DictReader(io.StringIO(result.stdout)))
    assert (row["error"], row["error_detail"]) == ("not_an_image",
                                                   "not an image: the file holds text")
    assert "1 file, 1 row in" in result.stderr  # the summary goes to stderr with --csv -


def _render(lines, width=80) -> list[str]:
    buf = io.StringIO()
    console = Console(file=buf, width=width, soft_wrap=True, highlight=False)
    for line in lines:
        _say_wrapped(line, console)
    return buf.getvalue().splitlines()


def test_summary_lines_fit_80_columns_and_count_in_words():
    summary = PredictResult(
        n_files=1_200, n_rows=1_310, n_errors=4, n_no_face=49, n_multi_face=33,
        n_hidden_skipped=1, n_non_image_skipped=2,
        error_counts={"empty_file": 1, "no_face": 49, "not_an_image": 1, "truncated": 1,
                      "unsupported_format": 1},
        label_counts={"angry": 84, "crying": 118, "disgust": 3, "fear": 12, "happy": 85,
                      "neutral": 40, "sad": 90, "surprise": 5, "uncertain": 9},
        seconds=19.9, load_seconds=3.2, detect_seconds=30.4, parallel_readers=2)
    predictor = types.SimpleNamespace(face_detection=FaceDetection("yunet", None, "full"),
                                      model=types.SimpleNamespace(readers=2))  # old name
    lines = summary_lines(summary, predictor)
    rendered = _render(lines)
    assert all(len(line) <= 80 for line in rendered), rendered
    # wrapped between words only: joining the pieces gives the lines back
    assert " ".join(" ".join(rendered).split()) == " ".join(" ".join(lines).split())
    assert rendered[0] == (
        "1,200 files, 1,310 rows in 19.9 s (60.3 files/s), after 3.2 s loading the model"
    )
    assert "no face found in 49 photos: classified whole, rows with face=whole_image" in lines
    assert (
        "face detection: 30.4 s summed over 2 parallel readers (76% of their time)" in lines
    )  # 30.4 / (2 x 19.9): thread time, never more than the readers had
    assert any(line.startswith("  unsupported_format 1)") for line in rendered), rendered
    assert "skipped: 2 non-image files (--all-files tries them), 1 hidden entry" in lines

    one = PredictResult(
        n_files=1,
        n_rows=1,
        n_errors=1,
        n_non_image_skipped=1,
        n_hidden_skipped=2,
        error_counts={"truncated": 1},
        seconds=0.5,
    )
    lines = summary_lines(one, types.SimpleNamespace(face_detection=None,
                                                      model=types.SimpleNamespace(readers=1)))
    assert lines[0].startswith("1 file, 1 row in 0.5 s (2.0 files/s)")
    assert "errors: 1 file could not be read (truncated 1)" in lines
    assert "skipped: 1 non-image file (--all-files tries them), 2 hidden entries" in lines
    assert not any("face" in line for line in lines)


def test_real_photos_with_junk_through_the_packaged_model(baby_photos_dir, tmp_path, monkeypatch):
    """A user's folder: real photos (linked from ../shared/data, never copied), one of
    them cut short, an empty .jpg, a text file named .jpg and a readme.txt; the packaged
    model with YuNet (model file from ../shared/models)."""
    from tests.conftest import SHARED_MODELS

    if not any(SHARED_MODELS.glob("face_detection_yunet*.onnx")):
        pytest.skip(f"no YuNet model file in {SHARED_MODELS}")
    monkeypatch.setenv("BABYEMO_MODELS", str(SHARED_MODELS))
    folder = tmp_path / "photos"
    folder.mkdir()
    real = sorted(baby_photos_dir.glob("*.jpg"))[:4]
    for photo in real:
        (folder / photo.name).symlink_to(photo)
    (folder / "cut.jpg").write_bytes(real[0].read_bytes()[:5000])
    (folder / "empty.jpg").write_bytes(b"")
    (folder / "notes.jpg").write_text("not a photo\n" * 20)
    (folder / "readme.txt").write_text("photos of the lab\n")
    out = tmp_path / "o.csv"
    result = runner.invoke(app, ["predict", str(folder), "--csv", str(out), "--strict"])
    assert result.exit_code == 1, result.output  # 3 unreadable files
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    errors = {
        Path(r["path"]).name: (r["error"], r["error_detail"])
        for r in rows
        if r["error"] and r["error"] != "no_face"
    }
    assert errors == {
        "cut.jpg": (
            "truncated",
            "truncated JPEG file: it ends before its image data does "
            "(only 5,000 bytes; an incomplete download or copy?)",
        ),
        "empty.jpg": ("empty_file", "empty file"),
        "notes.jpg": ("not_an_image", "not an image: the file holds text"),
    }
    photos_rows = [r for r in rows if Path(r["path"]).name in {p.name for p in real}]
    whole = {r["path"] for r in photos_rows if r["face"] == "whole_image"}
    with_face = {r["path"] for r in photos_rows if r["face"] == "detected"}
    assert len(whole) + len(with_face) == 4 and with_face  # every real photo has an answer
    assert not any(r["error"] for r in photos_rows)
    text = result.stdout
    assert f"7 files, {len(rows)} rows in " in text
    assert f"{len(with_face)} photo{'s' * (len(with_face) != 1)} with a face" in text
    assert "errors: 3 files could not be read (empty_file 1, not_an_image 1, truncated 1)" in text
    assert "skipped: 1 non-image file (--all-files tries them)" in text
    assert all(len(line) <= 80 for line in text.splitlines() if not line.startswith("csv:"))
