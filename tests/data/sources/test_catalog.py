"""Tests of the dataset catalogue."""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from urllib.parse import urlparse

import pytest

from babyemo.data.sources.catalog import CATALOG, KINDS, DatasetEntry, get_dataset, list_datasets
from babyemo.errors import RegistryError


def test_list_datasets_matches_catalog():
    entries = list_datasets()
    assert [e.name for e in entries] == list(CATALOG)
    assert entries[0].name == "infant-emotions"
    assert {e.name for e in entries} == {"infant-emotions", "fer2013", "baby-emotion-kaggle",
                                         "babyface"}
    assert all(isinstance(e, DatasetEntry) and e.name == name for name, e in CATALOG.items())


@pytest.mark.parametrize("entry", list_datasets(), ids=lambda e: e.name)
def test_entry_is_documented_and_fetchable(entry):
    for field in ("title", "terms", "citation", "demographics", "description", "size_note"):
        assert len(getattr(entry, field).strip()) >= 10, field
    assert entry.kind in KINDS
    assert isinstance(entry.classes, tuple)
    assert len(set(entry.classes)) == len(entry.classes)
    if entry.classes:
        assert all(re.fullmatch(r"[a-z]+", c) for c in entry.classes)
    else:
        assert "folder" in entry.description  # says where the classes come from
    if entry.kind == "github-archive":
        assert entry.url and urlparse(entry.url).scheme == "https"
        assert urlparse(entry.url).netloc == "github.com"
        assert re.search(r"/archive/[0-9a-f]{40}\.zip$", entry.url)  # pinned commit
        assert entry.sha256 is None and "byte-stable" in entry.description
        assert entry.extra is None
    if entry.kind == "kaggle":
        assert entry.extra == "kaggle" and re.fullmatch(r"[\w-]+/[\w-]+", entry.kaggle_handle)
    if entry.kind == "gdrive":
        assert entry.extra == "gdrive" and entry.gdrive_folder
    if entry.url is not None:
        assert entry.url.startswith("https://")
    if entry.sha256 is not None:
        assert re.fullmatch(r"[0-9a-f]{64}", entry.sha256)


def test_known_facts():
    infant = get_dataset("infant-emotions")
    assert infant.classes == ("angry", "crying", "happy")  # JSON label order 0, 1, 2
    assert "c50836c43f3c3403a0b62a13e544b31acbd40a24" in infant.url
    assert "1,200" in infant.size_note
    assert "45%" in infant.demographics and "stock" in infant.demographics
    assert "No licence" in infant.terms
    fer = get_dataset("fer2013")
    assert fer.classes == ("angry", "disgust", "fear", "happy", "neutral", "sad", "surprise")
    assert "9d0b7b81c7335d20576326daa70d1a7cc7b0c42f" in fer.url
    assert fer.kaggle_handle == "msambare/fer2013"
    assert "Goodfellow" in fer.citation and "35,887" in fer.size_note
    assert "duplicates" in fer.demographics
    kaggle = get_dataset("baby-emotion-kaggle")
    assert kaggle.classes == ()
    assert kaggle.kaggle_handle == "sudarshanvaidya/baby-emotion-classification"
    babyface = get_dataset("babyface")
    assert set(babyface.classes) == {"happy", "sad", "neutral"}
    assert babyface.gdrive_folder == "1hOa0vpw69RvMer_AtGLDZtspyfLAhYiS"
    assert "70%" in babyface.demographics and "1,814" in babyface.size_note


def test_entries_are_frozen():
    with pytest.raises(dataclasses.FrozenInstanceError):
        get_dataset("fer2013").url = "http://example.org"  # type: ignore[misc]


@pytest.mark.parametrize(("typo", "suggestion"), [
    ("infant-emotion", "infant-emotions"),
    ("fer-2013", "fer2013"),
    ("baby-face", "babyface"),
])
def test_unknown_name_suggests_close_matches(typo, suggestion):
    with pytest.raises(RegistryError) as info:
        get_dataset(typo)
    assert typo in info.value.message
    assert "did you mean" in info.value.hint and suggestion in info.value.hint


def test_unknown_name_without_close_match_lists_known():
    with pytest.raises(RegistryError) as info:
        get_dataset("zzzzzz")
    assert "known:" in info.value.hint and "fer2013" in info.value.hint


def test_catalog_is_stdlib_only():
    code = ("import sys, babyemo.data.sources.catalog; "
            "bad = [m for m in ('torch', 'PIL', 'numpy', 'rich') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
