"""Mark images whose file names come from stock-photo sites (a metadata CSV generator).

Web-scraped datasets such as ``infant-emotions`` mix stock photos (studio light, white
backgrounds, often watermarks) with snapshots, and not equally per class. A model can
then learn the photo style instead of the face; comparing its metrics on stock and
non-stock images (``babyemo evaluate --slice-by source``) shows whether it did.

A file name is recognised by the site's name in it or by the site's own file-name
pattern (:data:`STOCK_PATTERNS`; first match wins), after removing a Roboflow export
suffix (``_jpg.rf.<hash>``) and a browser copy suffix (`` (1)``). Examples:

==================  =======================================================
site                file-name pattern (besides the site's name itself)
==================  =======================================================
``shutterstock``    ``<slug>-260nw-<id>`` (also ``600nw``, ``1500nw`` ...)
``adobestock``      ``240_F_<id>_<32 letters/digits>`` (also ``360_F_``...)
``gettyimages``     ``gettyimages-<id>-612x612``
``istock``          ``istockphoto-<id>-612x612``
``123rf``           ``<id>-<lowercase-slug>`` (e.g. ``69057026-sad-baby-crying``)
``alamy``           ``<slug>-<6-7 uppercase letters and digits>`` (``...-2H6Y9PJ``)
``dreamstime``      ``<lowercase-slug>-<8-9 digit id>``
``freepik``         ``<slug>_<author id>-<image id>`` (``..._23-2150763250``)
``unsplash``        ``photo-<13 digits>-<12 hex>`` and ``premium_photo-...``
``pexels``          ``pexels-...`` and ``free-photo-of-<slug>``
``vecteezy``        ``<slug>-photo`` and ``<slug>-free-photo``
``pixabay``         ``<slug>-<id>_1280`` (also ``_640``, ``_1920``)
==================  =======================================================

plus names containing ``depositphotos``, ``pixahive``, ``stockcake``, ``pngtree``,
``colourbox``, ``canstockphoto``, ``bigstock``, ``stocksy``, ``pond5``, ``fotolia`` or
``stock-photo`` (site ``unknown``). Anything else (``images (12)``, camera names, hashes,
blogs, wallpapers, Flickr, shops) is ``other``. A name-based rule can miss renamed stock
photos and, rarely, mislabel a name that happens to match; it is a proxy, not ground
truth. Standard library only.
"""

from __future__ import annotations

import os
import re
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from babyemo.data.loading.images import is_candidate
from babyemo.errors import DataError

if TYPE_CHECKING:
    from babyemo.data.preparation.manifest import Manifest

STOCK_PATTERNS: tuple[tuple[str, str], ...] = (
    ("shutterstock", r"shutterstock|(?:^|[-_])\d{3,4}nw-\d{5,}(?:$|\D)"),
    ("adobestock", r"adobe[-_ ]?stock|^\d{2,4}_F_\d{5,}_[A-Za-z0-9]{32}(?:$|\W|_)"),
    ("istock", r"istock"),
    ("gettyimages", r"getty[-_ ]?images"),
    ("depositphotos", r"depositphotos"),
    ("dreamstime", r"dreamstime|^[a-z]+(?:-[a-z0-9]+)+-\d{8,9}$"),
    ("alamy", r"(?i:alamy)|^[a-z0-9]+(?:[-_][a-z0-9]+)*[-_](?=[A-Z]*\d)(?=\d*[A-Z])[A-Z0-9]{6,7}$"),
    ("123rf", r"123rf|^\d{5,9}-[a-z]+(?:-[a-z0-9]+)+$"),
    ("freepik", r"freepik|^[a-z0-9]+(?:-[a-z0-9]+)*_\d{2,7}-\d{3,10}$"),
    ("unsplash", r"unsplash|^(?:premium_)?photo-\d{13}-[0-9a-f]{12}$"),
    ("pexels", r"pexels|^free-photo-of-"),
    ("vecteezy", r"vecteezy|^[a-z0-9]+(?:-[a-z0-9]+)+-photo$"),
    ("pixabay", r"pixabay|^[a-z]+(?:-[a-z]+)*-\d{5,8}_(?:640|960|1280|1920)$"),
    ("pixahive", r"pixahive"),
    ("stockcake", r"stockcake"),
    ("pngtree", r"pngtree"),
    ("colourbox", r"colou?rbox"),
    ("canstockphoto", r"can[-_]?stock[-_]?photo"),
    ("bigstock", r"bigstock"),
    ("stocksy", r"stocksy"),
    ("pond5", r"pond5"),
    ("fotolia", r"fotolia"),
    ("unknown", r"stock[-_ ]?photo"),
)
"""``(site, regular expression)`` in match order, matched against :func:`clean_stem`.
Case is ignored, except in Alamy's ID pattern (its IDs are upper case)."""

