"""Output paths of the wrong kind, special files, links and the command's own inputs,
through the CLI (issue 13): the case table of every command that writes files.

Each refused cell asserts exit code 1, exactly one ``Error:`` line naming the option, and
that nothing under the test folder changed: every entry keeps its kind (a FIFO stays a
FIFO, a device a device, a link a link) and its bytes, and no entry is added. Each
accepted cell asserts that the special file received the output and stayed what it was.
Special files are made in ``tmp_path``, never taken from the machine's ``/dev``.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from babyemo.cli import app
from tests.conftest import make_checkpoint, make_image, make_imagefolder, run_cli_in_subprocess
from tests.test_hostile_outputs import (
    FULL_DEVICE,
    NULL_DEVICE,
    FifoReader,
    make_block_device,
    make_char_device,
    make_socket,
)

runner = CliRunner()


@pytest.fixture
def scene(tmp_path: Path, tiny_arch: str) -> Path:
    """Inputs (photos, a checkpoint, an image folder and its manifest) and hostile outputs
    (a FIFO, a socket, a file, a folder, links), all in ``tmp_path``."""
    from babyemo.data.preparation.prepare import prepare

    make_image(tmp_path / "photos" / "a.png")
    make_image(tmp_path / "photos" / "b.png", color=(20, 90, 200))
    make_checkpoint(tmp_path / "m.pt", tiny_arch)
    make_imagefolder(tmp_path / "imgs", per_class=12)
    prepare(tmp_path / "imgs", out=tmp_path / "prep", split=(0.5, 0.25, 0.25), seed=0)
    os.mkfifo(tmp_path / "fifo")
    make_socket(tmp_path / "sock")
    (tmp_path / "afile").write_text("a file\n")
    (tmp_path / "adir").mkdir()
    (tmp_path / "evaldir" / "report.json").mkdir(parents=True)
    (tmp_path / "target.csv").write_text("old\n")
    (tmp_path / "link.csv").symlink_to(tmp_path / "target.csv")
    (tmp_path / "inlink.csv").symlink_to(tmp_path / "photos" / "a.png")
    (tmp_path / "loop").symlink_to(tmp_path / "loop")
    return tmp_path


def snapshot(root: Path) -> dict[str, tuple]:
    """Every entry under ``root`` (links not followed, special files never opened): its
    kind and its bytes' hash, its link target, or its inode for a special file."""
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            path = Path(dirpath, name)
            st = os.lstat(path)
            kind = stat.S_IFMT(st.st_mode)
            if stat.S_ISREG(st.st_mode):
                detail = hashlib.sha256(path.read_bytes()).hexdigest()
            elif stat.S_ISLNK(st.st_mode):
                detail = os.readlink(path)
            else:
                detail = st.st_ino
            out[path.relative_to(root).as_posix()] = (kind, detail)
    return out


def error_line(result) -> str:
    assert result.exit_code == 1, result.output
    assert "Traceback" not in result.output
    lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(lines) == 1, result.stderr
    return lines[0]


PREDICT = ["predict", "{t}/photos", "--checkpoint", "{t}/m.pt", "--faces", "none"]
EVALUATE = ["evaluate", "--checkpoint", "{t}/m.pt", "--data", "{t}/prep"]
TRAIN = ["train", "--data", "{t}/prep", "--arch", "tiny_test_cnn", "--init", "none",
         "--epochs", "1", "--precision", "fp32"]

