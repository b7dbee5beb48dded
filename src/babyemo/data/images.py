"""Open any image file safely with Pillow.

The format is sniffed from the bytes, not the extension (a WebP named ``.jpg`` is fine);
EXIF orientation is applied so the model sees the upright face; every failure becomes an
:class:`~babyemo.errors.ImageError` naming the file and the reason.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from babyemo.errors import ImageError

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jfif", ".heic", ".heif"}
)
"""File name endings treated as images when scanning folders (the bytes decide the format)."""

MAX_PIXELS = 89_478_485
"""Pillow's default decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``), made an error."""


def is_candidate(path: Path) -> bool:
    """True for a visible file whose name ends like an image."""
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def _open(path: Path) -> Image.Image:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
            if img.width * img.height > MAX_PIXELS:
                raise ImageError(
                    f"{path}: image too large ({img.width}x{img.height} pixels).",
                    f"the limit is {MAX_PIXELS:,} pixels (decompression-bomb guard)",
                )
            return img
    except ImageError:
        raise
    except FileNotFoundError as e:
        raise ImageError(f"{path}: file not found.") from e
    except PermissionError as e:
        raise ImageError(f"{path}: permission denied.") from e
    except IsADirectoryError as e:
        raise ImageError(f"{path}: is a folder, not an image.") from e
    except UnidentifiedImageError as e:
        size = path.stat().st_size if path.exists() else 0
        reason = "empty file" if size == 0 else "not an image Pillow can read"
        raise ImageError(f"{path}: {reason}.") from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        raise ImageError(f"{path}: image too large ({e}).",
                         "decompression-bomb guard") from e
    except (OSError, ValueError, SyntaxError) as e:
        raise ImageError(f"{path}: cannot open image ({e}).") from e


def sniff_format(path: str | os.PathLike[str]) -> str:
    """The image format as Pillow reads it from the bytes, e.g. ``"JPEG"``, ``"WEBP"``.

    Raises:
        ImageError: The file is not a readable image.
    """
    with _open(Path(path)) as img:
        return str(img.format)


def load_image(
    path: str | os.PathLike[str],
    channels: int = 3,
    draft_size: int | None = None,
) -> Image.Image:
    """Decode an image fully, upright, as RGB (``channels=3``) or L (``channels=1``).

    Args:
        path: Image file; the format is sniffed from its bytes.
        channels: 3 for RGB, 1 for grayscale.
        draft_size: If given, JPEGs are decoded at a reduced scale no smaller than this
            many pixels per side (Pillow ``draft``), which is several times faster when
            the model input is much smaller than the file.

    Returns:
        A loaded PIL image in mode ``"RGB"`` or ``"L"``. Transparent images are composited
        on white; the first frame of animations is used.

    Raises:
        ImageError: Missing, unreadable, truncated, not an image, or over :data:`MAX_PIXELS`.
    """
    path = Path(path)
    mode = "RGB" if channels == 3 else "L"
    img = _open(path)
    try:
        with img:
            if draft_size and img.format == "JPEG":
                img.draft(mode, (draft_size, draft_size))
            img.seek(0)
            img.load()
            img = ImageOps.exif_transpose(img) or img
            if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, rgba)
            if img.mode == "I;16" or img.mode.startswith("I;16"):
                img = img.point(lambda v: v / 256).convert("L")
            elif img.mode in ("I", "F"):
                img = ImageOps.autocontrast(img.convert("L"))
            return img.convert(mode)
    except ImageError:
        raise
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        raise ImageError(f"{path}: cannot decode image ({e}).") from e
