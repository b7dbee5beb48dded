"""The prepared-dataset files: ``manifest.csv`` (one row per image) and ``dataset.json``.

``manifest.csv`` columns (UTF-8, header row): ``path`` (relative to the dataset root,
``/``-separated), ``label`` (class name), ``split`` (``train``/``val``/``test``),
``sha256`` (of the file's bytes), ``width``, ``height`` (pixels, as stored, before EXIF
rotation), ``format`` (sniffed by Pillow, e.g. ``JPEG``, ``WEBP``) and ``dhash`` (64-bit
difference hash as 16 hex digits, see :mod:`babyemo.data.inspection.hashing`). A dataset prepared
with a face detector (``data prepare --faces yunet``) has the :data:`FACE_COLUMNS` too:
``n_faces`` (faces found), ``face_x``, ``face_y``, ``face_w``, ``face_h`` (the primary face's
box in pixels of the upright image), ``face_score`` and ``face_landmarks`` (5 points as 10
space-separated numbers); the face columns are empty when ``n_faces`` is 0.

``dataset.json`` beside it records where the images are (``root``), what the user gave
(``source``), the sorted ``class_names``, how the split was made and what was skipped. See
``docs/data-formats.md``. Standard library only (no torch).
"""

from __future__ import annotations

import csv
import json
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from babyemo.errors import ConfigError, ManifestError
from babyemo.fs import atomic_open, sha256_file

logger = logging.getLogger(__name__)

COLUMNS = ("path", "label", "split", "sha256", "width", "height", "format", "dhash")
"""Columns of ``manifest.csv``, in order."""
_DHASH = re.compile(r"[0-9a-fA-F]{1,16}")  # 64-bit dHash as data prepare writes it

FACE_COLUMNS = ("n_faces", "face_x", "face_y", "face_w", "face_h", "face_score",
                "face_landmarks")
"""Optional columns of a manifest prepared with a face detector."""

SPLITS = ("train", "val", "test")
"""Split names a manifest may use, in canonical order."""
ALL_SPLITS = "all"
"""The name that selects every row, wherever a split is chosen for evaluation."""


def check_split(split: str | None, *, allow_all: bool = True) -> None:
    """Raise unless ``split`` names a split (``"all"`` and ``None`` too, if ``allow_all``).

    Raises:
        ConfigError: An unknown split name (the hint lists the valid ones).
    """
    valid = SPLITS + ((ALL_SPLITS,) if allow_all else ())
    if split in valid or (allow_all and split is None):
        return
    raise ConfigError(f"Unknown split {split!r}.", f"use one of {', '.join(valid)}")

MANIFEST_FILE = "manifest.csv"
INFO_FILE = "dataset.json"
METADATA_FILE = "metadata.csv"
FORMAT_NAME = "babyemo-dataset"
FORMAT_VERSION = 1

_PREPARE_HINT = "run `babyemo data prepare` first"


@dataclass
class ManifestRow:
    """One image of a prepared dataset (the columns of ``manifest.csv``)."""

    path: str
    label: str
    split: str
    sha256: str
    width: int
    height: int
    format: str
    dhash: str
    n_faces: int | None = None
    face: dict[str, Any] | None = None
    """The primary face as :meth:`babyemo.faces.Face.to_dict` (``None``: none found or
    detection not run; ``n_faces`` tells which)."""

    def face_columns(self) -> dict[str, str]:
        """The :data:`FACE_COLUMNS` values of this row as CSV text."""
        if self.n_faces is None:
            return dict.fromkeys(FACE_COLUMNS, "")
        out = dict.fromkeys(FACE_COLUMNS, "")
        out["n_faces"] = str(self.n_faces)
        if self.face:
            x, y, w, h = self.face["box"]
            out.update(face_x=f"{x:.1f}", face_y=f"{y:.1f}", face_w=f"{w:.1f}",
                       face_h=f"{h:.1f}", face_score=f"{self.face['score']:.4f}",
                       face_landmarks=" ".join(f"{v:.1f}" for pt in self.face["landmarks"]
                                               for v in pt))
        return out


