"""Open any image file safely with Pillow.

The format is sniffed from the bytes, not the extension (a WebP named ``.jpg`` is fine);
EXIF orientation is applied so the model sees the upright face; every mode (CMYK, 16-bit,
palette with transparency, LA/RGBA, 1-bit, grayscale) becomes 8-bit RGB or L; every failure
becomes an :class:`~babyemo.errors.ImageError` naming the file and the reason (one short
sentence), which callers turn into a skipped file or an error row.

Decompression bombs: an image over :data:`MAX_PIXELS` pixels is refused from its header,
before any pixel is decoded, whatever ``PIL.Image.MAX_IMAGE_PIXELS`` is set to. HEIC/HEIF
photos (iPhones) are read when the optional package ``pillow-heif`` is installed; without
it they fail with a reason that says so.
"""

from __future__ import annotations

import logging
import os
import re
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from babyemo.data.folders import os_error_reason
from babyemo.errors import ImageError

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES = frozenset(
    {".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff", ".jfif", ".heic", ".heif"}
)
"""File name endings treated as images when scanning folders (the bytes decide the format)."""

MAX_PIXELS = 89_478_485
"""Pillow's default decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``), made an error:
images with more pixels (width x height) are refused before decoding."""

HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1",
                         b"msf1", b"heif", b"avci", b"avcs"})
"""ISO-BMFF ``ftyp`` brands of HEIC/HEIF files (read with ``pillow-heif``)."""

HEIF_HINT = "or convert the photos to JPEG"

_heif_state: dict[str, bool] = {}


def is_candidate(path: Path) -> bool:
    """True for a visible file whose name ends like an image."""
    return not path.name.startswith(".") and path.suffix.lower() in IMAGE_SUFFIXES


def is_heif(head: bytes) -> bool:
    """True when ``head`` (the first 16+ bytes of a file) starts an HEIC/HEIF file."""
    return len(head) >= 12 and head[4:8] == b"ftyp" and head[8:12] in HEIF_BRANDS


def heif_available() -> bool:
    """Whether HEIC/HEIF files can be read: ``pillow-heif`` is installed (its opener is
    registered with Pillow on the first call)."""
    if "ok" not in _heif_state:
        try:
            import pillow_heif  # type: ignore[import-not-found]

            pillow_heif.register_heif_opener()
            _heif_state["ok"] = True
        except ImportError:
            _heif_state["ok"] = False
        except Exception as e:  # installed but broken (e.g. a missing libheif)
            logger.warning("pillow-heif is installed but cannot be used (%s)", e)
            _heif_state["ok"] = _heif_state["broken"] = False
    return _heif_state["ok"]


def _head(path: Path) -> bytes:
    with open(path, "rb") as f:
        return f.read(16)


def _too_large(width: int, height: int) -> str:
    return (f"image too large ({width}x{height} = {width * height:,} pixels, over the "
            f"{MAX_PIXELS:,}-pixel limit)")


def _unidentified_reason(path: Path) -> tuple[str, str | None]:
    """Reason and hint for a file Pillow does not recognise."""
    try:
        head = _head(path)
    except OSError as e:
        return os_error_reason(e), None
    if not head:
        return "empty file", None
    if is_heif(head):
        if not heif_available():
            if "broken" in _heif_state:
                return ("HEIC/HEIF image; the optional package pillow-heif is installed but "
                        "cannot be used (reinstall it: pip install --force-reinstall "
                        "pillow-heif)", HEIF_HINT)
            return ("HEIC/HEIF image; reading it needs the optional package pillow-heif, "
                    "which is not installed (pip install pillow-heif)", HEIF_HINT)
        return "HEIC/HEIF image that pillow-heif cannot read", None
    return "not an image Pillow can read (unknown format or corrupt header)", None