_COMPILED = [(site, re.compile(p, 0 if site == "alamy" else re.IGNORECASE))
             for site, p in STOCK_PATTERNS]
_ROBOFLOW = re.compile(r"_(?:jpe?g|png|webp|gif|bmp|tiff?|avif|jfif)\.rf\.[A-Za-z0-9]+$",
                       re.IGNORECASE)
_COPY = re.compile(r"\s*\(\d+\)$")

STOCK, OTHER = "stock", "other"
"""Values of the ``source`` column."""

METADATA_HEADER = ("path", "source", "stock_site", "fer_subset", "train_duplicate")
"""Columns of the written metadata CSV."""

_FER_SUBSET = re.compile(r"^(Training|PublicTest|PrivateTest)_\d+$")


def fer_subset(name: str) -> str:
    """FER-2013's subset of a file named as in its release (``PrivateTest_12345.jpg``).

    FER-2013 (Goodfellow et al. 2013) was published with three subsets: ``Training``
    (28,709 images), ``PublicTest`` (3,589) and ``PrivateTest`` (3,589, the challenge's
    final test; the half published work reports). Returns ``""`` for other names.
    """
    m = _FER_SUBSET.match(Path(name).stem)
    return m.group(1) if m else ""


def clean_stem(name: str) -> str:
    """A file name without folders, extension, Roboflow suffix and copy suffix.

    Example: ``"angry/360_F_1_abc (1)_jpg.rf.XyZ.jpg"`` -> ``"360_F_1_abc"``.
    """
    stem = PurePosixPath(name.replace("\\", "/")).name
    stem = stem.rsplit(".", 1)[0] if "." in stem else stem
    stem = _ROBOFLOW.sub("", stem) if ".rf." in stem else stem
    return _COPY.sub("", stem).strip()


def stock_site(name: str) -> str | None:
    """The stock-photo site a file name comes from, or ``None``.

    Args:
        name: File name or path (only the last component is used).

    Returns:
        A site of :data:`STOCK_PATTERNS` (``"unknown"``: says stock photo, site unknown),
        or ``None`` when the name shows no stock-photo origin.
    """
    stem = clean_stem(name)
    for site, pattern in _COMPILED:
        if pattern.search(stem):
            return site
    return None


@dataclass
class StockSummary:
    """What :func:`write_stock_metadata` found.

    Attributes:
        out: The metadata CSV written.
        root: Folder the ``path`` column is relative to.
        n: Images listed.
        n_stock: Images whose name comes from a stock site.
        by_site: Site -> images, most frequent first.
        n_train_duplicates: Non-train images that copy a train image (manifests only).
        by_label: Label (class) -> ``{"n", "stock"}`` images.
    """

    out: Path
    root: Path
    n: int
    n_stock: int
    by_site: dict[str, int] = field(default_factory=dict)
    by_label: dict[str, dict[str, int]] = field(default_factory=dict)
    n_train_duplicates: int = 0

    @property
    def stock_share(self) -> float:
        """Fraction of images from stock sites, in [0, 1]."""
        return self.n_stock / self.n if self.n else 0.0


def _list_images(source: str | os.PathLike[str]
                 ) -> tuple[Path, list[tuple[str, str]], Manifest | None]:
    """``(root, [(relative path, label)], manifest or None)`` of a manifest, a prepared
    folder or any source :func:`babyemo.data.sources.resolve.resolve_source` accepts (label =
    parent folder name)."""
    from babyemo.data.preparation.manifest import MANIFEST_FILE, read_manifest

    path = Path(source).expanduser()
    if (path.is_file() and path.suffix.lower() == ".csv") or (path / MANIFEST_FILE).is_file():
        manifest = read_manifest(path)
        return manifest.root, [(r.path, r.label) for r in manifest.rows], manifest
    from babyemo.data.sources.resolve import resolve_source

    folder, _, _ = resolve_source(source)
    root = folder.resolve()
    items: list[tuple[str, str]] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            file = Path(dirpath) / name
            if is_candidate(file):
                rel = file.relative_to(root).as_posix()
                items.append((rel, file.parent.name if file.parent != root else ""))
    return root, items, None