def _parse_face(values: dict[str, str], line: int, where: Path) -> tuple[int | None, dict | None]:
    if not values.get("n_faces"):
        return None, None
    try:
        n = int(values["n_faces"])
        if n == 0 or not values.get("face_w"):
            return n, None
        box = tuple(float(values[k]) for k in ("face_x", "face_y", "face_w", "face_h"))
        nums = [float(v) for v in values.get("face_landmarks", "").split()]
        landmarks = tuple((nums[i], nums[i + 1]) for i in range(0, len(nums) - 1, 2))
        return n, {"box": box, "score": float(values.get("face_score") or 0.0),
                   "landmarks": landmarks}
    except (ValueError, KeyError):
        raise ManifestError(f"{where}, line {line}: malformed face columns.",
                            "prepare the dataset again with --faces") from None


@dataclass
class Manifest:
    """A prepared dataset: its rows and its ``dataset.json``.

    Attributes:
        path: The ``manifest.csv`` file.
        root: Absolute folder the row paths are relative to.
        name: Dataset name.
        class_names: Sorted unique labels of the rows (the logit order is fixed from this
            list at training time).
        rows: The images.
        info: The ``dataset.json`` content (``{}`` when there is none).
    """

    path: Path
    root: Path
    name: str
    class_names: list[str]
    rows: list[ManifestRow]
    info: dict[str, Any] = field(default_factory=dict)

    def rows_for(self, split: str) -> list[ManifestRow]:
        """The rows of one split (``"train"``, ``"val"`` or ``"test"``; may be empty)."""
        return [r for r in self.rows if r.split == split]

    def splits(self) -> list[str]:
        """The splits that have rows, in ``train, val, test`` order."""
        present = {r.split for r in self.rows}
        return [s for s in SPLITS if s in present]

    def counts(self) -> dict[str, dict[str, int]]:
        """Images per split and label: ``{split: {label: n}}`` (every class listed)."""
        out = {s: dict.fromkeys(self.class_names, 0) for s in self.splits()}
        for r in self.rows:
            out[r.split][r.label] += 1
        return out

    def metadata_path(self) -> Path | None:
        """The ``metadata.csv`` that ``dataset.json`` names (beside the manifest), when
        that file exists; else ``None``."""
        name = self.info.get("metadata")
        path = self.path.parent / name if name else None
        return path if path is not None and path.is_file() else None

    def dhashes(self) -> list[int]:
        """The rows' ``dhash`` values as 64-bit integers, in row order.

        The one parser of the column for every duplicate check (``prepare``, ``split``,
        ``train --folds``, ``inspect``, the stock check and the label audit), so they all
        agree on what a valid hash is: 1 to 16 hexadecimal digits, as ``data prepare``
        writes them (:func:`babyemo.data.inspection.hashing.format_hash`).

        Returns:
            One integer in ``[0, 2**64)`` per row.

        Raises:
            ManifestError: A row whose ``dhash`` is empty, not hexadecimal or longer than
                64 bits (named by path and value); an empty hash is not read as 0, which
                would make every such row a near-duplicate of the others.
        """
        hashes = []
        for row in self.rows:
            value = row.dhash
            if _DHASH.fullmatch(value) is None:  # not int(value, 16): it takes "-1", "0x1f"
                raise ManifestError(
                    f"{self.path}: row {row.path!r} has dhash {value!r}, not 1 to 16 "
                    "hexadecimal digits.",
                    "prepare the dataset again (`babyemo data prepare`) so every image "
                    "is hashed")
            hashes.append(int(value, 16))
        return hashes

    def resolve(self, row_or_relpath: ManifestRow | str) -> Path:
        """Absolute path of a row's image.

        Raises:
            ManifestError: The path is absolute, contains ``..``, or resolves (through a
                symlink) outside the dataset root.
        """
        rel = row_or_relpath.path if isinstance(row_or_relpath, ManifestRow) else row_or_relpath
        return resolve_under(self.root, rel, self.path)

    def missing_files(self, splits: str | Sequence[str] | None = None) -> list[str]:
        """Row paths whose file is gone (or unreachable) under :attr:`root`, in row order.

        One ``stat`` per row, nothing decoded: a cheap check before a long run (training
        and evaluation stop at the first missing file). Paths that escape the root count
        as missing.

        Args:
            splits: Only rows of this split or these splits (default: every row).
        """
        if isinstance(splits, str):
            splits = (splits,)
        missing = []
        for row in self.rows:
            if splits is not None and row.split not in splits:
                continue
            try:
                ok = self.resolve(row).is_file()
            except (ManifestError, OSError):
                ok = False
            if not ok:
                missing.append(row.path)
        return missing

    @property
    def has_faces(self) -> bool:
        """True when the manifest carries face-detection columns."""
        return any(r.n_faces is not None for r in self.rows)

    def sha256(self) -> str:
        """SHA-256 (hex) of the ``manifest.csv`` bytes (identifies the data of a run)."""
        return sha256_file(self.path)


