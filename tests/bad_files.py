"""Builders of bad and unusual image files (issue #6, "Bad input"), all synthetic.

Every builder writes one file (or link) into a folder and returns its path. :data:`CASES`
maps a case id to ``(builder, expected)``: ``expected`` is ``None`` for a file babyemo must
read (a manifest row, a prediction row without error) or a substring of the reason it
must give when it cannot (a skipped file of ``data prepare``, the ``error`` of a
prediction row).
"""

from __future__ import annotations

import builtins
import io
import os
import struct
import zlib
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

# Quadrant colours of the upright test pattern (top-left, top-right, bottom-left,
# bottom-right): every flip or rotation of it is distinguishable.
QUADRANTS = ((230, 30, 30), (30, 200, 30), (30, 30, 230), (240, 240, 40))

# EXIF orientation -> the transpose that turns an upright image into the stored one (the
# inverse of what a viewer applies; 6 and 8 are each other's inverse, the rest self-inverse).
_STORE = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
          4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE,
          6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
          8: Image.Transpose.ROTATE_270}


def quadrant_image(size=(64, 48)) -> Image.Image:
    """The upright pattern: four solid quadrants of :data:`QUADRANTS`."""
    w, h = size
    arr = np.zeros((h, w, 3), np.uint8)
    arr[: h // 2, : w // 2], arr[: h // 2, w // 2:] = QUADRANTS[0], QUADRANTS[1]
    arr[h // 2:, : w // 2], arr[h // 2:, w // 2:] = QUADRANTS[2], QUADRANTS[3]
    return Image.fromarray(arr, "RGB")


def noise_image(size=(64, 64), seed: int = 0) -> Image.Image:
    """Random RGB noise (large, incompressible JPEGs)."""
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8), "RGB")


def _save(img: Image.Image, path: Path, fmt: str | None = None, **kw) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt, **kw)
    return path


def _write(path: Path, data: bytes) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def exif_jpeg(path: Path, orientation: int) -> Path:
    """A JPEG whose pixels are the upright :func:`quadrant_image` stored as a camera would
    with EXIF ``orientation`` (1-8): a viewer applying the tag shows it upright."""
    upright = quadrant_image()
    op = _STORE[orientation]
    stored = upright if op is None else upright.transpose(op)
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _save(stored, path, "JPEG", quality=95, exif=exif.tobytes())


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(path: Path, width: int, height: int) -> Path:
    """A valid 1-bit PNG of ``width x height`` white pixels: a few KB that decode to
    ``width * height`` pixels (a decompression bomb when that is over Pillow's limit)."""
    row = b"\x00" + b"\xff" * ((width + 7) // 8)
    comp = zlib.compressobj(9)
    block, rest = divmod(height, 500)
    idat = b"".join(comp.compress(row * 500) for _ in range(block))
    idat += comp.compress(row * rest) + comp.flush()
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return _write(path, b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr)
                  + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b""))


def heic_stub(path: Path) -> Path:
    """The start of an HEIC file (ISO-BMFF ``ftyp`` box, brand ``heic``), as an iPhone
    writes it; enough for the format to be recognised, not decoded."""
    ftyp = b"ftypheic" + b"\x00\x00\x00\x00" + b"mif1heic"
    return _write(path, struct.pack(">I", 4 + len(ftyp)) + ftyp + b"\x00" * 64)


def _jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "JPEG", **kw)
    return buf.getvalue()


def _gif(path: Path) -> Path:
    frames = [quadrant_image().convert("P")] + [Image.new("P", (64, 48), i) for i in (1, 2)]
    path.parent.mkdir(parents=True, exist_ok=True)
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    return path


def _png16(path: Path) -> Path:
    arr = (np.asarray(quadrant_image().convert("L"), dtype=np.uint16) * 257).astype(np.uint16)
    return _save(Image.fromarray(arr), path, "PNG")


def _palette_transparent(path: Path) -> Path:
    img = quadrant_image().convert("P", palette=Image.Palette.ADAPTIVE, colors=8)
    return _save(img, path, "PNG", transparency=0)


def _symlink(path: Path) -> Path:
    target = _save(quadrant_image(), path.parent / "link_target.png", "PNG")
    path.symlink_to(target.name)
    return path