REFUSED = {
    # predict: kinds
    "predict --csv SOCKET": ([*PREDICT, "--csv", "{t}/sock"], "--csv {t}/sock is a socket"),
    "predict --csv BLOCKDEV": ([*PREDICT, "--csv", "{t}/blk"],
                               "--csv {t}/blk is a block device"),
    "predict --csv LOOP": ([*PREDICT, "--csv", "{t}/loop"],
                           "--csv {t}/loop is a symbolic link loop"),
    "predict --csv DIR": ([*PREDICT, "--csv", "{t}/adir"],
                          "--csv {t}/adir is a folder, not a file"),
    "predict --json DIR": ([*PREDICT, "--json", "{t}/adir"],
                           "--json {t}/adir is a folder, not a file"),
    "predict --csv FILE/x.csv": ([*PREDICT, "--csv", "{t}/afile/x.csv"],
                                 "{t}/afile is a file, not a folder"),
    "predict --save-crops FILE": ([*PREDICT, "--save-crops", "{t}/afile"],
                                  "--save-crops {t}/afile is a file, not a folder"),
    "predict --save-crops FIFO": ([*PREDICT, "--save-crops", "{t}/fifo"],
                                  "--save-crops {t}/fifo is a FIFO (named pipe), not a folder"),
    # predict: its own inputs
    "predict --csv FOLDER/a.png": ([*PREDICT, "--csv", "{t}/photos/a.png"],
                                   "--csv {t}/photos/a.png is one of the command's inputs"),
    "predict a.png --csv a.png": (["predict", "{t}/photos/a.png", "--checkpoint", "{t}/m.pt",
                                   "--csv", "{t}/photos/a.png"],
                                  "--csv {t}/photos/a.png is one of the command's inputs"),
    "predict --csv LINK-TO-INPUT": ([*PREDICT, "--csv", "{t}/inlink.csv"],
                                    "--csv {t}/inlink.csv is one of the command's inputs "
                                    "({t}/photos/a.png)"),
    "predict --json CHECKPOINT": ([*PREDICT, "--json", "{t}/m.pt"],
                                  "--json {t}/m.pt is one of the command's inputs"),
    "predict --csv FOLDER/x.csv": ([*PREDICT, "--csv", "{t}/photos/x.csv"],
                                   "--csv {t}/photos/x.csv is inside the input folder "
                                   "{t}/photos"),
    "predict --save-crops FOLDER/crops": ([*PREDICT, "--save-crops", "{t}/photos/crops"],
                                          "--save-crops {t}/photos/crops is inside the input "
                                          "folder {t}/photos"),
    # predict: two outputs, one file
    "predict --csv X --json X": ([*PREDICT, "--csv", "{t}/o.x", "--json", "{t}/o.x"],
                                 "--csv and --json are the same file"),
    "predict --csv LINK --json TARGET": ([*PREDICT, "--csv", "{t}/link.csv", "--json",
                                          "{t}/target.csv"], "--csv and --json are the same file"),
    "predict --csv - --json -": ([*PREDICT, "--csv", "-", "--json", "-"],
                                 "--csv and --json both write to stdout"),
    # evaluate
    "evaluate --out FILE": ([*EVALUATE, "--out", "{t}/afile"],
                            "--out {t}/afile is a file, not a folder"),
    "evaluate --out FIFO": ([*EVALUATE, "--out", "{t}/fifo"],
                            "--out {t}/fifo is a FIFO (named pipe), not a folder"),
    "evaluate --out DIR/report.json=DIR": ([*EVALUATE, "--out", "{t}/evaldir"],
                                           "{t}/evaldir/report.json is a folder, not a file"),
    "evaluate --out CLASSFOLDER/eval": ([*EVALUATE, "--out", "{t}/imgs/angry/eval"],
                                        "output folder {t}/imgs/angry/eval is inside the input "
                                        "folder {t}/imgs"),
    # train
    "train --out FILE": ([*TRAIN, "--out", "{t}/afile"], "--out {t}/afile is a file, not a "
                                                         "folder"),
    "train --out IMAGEROOT/run": ([*TRAIN, "--out", "{t}/imgs/run"],
                                  "run folder {t}/imgs/run is inside the input folder {t}/imgs"),
    # data prepare / split / metadata
    "data prepare --out FILE": (["data", "prepare", "{t}/imgs", "--out", "{t}/afile"],
                                "--out {t}/afile is a file, not a folder"),
    "data prepare --out SOURCE/prep": (["data", "prepare", "{t}/imgs", "--out", "{t}/imgs/p"],
                                       "output folder {t}/imgs/p is inside the input folder "
                                       "{t}/imgs"),
    "data split --out FILE": (["data", "split", "{t}/prep", "--out", "{t}/afile"],
                              "--out {t}/afile is a file, not a folder"),
    "data split --out IMAGEROOT/x": (["data", "split", "{t}/prep", "--out", "{t}/imgs/x"],
                                     "output folder {t}/imgs/x is inside the input folder "
                                     "{t}/imgs"),
    "data metadata PREP --out PREP/manifest.csv": (
        ["data", "metadata", "{t}/prep", "--out", "{t}/prep/manifest.csv"],
        "output file {t}/prep/manifest.csv is one of the command's inputs"),
    "data metadata --out DIR": (["data", "metadata", "{t}/prep", "--out", "{t}/adir"],
                                "--out {t}/adir is a folder, not a file"),
    "data metadata IMGS --out IMGS/angry/m.csv": (
        ["data", "metadata", "{t}/imgs", "--out", "{t}/imgs/angry/m.csv"],
        "output file {t}/imgs/angry/m.csv is inside the input folder {t}/imgs"),
    # models card, export
    "models card X.pt --out X.pt": (["models", "card", "{t}/m.pt", "--out", "{t}/m.pt"],
                                    "--out {t}/m.pt is one of the command's inputs"),
    "models card --out DIR": (["models", "card", "{t}/m.pt", "--out", "{t}/adir"],
                              "--out {t}/adir is a folder, not a file"),
    "export X.pt --out X.pt": (["export", "{t}/m.pt", "--out", "{t}/m.pt"],
                               "--out {t}/m.pt is one of the command's inputs"),
    "export --out DIR": (["export", "{t}/m.pt", "--out", "{t}/adir"],
                         "--out {t}/adir is a folder, not a file"),
}