_real_roots: dict[str, str] = {}
_DRIVE = re.compile(r"^[A-Za-z]:")


def check_relpath(rel: str, where: Path | str = "manifest") -> PurePosixPath:
    """Validate a manifest path: relative, ``/``-separated, no ``..``, not empty, no NUL.

    Raises:
        ManifestError: The path could escape the dataset root (absolute, a drive letter,
            a backslash or a ``..`` component), or holds a NUL character (no file system
            accepts one in a name).
    """
    if "\x00" in (rel or ""):
        raise ManifestError(f"{where}: path {rel!r} contains a NUL character, which no file "
                            "name can hold.", "fix or remove that row (a damaged manifest?)")
    if (not rel or rel.startswith("/") or "\\" in rel or _DRIVE.match(rel)
            or ".." in rel.split("/")):
        raise ManifestError(
            f"{where}: path {rel!r} is not a relative path inside the dataset root.",
            "manifest paths are relative, '/'-separated and may not contain '..'",
        )
    return PurePosixPath(rel)


def resolve_under(root: Path, rel: str, where: Path | str = "manifest") -> Path:
    """``root / rel`` as an absolute path, refusing anything that escapes ``root``.

    Raises:
        ManifestError: ``rel`` is absolute, has ``..``, or a symlink leads outside ``root``.
    """
    posix = check_relpath(rel, where)
    root_abs = Path(os.path.abspath(root))
    key = str(root_abs)
    real_root = _real_roots.get(key)
    if real_root is None:
        real_root = _real_roots[key] = os.path.realpath(root_abs)
    target = root_abs.joinpath(*posix.parts)
    real = os.path.realpath(target)
    if real != real_root and not real.startswith(real_root.rstrip(os.sep) + os.sep):
        raise ManifestError(f"{where}: {rel!r} resolves outside the dataset root {root_abs}.",
                            "a symlink points outside the dataset; copy the file instead")
    return target


