"""The one vocabulary of per-file errors (stdlib only).

A file that cannot be classified is an output row (``babyemo predict``), never a crash. Its
``error`` column holds one of the short, stable codes of :class:`FileErrorCode`, for
scripts; its ``error_detail`` column the human reason (e.g. ``permission denied``). The
codes are listed, with their meaning, in ``docs/data-formats.md``; a test keeps the two
lists equal.
"""

from __future__ import annotations

from enum import Enum


class FileErrorCode(str, Enum):
    """Why a file (or an entry found in a folder) gave no prediction.

    The values are what the CSV and JSON outputs hold; they never change meaning.
    """

    EMPTY_FILE = "empty_file"
    """The file has 0 bytes."""
    NOT_AN_IMAGE = "not_an_image"
    """The bytes are not an image format Pillow knows (text, an HTML page, random bytes, or
    an image whose header is damaged)."""
    UNSUPPORTED_FORMAT = "unsupported_format"
    """A recognised image format that cannot be decoded here: HEIC/HEIF without the optional
    package ``pillow-heif``, AVIF with a Pillow built without it, JPEG XL."""
    TRUNCATED = "truncated"
    """The file ends before its image data does (an incomplete download or copy)."""
    CORRUPT = "corrupt"
    """The image data is damaged: the decoder failed on it."""
    TOO_LARGE = "too_large"
    """More pixels than the decompression-bomb limit, one side over 20 times the other
    (a pixel bomb: a tiny 200000x1 file whose resize to a square input needs gigabytes),
    or too large to decode in memory."""
    UNREADABLE = "unreadable"
    """The file or folder cannot be read: permission denied, an input/output error, deleted
    or moved while running, a folder that cannot be listed."""
    BROKEN_LINK = "broken_link"
    """A symbolic link whose target does not exist."""
    LINK_LOOP = "link_loop"
    """A symbolic link loop, or a link to a folder already searched."""
    NOT_A_FILE = "not_a_file"
    """A pipe, socket or device (reading it would block or make no sense)."""
    NO_FACE = "no_face"
    """Face detection found no face in the photo (``--no-face-fallback error``). The file
    itself is fine, so this is not counted as an unreadable file."""

    def __str__(self) -> str:
        return self.value


FILE_ERROR_CODES: frozenset[str] = frozenset(code.value for code in FileErrorCode)
"""Every value the ``error`` column of a prediction row can hold (besides empty)."""