def _symlink_loop(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(path.name)  # points at itself
    return path


Builder = Callable[[Path], Path]

CASES: dict[str, tuple[str, Builder, str | None]] = {
    # id: (file name, builder(path) -> path, None = readable, else a substring of the reason)
    "zero_byte": ("zero.jpg", lambda p: _write(p, b""), "empty file"),
    "truncated_jpeg": ("truncated.jpg", lambda p: _write(
        p, _jpeg_bytes(noise_image((96, 96)))[:1500]), "truncated"),
    "random_bytes_jpg": ("random.jpg", lambda p: _write(p, os.urandom(2048)),
                         "not an image"),
    "text_named_png": ("notes.png", lambda p: _write(p, b"just some text\n" * 20),
                       "not an image"),
    "webp_named_jpg": ("webp.jpg", lambda p: _save(quadrant_image(), p, "WEBP"), None),
    "png_named_jpg": ("png.jpg", lambda p: _save(quadrant_image(), p, "PNG"), None),
    "gif_animated": ("anim.gif", _gif, None),
    "bmp": ("a.bmp", lambda p: _save(quadrant_image(), p, "BMP"), None),
    "tiff": ("a.tiff", lambda p: _save(quadrant_image(), p, "TIFF"), None),
    "heic_without_pillow_heif": ("photo.heic", heic_stub, "pillow-heif"),
    "cmyk_jpeg": ("cmyk.jpg", lambda p: _save(quadrant_image().convert("CMYK"), p, "JPEG"),
                  None),
    "png_16bit": ("gray16.png", _png16, None),
    "palette_png_transparency": ("palette.png", _palette_transparent, None),
    "la_png": ("la.png", lambda p: _save(quadrant_image().convert("LA"), p, "PNG"), None),
    "rgba_png": ("rgba.png", lambda p: _save(quadrant_image().convert("RGBA"), p, "PNG"),
                 None),
    "one_bit_png": ("bw.png", lambda p: _save(quadrant_image().convert("1"), p, "PNG"), None),
    "grayscale_jpeg": ("gray.jpg", lambda p: _save(quadrant_image().convert("L"), p, "JPEG"),
                       None),
    **{f"exif_orientation_{o}": (f"exif{o}.jpg", lambda p, o=o: exif_jpeg(p, o), None)
       for o in range(1, 9)},
    "tiny_1x1": ("tiny.png", lambda p: _save(Image.new("RGB", (1, 1), (90, 10, 10)), p,
                                              "PNG"), None),
    "huge_jpeg_6000x4000": ("huge.jpg", lambda p: _save(
        quadrant_image((6000, 4000)), p, "JPEG", quality=30), None),
    "bomb_png_over_limit": ("bomb.png", lambda p: bomb_png(p, 10_000, 10_000), "too large"),
    "bomb_png_over_2x_limit": ("bomb2.png", lambda p: bomb_png(p, 20_000, 20_000),
                               "too large"),
    "unicode_name": ("bébé_ßmile_😀_漢字.png", lambda p: _save(quadrant_image(), p, "PNG"),
                     None),
    "spaces_quotes_name": ("a b \"quoted\" 'x', y.png",
                           lambda p: _save(quadrant_image(), p, "PNG"), None),
    "newline_name": ("line\nbreak.png", lambda p: _save(quadrant_image(), p, "PNG"),
                     "newline"),
    "symlink_to_image": ("link.png", _symlink, None),
    "symlink_loop": ("loop.jpg", _symlink_loop, "symbolic link"),
}
"""The file-level cases; folder-level ones (empty folder, missing files...) are tests."""

READABLE = [k for k, (_, _, expected) in CASES.items() if expected is None]
BAD = [k for k, (_, _, expected) in CASES.items() if expected is not None]


_BYTES: dict[str, bytes] = {}
"""Bytes of the regular-file cases already built (the huge JPEG and the bombs take a
while to make): later builds copy them."""


def _build_at(case: str, path: Path) -> Path:
    if case in _BYTES:
        return _write(path, _BYTES[case])
    built = CASES[case][1](path)
    if not built.is_symlink():
        _BYTES[case] = built.read_bytes()
    return built


def build(case: str, folder: Path) -> Path:
    """Write case ``case`` of :data:`CASES` into ``folder``; returns its path."""
    return _build_at(case, folder / CASES[case][0])


def build_all(folder: Path, cases=None) -> dict[str, Path]:
    """Every case (or ``cases``) in one folder; ``{case: path}``."""
    return {case: build(case, folder) for case in cases or CASES}


def deny_read(path: Path, monkeypatch) -> None:
    """Make ``path`` unreadable: ``chmod 000``; as root (who may read anything) an
    ``open()`` that raises :class:`PermissionError` for it, as the OS would for a user."""
    if os.geteuid() != 0:
        path.chmod(0)
        return
    real_open = builtins.open

    def guarded(file, *args, **kwargs):
        if not isinstance(file, int) and os.fspath(file) == os.fspath(path):
            raise PermissionError(13, "Permission denied", os.fspath(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", guarded)
    monkeypatch.setattr(io, "open", guarded)
