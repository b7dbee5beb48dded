"""Property-based tests (hypothesis) of manifest.csv + dataset.json.

- Writing rows and reading them back gives the same rows, for any unicode path (commas,
  quotes, newlines, leading spaces, ...) and label, or :func:`write_manifest` refuses the
  rows with a :class:`ManifestError` and writes nothing.
- :func:`read_manifest` on any bytes gives a manifest or a :class:`ManifestError`, never
  another exception, and never a row whose path escapes the dataset root.
"""

from __future__ import annotations

import json
import string
import tempfile
from pathlib import Path, PurePosixPath

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from babyemo.data.preparation.manifest import (
    COLUMNS,
    SPLITS,
    ManifestRow,
    check_relpath,
    new_info,
    read_manifest,
    write_manifest,
)
from babyemo.errors import ManifestError

FUZZ = settings(max_examples=100, deadline=None,
                suppress_health_check=[HealthCheck.too_slow,
                                       HealthCheck.function_scoped_fixture])

_HOSTILE_TEXT = st.sampled_from(["", ".", "..", "/", "\\", "C:", " ", "\r", "\n", "\r\n",
                                 ",", '"', "'", "\ufeff", "\x00", "\u2028", "\x85", "é",
                                 "😀", "a b", "..."])
_SEGMENT = st.one_of(st.text(min_size=0, max_size=12), _HOSTILE_TEXT)
_PATH = st.one_of(st.lists(_SEGMENT, min_size=1, max_size=4).map("/".join),
                  st.builds(lambda s: "/" + s, _SEGMENT), st.text(max_size=30))
_LABEL = st.one_of(st.sampled_from(["angry", "crying", "happy"]),
                   st.text(max_size=12), _HOSTILE_TEXT)
_HEX = st.text(alphabet="0123456789abcdef", min_size=0, max_size=64)
_TENTH = st.integers(-10**6, 10**6).map(lambda k: k / 10)  # exact through "{:.1f}"
_FACE = st.builds(
    lambda box, score, marks: {"box": box, "score": score, "landmarks": marks},
    st.tuples(_TENTH, _TENTH, st.integers(1, 10**5).map(lambda k: k / 10), _TENTH),
    st.integers(0, 10**4).map(lambda k: k / 10**4),
    st.tuples(*[st.tuples(_TENTH, _TENTH)] * 5))
_FACES = st.one_of(st.just((None, None)), st.just((0, None)),
                   st.tuples(st.integers(1, 50), _FACE))


@st.composite
def _rows(draw, paths=_PATH, labels=_LABEL) -> list[ManifestRow]:
    n = draw(st.integers(1, 6))
    with_faces = draw(st.booleans())
    rows = []
    for _ in range(n):
        n_faces, face = draw(_FACES) if with_faces else (None, None)
        rows.append(ManifestRow(
            path=draw(paths), label=draw(labels), split=draw(st.sampled_from(SPLITS)),
            sha256=draw(_HEX), width=draw(st.integers(-(2**63), 2**63)),
            height=draw(st.integers(0, 10**6)),
            format=draw(st.sampled_from(["JPEG", "PNG", "WEBP", "GIF", "BMP", "TIFF", ""])),
            dhash=draw(_HEX), n_faces=n_faces, face=face))
    return rows


def _writable(row: ManifestRow) -> bool:
    """The documented contract of write_manifest (see its Raises)."""
    try:
        check_relpath(row.path)
    except ManifestError:
        return False
    return ("\r" not in row.path and bool(row.label) and row.label == row.label.strip()
            and "\r" not in row.label and "\x00" not in row.label)


def _unique(rows: list[ManifestRow]) -> bool:
    """One row per image (paths compared as :class:`PurePosixPath` normalises them)."""
    return len({str(PurePosixPath(r.path)) for r in rows}) == len(rows)


def _first_per_path(rows: list[ManifestRow]) -> list[ManifestRow]:
    seen: set[str] = set()
    out = []
    for row in rows:
        key = str(PurePosixPath(row.path))
        if key not in seen:
            seen.add(key)
            out.append(row)
    return out


@pytest.fixture(scope="module")
def workdir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("manifest-fuzz")


@FUZZ
@given(rows=_rows())
def test_write_read_round_trip_or_clear_error(workdir, rows):
    out = Path(tempfile.mkdtemp(dir=workdir))
    root = out / "images"
    root.mkdir()
    info = new_info("fuzz", root, str(root), sorted({r.label for r in rows}))
    if not all(_writable(r) for r in rows) or not _unique(rows):
        with pytest.raises(ManifestError):
            write_manifest(rows, out / "prepared", info)
        assert not (out / "prepared" / "manifest.csv").exists()
        return
    path = write_manifest(rows, out / "prepared", info)
    manifest = read_manifest(path)
    assert manifest.rows == rows
    assert manifest.class_names == sorted({r.label for r in rows})
    assert manifest.root == root.resolve()
    # reading and writing again is byte-identical (a stable manifest sha256 for provenance)
    before = path.read_bytes()
    write_manifest(manifest, path.parent)
    assert path.read_bytes() == before
    assert sorted(p.name for p in path.parent.iterdir()) == ["dataset.json", "manifest.csv"]


@FUZZ
@given(rows=_rows(paths=st.lists(st.text(alphabet=string.ascii_letters + " ,\"'\n-_é",
                                         min_size=1, max_size=8)
                                 .filter(lambda s: s.strip(" ") not in ("", ".", "..")),
                                 min_size=1, max_size=3).map("/".join),
                  labels=st.text(alphabet=string.ascii_lowercase + "_ ,é", min_size=1,
                                 max_size=10).map(str.strip).filter(bool)))
def test_realistic_rows_always_round_trip(workdir, rows):
    rows = _first_per_path(rows)  # a manifest lists each image once
    out = Path(tempfile.mkdtemp(dir=workdir))
    info = new_info("fuzz", out, str(out), sorted({r.label for r in rows}))
    assert read_manifest(write_manifest(rows, out, info)).rows == rows


_CSV_CHUNKS = st.sampled_from([",".join(COLUMNS), "\n", "\r\n", ",", '"', "train", "val",
                               "test", "angry", "../x.png", "/etc/passwd", "a/b.png", "12",
                               "-1", "x", "1e9", "n_faces", "face_x", "face_w", "3", "nan",
                               "\x00", "\ufeff", "C:\\x"])


@FUZZ
@given(text=st.one_of(st.lists(st.one_of(_CSV_CHUNKS, st.text(max_size=8)), max_size=40)
                      .map("".join),
                      st.binary(max_size=300)),
       info=st.one_of(st.none(), st.binary(max_size=60),
                      st.dictionaries(st.sampled_from(["format", "format_version", "name",
                                                       "root", "class_names"]),
                                      st.one_of(st.none(), st.integers(), st.text(max_size=8),
                                                st.lists(st.integers(), max_size=2)),
                                      max_size=5)))
def test_reader_never_fails_untyped(workdir, text, info):
    folder = Path(tempfile.mkdtemp(dir=workdir))
    data = text if isinstance(text, bytes) else text.encode("utf-8")
    (folder / "manifest.csv").write_bytes(data)
    if isinstance(info, bytes):
        (folder / "dataset.json").write_bytes(info)
    elif isinstance(info, dict):
        (folder / "dataset.json").write_text(json.dumps(info), encoding="utf-8")
    try:
        manifest = read_manifest(folder)
    except ManifestError:
        return
    for row in manifest.rows:  # whatever was accepted stays inside the root
        try:
            resolved = manifest.resolve(row)
        except ManifestError:
            continue
        assert resolved.is_relative_to(manifest.root)