def now_iso() -> str:
    """The current UTC time as ISO 8601 (seconds)."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


def new_info(name: str, root: Path, source: str, class_names: Sequence[str],
             **extra: Any) -> dict[str, Any]:
    """A ``dataset.json`` dict with the required keys (``extra`` is merged in)."""
    info: dict[str, Any] = {
        "format": FORMAT_NAME,
        "format_version": FORMAT_VERSION,
        "name": name,
        "root": str(Path(root).resolve()),
        "source": source,
        "class_names": sorted(class_names),
        "split": {"ratios": None, "seed": None, "given": False},
        "created": now_iso(),
        "skipped": {},
        "skipped_files": [],
        "metadata": None,
    }
    info.update(extra)
    return info


def _manifest_file(path: str | os.PathLike[str]) -> Path:
    path = Path(path).expanduser()
    if path.is_dir():
        path = path / MANIFEST_FILE
    if not path.is_file():
        raise ManifestError(f"No manifest at {path}.", _PREPARE_HINT)
    return path


def _read_info(folder: Path) -> dict[str, Any]:
    info_path = folder / INFO_FILE
    if not info_path.is_file():
        return {}
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ManifestError(f"{info_path} is not valid JSON ({e}).",
                            "delete it and prepare the dataset again") from e
    if not isinstance(info, dict) or info.get("format", FORMAT_NAME) != FORMAT_NAME:
        raise ManifestError(f"{info_path} is not a babyemo dataset description.",
                            f"expected \"format\": \"{FORMAT_NAME}\"")
    version = info.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ManifestError(f"{info_path} has format_version {version!r}; this babyemo "
                            f"reads up to {FORMAT_VERSION}.", "upgrade babyemo")
    return info


def _parse_row(raw: dict[str, str], line: int, where: Path) -> ManifestRow:
    for column in COLUMNS + FACE_COLUMNS:
        if "\x00" in (raw.get(column) or ""):
            raise ManifestError(f"{where}, line {line}: the {column} value "
                                f"{raw[column]!r} contains a NUL character.",
                                "fix or remove that row (a damaged manifest?)")
    values = {k: (raw.get(k) or "").strip() for k in COLUMNS + FACE_COLUMNS}
    values["path"] = raw.get("path") or ""  # verbatim: a file name may end in a space
    if values["split"] not in SPLITS:
        raise ManifestError(f"{where}, line {line}: split {values['split']!r} is not one of "
                            f"{', '.join(SPLITS)}.", "re-split with `babyemo data split`")
    if not values["label"]:
        raise ManifestError(f"{where}, line {line}: empty label.")
    check_relpath(values["path"], f"{where}, line {line}")
    try:
        width, height = int(values["width"]), int(values["height"])
    except ValueError:
        raise ManifestError(f"{where}, line {line}: width/height must be integers, got "
                            f"{values['width']!r}, {values['height']!r}.") from None
    n_faces, face = _parse_face(values, line, where)
    return ManifestRow(path=values["path"], label=values["label"], split=values["split"],
                       sha256=values["sha256"], width=width, height=height,
                       format=values["format"], dhash=values["dhash"], n_faces=n_faces,
                       face=face)


def read_manifest(path: str | os.PathLike[str]) -> Manifest:
    """Read a prepared dataset.

    Args:
        path: ``manifest.csv`` or the folder holding it (and ``dataset.json``). Without
            ``dataset.json`` (or without its ``root``) the root is the manifest's folder; a
            relative ``root`` is relative to that folder. Both are made absolute from the
            manifest's own location, whatever the current directory and however ``path``
            was given (relative or not).

    Returns:
        The :class:`Manifest`.

    Raises:
        ManifestError: Missing file, missing columns, a bad split value or row (a NUL
            character in any value included), an empty manifest, an image listed on more
            than one row (its path, after removing ``.`` components and repeated ``/``:
            which label and split would hold?), an unreadable ``dataset.json``, or a root
            folder that is gone.
    """
    csv_path = _manifest_file(path)
    folder = csv_path.parent.absolute()  # the base of relative roots, never the cwd's "."
    info = _read_info(csv_path.parent)
    try:
        with open(csv_path, encoding="utf-8-sig", newline="") as f:
            reader = csv.DictReader(f)
            header = reader.fieldnames or []
            missing = [c for c in COLUMNS if c not in header]
            if missing:
                raise ManifestError(f"{csv_path} lacks the column(s) {', '.join(missing)}.",
                                    f"a manifest has the columns {','.join(COLUMNS)}")
            rows = [_parse_row(raw, i, csv_path) for i, raw in enumerate(reader, start=2)]
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise ManifestError(f"Cannot read {csv_path} ({e}).", _PREPARE_HINT) from e
    if not rows:
        raise ManifestError(f"{csv_path} has no rows.", _PREPARE_HINT)
    _check_unique_paths(rows, csv_path)
    root_text = info.get("root")
    if root_text is not None and not isinstance(root_text, str):
        raise ManifestError(f"{csv_path.parent / INFO_FILE}: \"root\" must be a folder path, "
                            f"got {root_text!r}.", "delete it and prepare the dataset again")
    root = folder / root_text if root_text else folder
    if not _is_dir(root):
        raise ManifestError(f"The dataset root {root} of {csv_path} does not exist.",
                            "the images moved? prepare the dataset again")
    class_names = sorted({r.label for r in rows})
    name = str(info.get("name") or folder.name)
    return Manifest(path=csv_path, root=root.resolve(), name=name, class_names=class_names,
                    rows=rows, info=info)


def _classes_without_rows(manifest: Manifest, splits: Sequence[str]) -> list[str]:
    present = {r.label for r in manifest.rows if r.split in splits}
    return [c for c in manifest.class_names if c not in present]


def warn_training_classes(manifest: Manifest, splits: Sequence[str] = ("train",)) -> list[str]:
    """Warn (logged, and returned) when the training splits lack classes of the manifest.

    The model gets one output per class of the manifest (:attr:`Manifest.class_names`, all
    splits); a class with no training image is an output it can never learn: every val and
    test image of it is a certain error, and best.pt is chosen on that. It is a warning, not
    an error, because babyemo's own split can make it: groups of duplicates, near-duplicates
    or one subject are never split, so a small class whose photos form one group can land
    whole in val or test (the test suite's synthetic classes do). A class missing from
    ``val`` only weakens model selection: a warning too.

    Args:
        manifest: The dataset.
        splits: The splits trained on (``("train",)``, or ``("train", "val")``). With no
            row in them nothing is checked (the dataset reports the empty split).

    Returns:
        The warnings, one sentence each (empty when every class is there).
    """
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    if not any(r.split in splits for r in manifest.rows):
        return []
    out = []
    missing = _classes_without_rows(manifest, splits)
    if missing:
        counts = manifest.counts()
        elsewhere = ", ".join(
            f"{c!r} ({', '.join(f'{counts[s][c]} in {s}' for s in counts if counts[s][c])})"
            for c in missing)
        out.append(f"The {'+'.join(splits)} split of {manifest.path} has no image of "
                   f"{len(missing)} class(es): {elsewhere}. The model cannot learn them: every "
                   "image of them will be misclassified. Move some to train (`babyemo data "
                   "split` with another --seed, or more images), or remove those rows.")
    if "val" not in splits and manifest.rows_for("val"):
        absent = _classes_without_rows(manifest, ("val",))
        if absent:
            out.append(f"The val split of {manifest.path} has no image of "
                       f"{', '.join(repr(c) for c in absent)}: validation metrics and the "
                       "choice of best.pt ignore it.")
    for text in out:
        logger.warning("%s", text)
    return out


def warn_split_classes(manifest: Manifest, split: str | None) -> list[str]:
    """Warn (logged, and returned) when an evaluated split lacks classes of its manifest.

    Their recall cannot be measured, balanced accuracy leaves them out and macro-F1 counts
    them only if predicted (as F1 = 0). ``"all"`` or ``None`` (every row) warns of nothing.

    Args:
        manifest: The dataset.
        split: The evaluated split.

    Returns:
        The warnings, one sentence each (empty when every class is there).
    """
    if split in (None, ALL_SPLITS) or not manifest.rows_for(split):
        return []
    absent = _classes_without_rows(manifest, (split,))
    if not absent:
        return []
    text = (f"The {split} split of {manifest.path} has no image of "
            f"{', '.join(repr(c) for c in absent)}: its recall cannot be measured, balanced "
            "accuracy leaves it out, and macro-F1 counts it (as 0) only if it is predicted.")
    logger.warning("%s", text)
    return [text]


def _is_dir(path: Path) -> bool:
    """``path.is_dir()``, with an OS refusal (permission denied on a parent, a name too
    long) or a value the OS cannot take counted as "not a folder"."""
    try:
        return path.is_dir()
    except (OSError, ValueError):
        return False


def _path_key(rel: str) -> str:
    """``rel`` as :class:`~pathlib.PurePosixPath` normalises it (``a/./b``, ``a//b`` and
    ``a/b/`` are ``a/b``); the string itself when there is nothing to normalise (fast)."""
    if "//" in rel or "/./" in rel or rel.startswith("./") or rel.endswith(("/", "/.")):
        return str(PurePosixPath(rel))
    return rel


def _check_unique_paths(rows: Sequence[ManifestRow], where: Path) -> None:
    """Refuse a manifest that lists one image on several rows.

    A manifest is one row per image: two rows of one path either repeat it (it would count
    twice in training and in every metric: ``evaluate`` reported n=69 for 60 images), give
    it two labels, or put it in two splits (a leak: evaluated on an image it trained on).
    No reader can tell which row is meant, so none is guessed. Paths are compared after
    :class:`~pathlib.PurePosixPath` normalisation (``a/./b.jpg`` and ``a//b.jpg`` are
    ``a/b.jpg``); byte-identical copies under different names are not rows of one path and
    stay a warning of ``data inspect`` (FER-2013 ships hundreds of them across its splits).

    Raises:
        ManifestError: Naming the first repeated path, its lines, splits and labels, and
            how many paths repeat.
    """
    first: dict[str, int] = {}
    repeated: dict[str, list[int]] = {}
    for i, row in enumerate(rows):
        key = _path_key(row.path)
        if key in first:
            repeated.setdefault(key, [first[key]]).append(i)
        else:
            first[key] = i
    if not repeated:
        return
    path, idx = next(iter(repeated.items()))
    lines = ", ".join(f"{i + 2} ({rows[i].split}/{rows[i].label})" for i in idx)
    more = f"; {len(repeated)} paths are listed more than once" if len(repeated) > 1 else ""
    leak = (" in more than one split (a leak between training and evaluation)"
            if len({rows[i].split for i in idx}) > 1 else "")
    raise ManifestError(f"{where}: {path!r} is listed on lines {lines}{leak}{more}.",
                        "a manifest lists each image once: keep one row per path, or prepare "
                        "the dataset again")


def _check_writable(row: ManifestRow) -> None:
    """Refuse a row that :func:`read_manifest` would refuse or read back differently.

    Raises:
        ManifestError: A bad split or path, an empty label, a text value with surrounding
            whitespace (the reader strips it; the path is kept verbatim), a carriage
            return (the CSV writer does not quote it, so the reader would split the line),
            or a NUL character (the reader refuses it).
    """
    if row.split not in SPLITS:
        raise ManifestError(f"Row {row.path!r} has split {row.split!r}, not one of "
                            f"{', '.join(SPLITS)}.")
    check_relpath(row.path)
    if "\r" in row.path:
        raise ManifestError(f"Row path {row.path!r} contains a carriage return.",
                            "rename the file; manifest paths are one CSV field each")
    if not isinstance(row.label, str) or not row.label:
        raise ManifestError(f"Row {row.path!r} has an empty label.")
    for name in ("label", "sha256", "format", "dhash"):
        value = getattr(row, name)
        if isinstance(value, str) and (value != value.strip() or "\r" in value
                                       or "\x00" in value):
            raise ManifestError(f"Row {row.path!r}: {name} {value!r} cannot be stored as is "
                                "(surrounding whitespace, a carriage return or a NUL).",
                                "rename the class folder (or fix the value) without them")


def write_manifest(manifest: Manifest | Sequence[ManifestRow], out_dir: str | os.PathLike[str],
                   info: dict[str, Any] | None = None) -> Path:
    """Write ``manifest.csv`` and ``dataset.json`` into ``out_dir``, each atomically.

    Args:
        manifest: A :class:`Manifest`, or rows (then ``info`` is required).
        out_dir: Destination folder (created if missing).
        info: The ``dataset.json`` dict; defaults to ``manifest.info``. Its
            ``class_names`` are set to the sorted labels of the rows.

    Returns:
        The written ``manifest.csv`` path.

    Raises:
        ManifestError: No rows, no info, or a row that would not read back as written (a
            bad split or path, an empty label, surrounding whitespace in a text value, a
            carriage return, or a path on two rows); nothing is written then.
    """
    if isinstance(manifest, Manifest):
        rows, info = manifest.rows, dict(info if info is not None else manifest.info)
    else:
        rows = list(manifest)
        if info is None:
            raise ManifestError("write_manifest needs the dataset.json info with bare rows.")
        info = dict(info)
    if not rows:
        raise ManifestError("Refusing to write an empty manifest.")
    for row in rows:
        _check_writable(row)
    _check_unique_paths(rows, Path(out_dir) / MANIFEST_FILE)
    info["class_names"] = sorted({r.label for r in rows})
    info.setdefault("format", FORMAT_NAME)
    info.setdefault("format_version", FORMAT_VERSION)
    out = Path(out_dir).expanduser()
    csv_path = out / MANIFEST_FILE
    with_faces = any(r.n_faces is not None for r in rows)
    names = list(COLUMNS + FACE_COLUMNS) if with_faces else list(COLUMNS)
    with atomic_open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=names, lineterminator="\n")
        writer.writeheader()
        for r in rows:
            values = {k: getattr(r, k) for k in COLUMNS}
            if with_faces:
                values.update(r.face_columns())
            writer.writerow(values)
    with atomic_open(out / INFO_FILE, "w") as f:
        json.dump(info, f, indent=2, ensure_ascii=False)
        f.write("\n")
    logger.info("Wrote %s (%d rows)", csv_path, len(rows))
    return csv_path
