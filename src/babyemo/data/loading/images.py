"""Open any image file safely with Pillow.

The format is sniffed from the bytes, not the extension (a WebP named ``.jpg`` is fine);
EXIF orientation is applied so the model sees the upright face; every mode (CMYK, 16-bit,
palette with transparency, LA/RGBA, 1-bit, grayscale) becomes 8-bit RGB or L; every failure
becomes an :class:`~babyemo.errors.ImageError` naming the file and the reason (one short
sentence, never a decoder's internals such as Pillow's "bytes not processed") with its
:class:`~babyemo.data.loading.file_errors.FileErrorCode` in ``code``, which callers turn into a
skipped file or an error row.

Decompression and pixel bombs: an image over :data:`MAX_PIXELS` pixels, or longer than
:data:`MAX_ASPECT_RATIO` times its width (or wider than that times its height), is refused
from its header (:func:`check_geometry`), before any pixel is decoded, whatever
``PIL.Image.MAX_IMAGE_PIXELS`` is set to. Every decode goes through that one check, so it
comes before every resize that follows (JPEG draft, the evaluation transform's resize to the
model's square input, the face detector's input scaling, face crops). HEIC/HEIF
photos (iPhones) are read when the optional package ``pillow-heif`` is installed; without
it they fail with a reason that says so.
"""

from __future__ import annotations

import io
import logging
import os
import re
import warnings
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from babyemo.data.loading.file_errors import FileErrorCode
from babyemo.data.loading.folders import IMAGE_SUFFIXES, os_error_code, os_error_reason
from babyemo.errors import ImageError

logger = logging.getLogger(__name__)

MAX_PIXELS = 89_478_485
"""Pillow's default decompression-bomb limit (``Image.MAX_IMAGE_PIXELS``), made an error:
images with more pixels (width x height) are refused before decoding."""

MAX_ASPECT_RATIO = 20
"""Longest side / shortest side above which an image is refused (``too_large``), from its
header.

A few-hundred-byte PNG of 200000x1 pixels is under :data:`MAX_PIXELS`, yet resizing its
shorter side to the model's input (:class:`babyemo.transforms.EvalTransform`) asks for
``size**2 * aspect`` pixels: 7.5 GB for that strip at 112 px, terabytes for a 1x80,000,000
one. At 20:1 that resize stays under ``20 * size**2`` pixels (1 M pixels, 3 MB, at 224 px).
Real photos stay far below it (4:3, 3:2, 16:9; phone panoramas about 4:1, even full-circle
ones under 10:1), while at 20:1 the square the model sees is under 5% of the picture and the
face detector (longest side scaled to 640 px) sees a short side of at most 32 px: nothing
babyemo could classify is lost."""

HEIF_BRANDS = frozenset({b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1",
                         b"msf1", b"heif", b"avci", b"avcs"})
"""ISO-BMFF ``ftyp`` brands of HEIC/HEIF files (read with ``pillow-heif``)."""

HEIF_HINT = "or convert the photos to JPEG"

BOMB_HINT = "decompression-bomb guard; downscale the image if it is real"

AVIF_BRANDS = frozenset({b"avif", b"avis"})
"""ISO-BMFF ``ftyp`` brands of AVIF files (read by Pillow >= 11.3 built with libavif)."""

_MAGIC = ((b"\xff\xd8\xff", "JPEG"), (b"\x89PNG\r\n\x1a\n", "PNG"), (b"GIF8", "GIF"),
          (b"II*\x00", "TIFF"), (b"MM\x00*", "TIFF"), (b"BM", "BMP"))
"""Leading bytes of common image formats (WebP and the ISO-BMFF ones are checked apart)."""

_HEAD_BYTES = 512
"""Bytes read to tell why a file is not an image (text, HTML page, a known format)."""

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


def _head(path: Path, size: int = 16) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def _error(path: Path, code: FileErrorCode, reason: str, hint: str | None = None
           ) -> ImageError:
    """The :class:`ImageError` ``"<path>: <reason>."`` with its ``code``."""
    return ImageError(f"{path}: {reason}.", hint, code=code.value)


def _os_error(path: Path, error: OSError) -> ImageError:
    return _error(path, os_error_code(error), os_error_reason(error))