@pytest.mark.parametrize("case", list(REFUSED))
def test_refused_output_changes_nothing(scene, case):
    args, fragment = REFUSED[case]
    if "{t}/blk" in args:
        make_block_device(scene / "blk")
    before = snapshot(scene)
    result = runner.invoke(app, [a.format(t=scene) for a in args])
    assert fragment.format(t=scene) in error_line(result)
    assert snapshot(scene) == before  # no input changed, no special file replaced, no file added


def test_refusals_come_before_torch_is_imported(scene):
    """The cells whose error needs no dataset come in a fresh interpreter without torch."""
    t = scene
    for args in (["predict", f"{t}/photos", "--checkpoint", f"{t}/m.pt", "--csv",
                  f"{t}/photos/a.png"],
                 ["predict", f"{t}/photos", "--checkpoint", f"{t}/m.pt", "--json",
                  f"{t}/photos/x.json"],
                 ["evaluate", "--checkpoint", f"{t}/m.pt", "--out", f"{t}/afile"],
                 ["train", "--arch", "skip_cnn", "--out", f"{t}/afile"],
                 ["data", "prepare", f"{t}/imgs", "--out", f"{t}/afile"],
                 ["models", "card", f"{t}/m.pt", "--out", f"{t}/m.pt"],
                 ["export", f"{t}/m.pt", "--out", f"{t}/m.pt"]):
        proc = run_cli_in_subprocess(args, exit_code=1)
        assert proc.stderr.startswith("Error: "), proc.stderr


# -- special outputs that are written through, links that are followed -------------------


def test_predict_csv_to_a_fifo_is_written_through(scene):
    reader = FifoReader(scene / "fifo")
    result = runner.invoke(app, [a.format(t=scene) for a in PREDICT] + ["--csv",
                                                                        str(scene / "fifo")])
    data = reader.join()
    assert result.exit_code == 0, result.output
    assert data.startswith(b"path,label,confidence") and data.count(b"\n") == 3
    assert stat.S_ISFIFO(os.lstat(scene / "fifo").st_mode)


def test_predict_csv_to_a_null_device_is_a_sink(scene):
    null = make_char_device(scene / "null", NULL_DEVICE)
    result = runner.invoke(app, [a.format(t=scene) for a in PREDICT] + ["--csv", str(null)])
    assert result.exit_code == 0, result.output
    assert "2 files, 2 rows" in result.stdout
    assert stat.S_ISCHR(os.lstat(null).st_mode)


def test_predict_csv_to_a_full_device_is_one_error_line(scene):
    full = make_char_device(scene / "full", FULL_DEVICE)
    result = runner.invoke(app, [a.format(t=scene) for a in PREDICT] + ["--csv", str(full)])
    assert f"Cannot write {full}: No space left on device" in error_line(result)
    assert stat.S_ISCHR(os.lstat(full).st_mode)


def test_predict_csv_through_a_symlink_keeps_the_link(scene):
    result = runner.invoke(app, [a.format(t=scene) for a in PREDICT]
                           + ["--csv", str(scene / "link.csv")])
    assert result.exit_code == 0, result.output
    assert (scene / "link.csv").is_symlink()
    assert (scene / "target.csv").read_text().startswith("path,label,confidence")


def test_predict_json_dash_is_stdout(scene):
    result = runner.invoke(app, [a.format(t=scene) for a in PREDICT] + ["--json", "-"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)
    assert [Path(r["path"]).name for r in rows] == ["a.png", "b.png"]
    assert "2 files, 2 rows" in result.stderr  # the summary leaves stdout to the JSON
    assert not (scene / "-").exists() and not Path("-").exists()
    result = runner.invoke(app, [a.format(t=scene) for a in PREDICT]
                           + ["--json", "-", "--csv", str(scene / "o.csv")])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)) == 2
    assert (scene / "o.csv").read_text().count("\n") == 3


def test_metadata_and_card_write_through_to_special_files(scene):
    reader = FifoReader(scene / "fifo")
    result = runner.invoke(app, ["data", "metadata", str(scene / "prep"), "--out",
                                 str(scene / "fifo")])
    data = reader.join()
    assert result.exit_code == 0, result.output
    assert data.startswith(b"path,source,stock_site")
    assert stat.S_ISFIFO(os.lstat(scene / "fifo").st_mode)
    result = runner.invoke(app, ["models", "card", str(scene / "m.pt"), "--out", "-"])
    assert result.exit_code == 0, result.output
    assert result.stdout.startswith("# ") and not Path("-").exists()
    null = make_char_device(scene / "null", NULL_DEVICE)
    result = runner.invoke(app, ["models", "card", str(scene / "m.pt"), "--out", str(null)])
    assert result.exit_code == 0, result.output
    assert stat.S_ISCHR(os.lstat(null).st_mode)
