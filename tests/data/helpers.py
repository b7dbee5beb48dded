"""Helpers shared by the data tests: synthetic pattern images, zips, a closed port."""

from __future__ import annotations

import hashlib
import socket
import zipfile
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("angry", "crying", "happy")


def pattern_image(seed: int, size=(48, 48)) -> Image.Image:
    """A smooth random pattern: every seed gives a different structure (and dHash)."""
    rng = np.random.default_rng(seed)
    grid = (rng.random((4, 4, 3)) * 255).astype(np.uint8)
    return Image.fromarray(grid, "RGB").resize(size, Image.Resampling.BICUBIC)


def save_pattern(path: Path, seed: int, size=(48, 48), fmt: str | None = None,
                 **save_kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    pattern_image(seed, size).save(path, format=fmt, **save_kw)
    return path


def make_distinct_folder(root: Path, classes=CLASSES, per_class: int = 20,
                         seed0: int = 0) -> Path:
    """ImageFolder of distinct images (no two are near-duplicates)."""
    for ci, cls in enumerate(classes):
        for i in range(per_class):
            save_pattern(root / cls / f"{cls}_{i:03d}.png", seed0 + 1000 * ci + i)
    return root


def closed_port_url() -> str:
    """An http URL on 127.0.0.1 whose port nothing listens on."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/x.zip"


def file_sha256(path: Path) -> str:
    """Hex SHA-256 of a file's bytes."""
    return hashlib.sha256(path.read_bytes()).hexdigest()


def zip_folder(folder: Path, archive: Path, prefix: str = "") -> Path:
    """Zip every file below ``folder`` as ``prefix + relative path``."""
    archive.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(archive, "w") as zf:
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + p.relative_to(folder).as_posix())
    return archive