def _too_large(width: int, height: int) -> str:
    return (f"image too large ({width}x{height} = {width * height:,} pixels, over the "
            f"{MAX_PIXELS:,}-pixel limit)")


ASPECT_HINT = ("pixel-bomb guard: resizing so thin a strip to a square input needs huge "
               "memory; crop the photo if it is real")


def check_geometry(path: str | os.PathLike[str], width: int, height: int) -> None:
    """Refuse an image size that decoding or resizing could not afford.

    The one guard before every decode and resize (see the module docstring).

    Args:
        path: The file (named in the error).
        width: Width in pixels, from the header.
        height: Height in pixels, from the header.

    Raises:
        ImageError: ``code`` ``too_large``: more than :data:`MAX_PIXELS` pixels, or longest
            side / shortest side over :data:`MAX_ASPECT_RATIO`; ``corrupt``: a side of 0
            pixels.
    """
    path = Path(path)
    if width * height > MAX_PIXELS:
        raise _error(path, FileErrorCode.TOO_LARGE, _too_large(width, height), BOMB_HINT)
    short, long = min(width, height), max(width, height)
    if short < 1:
        raise _error(path, FileErrorCode.CORRUPT, f"image of {width}x{height} pixels (no "
                     "pixels)")
    if long > MAX_ASPECT_RATIO * short:
        ratio = long / short
        ratio_text = f"{ratio:,.0f}" if ratio >= 100 else f"{ratio:.1f}"
        raise _error(path, FileErrorCode.TOO_LARGE,
                     f"image too elongated ({width}x{height} pixels, {ratio_text}:1, over "
                     f"the {MAX_ASPECT_RATIO}:1 aspect-ratio limit)", ASPECT_HINT)


def _known_format(head: bytes) -> str | None:
    """The image format ``head`` (the first bytes of a file) starts, from its magic bytes."""
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    if len(head) >= 12 and head[4:8] == b"ftyp":
        if head[8:12] in AVIF_BRANDS:
            return "AVIF"
        if head[8:12] in HEIF_BRANDS:
            return "HEIC/HEIF"
    if head.startswith((b"\xff\x0a", b"\x00\x00\x00\x0cJXL \r\n\x87\n")):
        return "JPEG XL"
    return next((fmt for magic, fmt in _MAGIC if head.startswith(magic)), None)


def _text_kind(head: bytes) -> str | None:
    """``"HTML page"`` or ``"text"`` when ``head`` is the start of a text file, else ``None``."""
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip()
    if text[:15].lower().startswith((b"<!doctype html", b"<html")):
        return "HTML page"
    try:
        decoded = head.decode("utf-8")
    except UnicodeDecodeError as e:  # a multi-byte character cut by the end of head is fine
        if e.start < len(head) - 3:
            return None
        decoded = head[:e.start].decode("utf-8")
    printable = sum(c.isprintable() or c in "\t\r\n" for c in decoded)
    return "text" if decoded and printable >= 0.95 * len(decoded) else None


def _unidentified_reason(path: Path, data: bytes | None = None
                         ) -> tuple[FileErrorCode, str, str | None]:
    """Code, reason and hint for a file Pillow does not recognise (from ``data`` when
    given: the file is not read)."""
    try:
        head = _head(path, _HEAD_BYTES) if data is None else data[:_HEAD_BYTES]
    except OSError as e:
        return os_error_code(e), os_error_reason(e), None
    if not head:
        return FileErrorCode.EMPTY_FILE, "empty file", None
    unsupported = FileErrorCode.UNSUPPORTED_FORMAT
    if is_heif(head):
        if not heif_available():
            if "broken" in _heif_state:
                return (unsupported, "HEIC/HEIF image; the optional package pillow-heif is "
                        "installed but cannot be used (reinstall it: pip install "
                        "--force-reinstall pillow-heif)", HEIF_HINT)
            return (unsupported, "HEIC/HEIF image; reading it needs the optional package "
                    "pillow-heif, which is not installed (pip install pillow-heif)", HEIF_HINT)
        return (FileErrorCode.CORRUPT, "HEIC/HEIF image that pillow-heif cannot read "
                "(damaged, or a variant it does not support)", None)
    kind = _text_kind(head)
    if kind == "HTML page":
        return (FileErrorCode.NOT_AN_IMAGE, "not an image: an HTML web page (a failed "
                "download?)", None)
    if kind == "text":
        return FileErrorCode.NOT_AN_IMAGE, "not an image: the file holds text", None
    fmt = _known_format(head)
    if fmt == "JPEG XL":
        return unsupported, "JPEG XL image, which Pillow cannot read", "convert it to JPEG"
    if fmt == "AVIF" and not _pillow_reads("avif"):
        return (unsupported, "AVIF image, which this Pillow cannot read (Pillow >= 11.3 "
                "reads AVIF)", "pip install -U pillow, or convert the photos to JPEG")
    if fmt is not None:
        if _cut_short(path, head, data):
            return FileErrorCode.TRUNCATED, _truncated(path, fmt, data), None
        return (FileErrorCode.CORRUPT, f"damaged {fmt} file: its header cannot be read",
                None)
    return FileErrorCode.NOT_AN_IMAGE, "not an image (unknown format, or a damaged header)", None


