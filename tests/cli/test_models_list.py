"""``babyemo models list`` at 80 columns: no word broken, scores labelled, --wide, --json."""

from __future__ import annotations

import json
import re

import pytest
from typer.testing import CliRunner

from babyemo.cli import app
from babyemo.cli._common import stdout
from babyemo.models import store

runner = CliRunner()


def _list(monkeypatch, *args, width=80):
    monkeypatch.setattr(stdout, "_width", width)  # as COLUMNS=80 in a terminal
    result = runner.invoke(app, ["models", "list", *args])
    assert result.exit_code == 0, result.output
    return result.stdout


def _section(text: str, title: str) -> list[str]:
    lines = text.splitlines()
    start = next(i for i, li in enumerate(lines) if li.strip() == title)
    end = next(i for i, li in enumerate(lines) if i > start and li.strip() == "Face detectors")
    return lines[start:end]


def _cells(lines: list[str]) -> list[str]:
    return [c.strip() for li in lines for c in re.split("[│┃]", li) if c.strip()]


@pytest.fixture
def packaged():
    models = store.packaged_models()
    if store.PACKAGED_MODEL not in models or store.PACKAGED_INIT not in models:
        pytest.skip("no packaged model in this tree")
    return models


def test_list_fits_80_columns_and_breaks_no_word(monkeypatch, packaged, checkpoint):
    text = _list(monkeypatch)
    assert max(len(li) for li in text.splitlines()) <= 80
    table = _section(text, "Trained models (newest first)")
    words = set(re.split(r"[\s,│┃]+", "\n".join(table)))
    # every word whole: names, arch, tags, class names (wrapped after ", " only)
    for word in ("babyemo-infant", "babyemo-fer2013", "custom_resnet", "tiny_test_cnn", "run",
                 "angry", "crying", "happy", "disgust", "fear", "neutral", "sad", "surprise",
                 "packaged", "default", "macro-F1"):
        assert word in words, word
    assert "packaged, default" in _cells(table)
    header = next(li for li in table if "name" in li)
    assert _cells([header]) == ["name", "arch", "classes", "macro-F1"]
    row = next(li for li in table if "babyemo-infant" in li)
    # the packaged model trained on train+val has no val score: its recorded test score
    assert re.search(r"\b0\.\d{3} test\b", row)
    assert re.search(r"\b0\.\d{3} val\b", next(li for li in table if "babyemo-fer2013" in li))
    assert "trained on train+val has none" in " ".join(table)
    assert "/" not in "".join(li for li in table if "│" in li)  # no path by default


def test_list_architecture_names_are_never_folded(monkeypatch):
    text = _list(monkeypatch)
    cells = _cells(text.splitlines())
    for name in ("mobilenet_v3_large", "efficientnet_b0", "resnet18", "vgg_fer"):
        assert name in cells, name


def test_list_wide_has_every_column_and_whole_paths(monkeypatch, packaged):
    text = _list(monkeypatch, "--wide")
    table = _section(text, "Trained models (newest first)")
    header = next(li for li in table if "checkpoint" in li)
    assert _cells([header]) == ["name", "arch", "classes", "dataset", "val macro-F1",
                                "test macro-F1", "created", "checkpoint"]
    for name in (store.PACKAGED_MODEL, store.PACKAGED_INIT):
        assert any(packaged[name]["checkpoint"] in li for li in table)  # never folded
    row = next(li for li in table if store.PACKAGED_MODEL in li)
    assert re.search(r"│ — +│ 0\.\d{3} \(n=\d+\) +│", row)  # no val score, a test score


def test_list_json_gives_the_facts_of_packaged_and_missing_models(monkeypatch, packaged,
                                                                  checkpoint):
    checkpoint.unlink()  # a deleted run folder must not hide the other models
    monkeypatch.setattr(stdout, "_width", 80)
    data = json.loads(runner.invoke(app, ["models", "list", "--json"]).stdout)
    infant = data["trained"][store.PACKAGED_MODEL]
    assert infant["arch"] == "custom_resnet" and infant["class_names"] == [
        "angry", "crying", "happy"]
    assert "val_macro_f1" not in infant and 0 < infant["test_macro_f1"] < 1
    assert infant["default"] is True and infant["packaged"] is True
    assert "error" in data["trained"]["run"]
    text = _list(monkeypatch)
    lines = text.splitlines()
    i = next(i for i, li in enumerate(lines) if li.startswith("│ run "))
    assert "tiny_test_cnn" in lines[i] and "val" in lines[i]  # what the registry knows
    assert lines[i + 1].startswith("│ file missing ")