def _open(path: Path) -> Image.Image:
    """Open ``path`` lazily (header only), refusing decompression bombs.

    Raises:
        ImageError: Missing, unreadable, not an image, or over :data:`MAX_PIXELS`.
    """
    try:
        heif_available()  # registers pillow-heif's opener once, when it is installed
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path)
        if img.width * img.height > MAX_PIXELS:
            size = img.size
            img.close()
            raise ImageError(f"{path}: {_too_large(*size)}.",
                             "decompression-bomb guard; downscale the image if it is real")
        return img
    except ImageError:
        raise
    except UnidentifiedImageError as e:
        reason, hint = _unidentified_reason(path)
        raise ImageError(f"{path}: {reason}.", hint) from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        pixels = f"{int(found.group(1)):,} pixels, " if found else ""
        raise ImageError(f"{path}: image too large ({pixels}over the {MAX_PIXELS:,}-pixel "
                         "limit).",
                         "decompression-bomb guard; downscale the image if it is real") from e
    except OSError as e:
        if e.filename is not None or e.errno is not None:
            raise ImageError(f"{path}: {os_error_reason(e)}.") from e
        raise ImageError(f"{path}: {_decode_reason(e)}.") from e
    except Exception as e:  # any decoder failure is the file's fault, never the run's
        raise ImageError(f"{path}: {_decode_reason(e)}.") from e


def _decode_reason(error: BaseException) -> str:
    text = str(error).strip().rstrip(".") or type(error).__name__
    if text.lower().startswith("image file is truncated"):
        return "truncated image file" + text[len("image file is truncated"):]
    if "truncated" in text.lower():
        return f"truncated image file ({text})"
    return f"cannot decode image ({text})"


def sniff_format(path: str | os.PathLike[str]) -> str:
    """The image format as Pillow reads it from the bytes, e.g. ``"JPEG"``, ``"WEBP"``.

    Raises:
        ImageError: The file is not a readable image.
    """
    with _open(Path(path)) as img:
        return str(img.format)


def _upright(img: Image.Image, path: Path) -> Image.Image:
    """``img`` rotated/flipped as its EXIF orientation says (as stored if that is corrupt)."""
    try:
        return ImageOps.exif_transpose(img) or img
    except Exception as e:  # a corrupt EXIF block: keep the pixels as stored
        logger.warning("%s: cannot read its EXIF orientation (%s); used as stored", path, e)
        return img


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit and 32-bit integer or float grayscale (``I;16*``, ``I``, ``F``) to ``L``.

    16-bit images keep their top 8 bits; ``I``/``F`` images whose values already fit
    0-255 (or 0-1 for ``F``) are kept as they are; any other range is stretched linearly.
    """
    if img.mode.startswith("I;16"):
        return img.convert("I").point(lambda v: v / 256).convert("L")
    lo, hi = img.getextrema()
    if lo >= 0 and hi <= 255 and not (img.mode == "F" and hi <= 1.0):
        return img.convert("L")
    if img.mode == "F" and lo >= 0 and hi <= 1.0:
        return img.point(lambda v: v * 255).convert("L")
    if img.mode == "I" and lo >= 0 and hi <= 65535:
        return img.point(lambda v: v / 256).convert("L")
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return img.point(lambda v: (v - lo) * scale).convert("L")


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
        A loaded PIL image in mode ``"RGB"`` or ``"L"``, upright (EXIF orientation
        applied). Transparent images (RGBA, LA, palette with transparency) are composited
        on white; the first frame of animations (GIF, WebP, multi-page TIFF) is used;
        CMYK is converted to RGB; 16-bit and float images are scaled to 8 bits (see
        :func:`_to_8bit`).

    Raises:
        ImageError: Missing, unreadable (permission denied, symlink loop), empty,
            truncated, not an image, HEIC without ``pillow-heif``, or over
            :data:`MAX_PIXELS` pixels. The message starts with the path; the reason
            follows it.
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
            img = _upright(img, path)
            if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or (
                    img.mode == "P" and "transparency" in img.info):
                rgba = img.convert("RGBA")
                background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
                img = Image.alpha_composite(background, rgba)
            if img.mode.startswith("I;16") or img.mode in ("I", "F"):
                img = _to_8bit(img)
            return img.convert(mode)
    except ImageError:
        raise
    except OSError as e:
        if e.errno is not None:  # the file became unreadable while decoding
            raise ImageError(f"{path}: {os_error_reason(e)}.") from e
        raise ImageError(f"{path}: {_decode_reason(e)}.") from e
    except MemoryError as e:
        raise ImageError(f"{path}: out of memory decoding the image.",
                         "free memory, or downscale the image") from e
    except Exception as e:  # any decoder failure is the file's fault, never the run's
        raise ImageError(f"{path}: {_decode_reason(e)}.") from e
