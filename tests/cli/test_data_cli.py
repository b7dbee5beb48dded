"""``babyemo data ...`` through the real Typer app (CliRunner)."""

from __future__ import annotations

import json
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from babyemo.cli import app
from tests.data.helpers import make_distinct_folder

runner = CliRunner()


def _ok(args: list[str]):
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    return result


def test_prepare_split_inspect(tmp_path):
    root = make_distinct_folder(tmp_path / "kids", per_class=10)
    (root / "happy" / "broken.jpg").write_bytes(b"nope")
    out = tmp_path / "prepared"
    result = _ok(["data", "prepare", str(root), "--out", str(out), "--split", "0.6,0.2,0.2",
                  "--seed", "3"])
    manifest = out / "manifest.csv"
    assert f"Manifest: {manifest}" in result.stdout
    assert "30 images, 3 classes" in result.stdout and "unreadable 1" in result.stdout
    assert "happy/broken.jpg" in result.stdout
    info = json.loads((out / "dataset.json").read_text())
    assert info["split"]["ratios"] == [0.6, 0.2, 0.2] and info["split"]["seed"] == 3
    last = json.loads(_ok(["data", "inspect", "--json"]).stdout)  # default: last prepared
    assert last["n_images"] == 30 and Path(last["root"]) == root.resolve()

    result = _ok(["data", "split", str(manifest), "--split", "0.5,0.25,0.25", "--seed", "1",
                  "--out", str(tmp_path / "resplit")])
    assert str(tmp_path / "resplit" / "manifest.csv") in result.stdout
    assert "train" in result.stdout and "total" in result.stdout

    result = _ok(["data", "inspect", str(out), "--json"])
    report = json.loads(result.stdout)
    assert report["n_images"] == 30 and report["kind"] == "manifest"
    assert report["unreadable"][0]["path"] == "happy/broken.jpg"
    assert sum(report["counts"]["train"].values()) == 18

    result = _ok(["data", "inspect", str(root)])
    assert "Duplicates" in result.stdout and "Problems found (1):" in result.stdout
    assert "- 1 unreadable file(s) skipped" in result.stdout and "Warning" not in result.output


def test_inspect_clean_folder_says_so(tmp_path):
    root = make_distinct_folder(tmp_path / "clean", per_class=3)
    result = _ok(["data", "inspect", str(root)])
    assert "No problems found." in result.stdout and "Warning" not in result.stdout


def test_missing_folder_is_an_error(tmp_path):
    for args in (["data", "prepare", str(tmp_path / "missing")],
                 ["data", "inspect", str(tmp_path / "missing")],
                 ["data", "inspect"],  # nothing prepared yet in this BABYEMO_HOME
                 ["data", "split", str(tmp_path / "missing")]):
        result = runner.invoke(app, args)
        assert result.exit_code == 1, result.output
        assert "Error:" in result.stderr and "Traceback" not in result.output


@pytest.mark.parametrize("args", [
    ["data", "prepare", "x", "--split", "0.5,0.5"],
    ["data", "prepare", "x", "--split", "a,b,c"],
    ["data", "prepare", "x", "--split", "0.9,0.2,0.1"],
    ["data", "prepare", "x", "--seed", "one"],
    ["data", "download"],
    ["data", "download", "fer2013", "--url", "https://example.org/a.zip"],
    ["data", "download", "fer2013", "--sha256", "00"],
    ["data", "inspect", "a", "b"],
    ["data", "nonsense"],
])
def test_bad_usage_exits_2(args):
    result = runner.invoke(app, args)
    assert result.exit_code == 2, result.output


def test_download_list_and_catalog():
    for args in (["data", "download", "--list"], ["data", "catalog"]):
        result = _ok(args)
        for name in ("infant-emotions", "fer2013", "angry", "Research use"):
            assert name in result.stdout


def test_download_uses_local_copy(tmp_path, monkeypatch):
    local = tmp_path / "local"
    make_distinct_folder(local / "infant-emotions", per_class=2)
    monkeypatch.setenv("BABYEMO_DATASETS", str(local))
    result = _ok(["data", "download", "infant-emotions"])
    assert Path(result.stdout.strip()) == local / "infant-emotions"
    result = runner.invoke(app, ["data", "download", "infant-emotionz"])
    assert result.exit_code == 1 and "infant-emotions" in result.stderr


def test_download_and_prepare_an_archive_url(tmp_path):
    src = make_distinct_folder(tmp_path / "src", per_class=3)
    archive = tmp_path / "kids.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(src.rglob("*.png")):
            zf.write(p, "kids/" + p.relative_to(src).as_posix())
    url = archive.as_uri()
    result = _ok(["data", "download", "--url", url])
    folder = Path(result.stdout.strip())
    assert folder.name == "kids" and len(list(folder.rglob("*.png"))) == 9
    result = _ok(["data", "prepare", url, "--out", str(tmp_path / "p")])
    assert "9 images, 3 classes" in result.stdout


def test_help_lists_commands():
    result = _ok(["data", "--help"])
    for command in ("download", "catalog", "prepare", "split", "inspect"):
        assert command in result.stdout


def test_data_metadata_writes_stock_csv(tmp_path):
    root = make_distinct_folder(tmp_path / "kids", per_class=3)
    src = next((root / "happy").iterdir())
    src.rename(src.with_name("istockphoto-123-612x612" + src.suffix))
    result = _ok(["data", "metadata", str(root), "--out", str(tmp_path / "meta.csv")])
    assert "stock: 1" in result.stdout and "istock" in result.stdout
    lines = (tmp_path / "meta.csv").read_text().splitlines()
    assert lines[0] == "path,source,stock_site,fer_subset,train_duplicate"
    assert len(lines) == 1 + 3 * 3
    result = runner.invoke(app, ["data", "metadata", str(tmp_path / "nope" / "x"), "--out",
                                 str(tmp_path / "m.csv")])
    assert result.exit_code == 1 and "Error:" in result.stderr