def train_duplicates(manifest: Manifest) -> dict[str, str]:
    """``yes`` / ``no`` per non-train image: is it a copy of a train image?

    A copy is a byte-identical file or a near-duplicate (dHash within the distance
    ``prepare`` recorded), grouped as
    :func:`babyemo.data.preparation.split.duplicate_ids` does. Test images that copy train
    images inflate a test score (FER-2013 has 531 such groups); ``evaluate --where
    train_duplicate=no`` leaves them out. Train images get ``""``.

    Raises:
        ManifestError: A row without a valid ``dhash`` (:meth:`Manifest.dhashes`).
    """
    from babyemo.data.preparation.split import duplicate_ids
    ids, _ = duplicate_ids([r.sha256 for r in manifest.rows], manifest.dhashes(),
                           max_distance=manifest.info.get("near_duplicate_distance"))
    train_groups = {g for g, r in zip(ids, manifest.rows, strict=True) if r.split == "train"}
    return {r.path: "" if r.split == "train" else ("yes" if g in train_groups else "no")
            for g, r in zip(ids, manifest.rows, strict=True)}


def stock_rows(paths: Iterable[str], duplicates: dict[str, str] | None = None
               ) -> list[tuple[str, ...]]:
    """Metadata rows (:data:`METADATA_HEADER`) for image paths: ``stock_site`` is empty for
    ``other``, ``fer_subset`` for names outside FER-2013's, ``train_duplicate`` without
    ``duplicates`` (see :func:`train_duplicates`)."""
    rows = []
    for p in paths:
        site = stock_site(p)
        rows.append((p, STOCK if site else OTHER, site or "", fer_subset(p),
                     (duplicates or {}).get(p, "")))
    return rows


def write_stock_metadata(source: str | os.PathLike[str],
                         out: str | os.PathLike[str]) -> StockSummary:
    """Write a metadata CSV (:data:`METADATA_HEADER`) for every image of a dataset.

    ``path`` is relative to the dataset root, as in ``manifest.csv``, so the CSV can be
    given to ``babyemo data prepare --metadata`` or ``babyemo evaluate --metadata``.
    ``source``/``stock_site`` come from stock-photo file names, ``fer_subset`` from
    FER-2013's file names (:func:`fer_subset`); ``train_duplicate`` is filled when
    ``source`` is a prepared manifest (:func:`train_duplicates`).

    Args:
        source: ``manifest.csv`` or its folder, an image folder, an archive, a URL or a
            catalogue name (e.g. ``infant-emotions``).
        out: The CSV to write (atomically).

    Returns:
        The :class:`StockSummary`.

    Raises:
        ConfigError: ``out`` cannot be written, is the source's manifest or lies inside
            its image root (see :func:`~babyemo.data.loading.folders.check_outputs`).
        DataError: The source does not exist or holds no image.
        ManifestError: An unreadable manifest.
        DownloadError: Fetching a catalogue dataset or URL failed.
    """
    import csv

    from babyemo.data.loading.folders import check_outputs
    from babyemo.data.preparation.manifest import INFO_FILE
    from babyemo.fs import atomic_open

    root, items, manifest = _list_images(source)
    out = Path(out).expanduser()
    check_outputs({"output file": out}, scanned=[root],
                  inputs=[] if manifest is None else [manifest.path,
                                                      manifest.path.parent / INFO_FILE])
    if not items:
        raise DataError(f"No image files found in {root}.",
                        "give a dataset folder, a manifest or a catalogue name")
    duplicates = train_duplicates(manifest) if manifest is not None else None
    rows = stock_rows((p for p, _ in items), duplicates)
    with atomic_open(out, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(METADATA_HEADER)
        writer.writerows(rows)
    sites = Counter(row[2] for row in rows if row[2])
    by_label: dict[str, dict[str, int]] = {}
    for (_, label), (_, src, *_) in zip(items, rows, strict=True):
        entry = by_label.setdefault(label, {"n": 0, "stock": 0})
        entry["n"] += 1
        entry["stock"] += src == STOCK
    return StockSummary(out=out, root=root, n=len(rows), n_stock=sum(sites.values()),
                        by_site=dict(sites.most_common()),
                        n_train_duplicates=sum(r[4] == "yes" for r in rows),
                        by_label=dict(sorted(by_label.items())))


__all__ = ["METADATA_HEADER", "OTHER", "STOCK", "STOCK_PATTERNS", "StockSummary", "clean_stem",
           "fer_subset", "stock_rows", "stock_site", "train_duplicates", "write_stock_metadata"]