def _pillow_reads(feature: str) -> bool:
    from PIL import features

    try:
        return bool(features.check(feature))
    except Exception:  # an unknown feature name in an old Pillow
        return False


def _cut_short(path: Path, head: bytes, data: bytes | None = None) -> bool:
    """True when the file is shorter than its own structure says (the RIFF size of a WebP,
    the box sizes of an ISO-BMFF file: AVIF, HEIC), or too short to hold any header
    (``data``: the file's bytes, when given the file is not read)."""
    try:
        size = path.stat().st_size if data is None else len(data)
        if head[:4] == b"RIFF" and len(head) >= 8:
            return int.from_bytes(head[4:8], "little") + 8 > size
        if len(head) >= 8 and head[4:8] == b"ftyp":
            return _boxes_end(path, size, data) > size
    except OSError:
        return False
    return size < 64


def _boxes_end(path: Path, size: int, data: bytes | None = None) -> int:
    """Where the top-level boxes of an ISO-BMFF file say it ends (at most ``size + 1``)."""
    offset = 0
    with open(path, "rb") if data is None else io.BytesIO(data) as f:
        while offset < size:
            f.seek(offset)
            header = f.read(16)
            if len(header) < 8:
                return size + 1
            box = int.from_bytes(header[:4], "big")
            if box == 1:
                if len(header) < 16:
                    return size + 1
                box = int.from_bytes(header[8:16], "big")
            if box == 0:  # the last box runs to the end of the file
                return size
            if box < 8 or not header[4:8].isalnum():  # damaged: not a size problem
                return size
            offset += box
    return offset


def _truncated(path: Path, fmt: str | None, data: bytes | None = None) -> str:
    """The reason of a file that ends before its image data does."""
    try:
        size = f"only {path.stat().st_size if data is None else len(data):,} bytes; "
    except OSError:
        size = ""
    what = f"{fmt} file" if fmt else "file"
    return (f"truncated {what}: it ends before its image data does ({size}an incomplete "
            "download or copy?)")


def _open(path: Path, data: bytes | None = None) -> Image.Image:
    """Open ``path`` lazily (header only), refusing decompression and pixel bombs
    (:func:`check_geometry`).

    Args:
        path: The file.
        data: Its bytes, already read (then they are decoded, not the file).

    Raises:
        ImageError: Missing, unreadable, not an image, over :data:`MAX_PIXELS` or
            :data:`MAX_ASPECT_RATIO`.
    """
    try:
        heif_available()  # registers pillow-heif's opener once, when it is installed
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            img = Image.open(path if data is None else io.BytesIO(data))
        try:
            check_geometry(path, *img.size)
        except ImageError:
            img.close()
            raise
        return img
    except ImageError:
        raise
    except UnidentifiedImageError as e:
        code, reason, hint = _unidentified_reason(path, data)
        raise _error(path, code, reason, hint) from e
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as e:
        found = re.search(r"\((\d+) pixels\)", str(e))
        pixels = f"{int(found.group(1)):,} pixels, " if found else ""
        raise _error(path, FileErrorCode.TOO_LARGE,
                     f"image too large ({pixels}over the {MAX_PIXELS:,}-pixel limit)",
                     BOMB_HINT) from e
    except OSError as e:
        if e.filename is not None or e.errno is not None:
            raise _os_error(path, e) from e
        raise _decode_error(path, e, None, data) from e
    except Exception as e:  # any decoder failure is the file's fault, never the run's
        raise _decode_error(path, e, None, data) from e


_PILLOW_GENERIC = ("broken data stream when reading image file", "could not create decoder "
                   "object", "decoder error")
"""Pillow messages that say nothing more than "the decoder failed" (left out of reasons)."""


def _decode_error(path: Path, error: BaseException, fmt: str | None,
                  data: bytes | None = None) -> ImageError:
    """The :class:`ImageError` of a decoder failure: ``truncated`` when the file ends before
    its image data does (Pillow's "image file is truncated (N bytes not processed)", or a
    WebP shorter than its header says), else ``corrupt``, in words rather than Pillow's."""
    text = str(error).strip().rstrip(".") or type(error).__name__
    try:
        head = _head(path, _HEAD_BYTES) if data is None else data[:_HEAD_BYTES]
    except OSError:
        head = b""
    fmt = fmt or _known_format(head)
    if "truncated" in text.lower() or (head and _cut_short(path, head, data)):
        return _error(path, FileErrorCode.TRUNCATED, _truncated(path, fmt, data))
    what = f"{fmt} image data" if fmt else "image data"
    detail = "" if text.lower().startswith(_PILLOW_GENERIC) else f" ({text})"
    return _error(path, FileErrorCode.CORRUPT, f"damaged {what}: the decoder failed{detail}")


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


def read_image_bytes(path: str | os.PathLike[str]) -> bytes:
    """The bytes of an image file, read once (to hash them and decode the same bytes).

    Raises:
        ImageError: The file cannot be read (missing, permission denied, a folder...),
            with its :class:`~babyemo.data.loading.file_errors.FileErrorCode` in ``code``.
    """
    path = Path(path)
    try:
        return path.read_bytes()
    except OSError as e:
        raise _os_error(path, e) from e


def load_image(
    path: str | os.PathLike[str],
    channels: int = 3,
    draft_size: int | None = None,
    data: bytes | None = None,
) -> Image.Image:
    """Decode an image fully, upright, as RGB (``channels=3``) or L (``channels=1``).

    Args:
        path: Image file; the format is sniffed from its bytes.
        channels: 3 for RGB, 1 for grayscale.
        draft_size: If given, JPEGs are decoded at a reduced scale no smaller than this
            many pixels per side (Pillow ``draft``), which is several times faster when
            the model input is much smaller than the file.
        data: The file's bytes, already read (:func:`read_image_bytes`): they are
            decoded instead of the file, so what was hashed is what is decoded.

    Returns:
        A loaded PIL image in mode ``"RGB"`` or ``"L"``, upright (EXIF orientation
        applied). Transparent images (RGBA, LA, palette with transparency) are composited
        on white; the first frame of animations (GIF, WebP, multi-page TIFF) is used;
        CMYK is converted to RGB; 16-bit and float images are scaled to 8 bits (see
        :func:`_to_8bit`).

    Raises:
        ImageError: Missing, unreadable (permission denied, symlink loop), empty,
            truncated, not an image, HEIC without ``pillow-heif``, over
            :data:`MAX_PIXELS` pixels or :data:`MAX_ASPECT_RATIO` (``too_large``, refused
            from the header before any decoding). The message starts with the path; the
            reason follows it; ``code`` holds the
            :class:`~babyemo.data.loading.file_errors.FileErrorCode` value.
    """
    path = Path(path)
    mode = "RGB" if channels == 3 else "L"
    img = _open(path, data)
    fmt = img.format
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
            raise _os_error(path, e) from e
        raise _decode_error(path, e, fmt, data) from e
    except MemoryError as e:
        raise _error(path, FileErrorCode.TOO_LARGE, "too large to decode: out of memory",
                     "free memory, or downscale the image") from e
    except Exception as e:  # any decoder failure is the file's fault, never the run's
        raise _decode_error(path, e, fmt, data) from e
