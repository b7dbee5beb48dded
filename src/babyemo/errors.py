"""The one exception family of babyemo (stdlib only).

Every error the API raises is a :class:`BabyEmoError` carrying a message (what was wrong,
with the value received) and a hint (what to do). The CLI prints both on one red line
and exits 1; the API itself never prints or exits.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class BabyEmoError(Exception):
    """Base class of every babyemo error.

    Args:
        message: What went wrong, naming the value received.
        hint: What the user can do about it (optional).
    """

    default_hint: str | None = None

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint if hint is not None else self.default_hint

    def __str__(self) -> str:
        return self.message if not self.hint else f"{self.message} ({self.hint})"


class ConfigError(BabyEmoError, ValueError):
    """An option or parameter has an invalid value."""


class DataError(BabyEmoError):
    """A dataset, folder or image cannot be used as asked."""


class ManifestError(DataError):
    """A manifest CSV is missing, malformed or points outside its dataset root."""


class ImageError(DataError):
    """One image file cannot be decoded (corrupt, not an image, too large, unreadable).

    Args:
        message: ``"<path>: <reason>."``.
        hint: What the user can do about it (optional).
        code: The reason as a stable code, a value of
            :class:`babyemo.data.loading.file_errors.FileErrorCode` (e.g. ``"truncated"``), or
            ``None`` when not known (then callers treat the file as ``unreadable``).
    """

    def __init__(self, message: str, hint: str | None = None, code: str | None = None) -> None:
        self.code = code
        # torch's DataLoader re-raises an error of a worker process as ``ImageError(text)``
        # with text "Caught ImageError in DataLoader worker process N.\nOriginal
        # Traceback ...": keep its last line, the original message, so errors stay one line.
        if message.startswith("Caught ImageError") and "Original Traceback" in message:
            message = message.rstrip().splitlines()[-1].split(": ", 1)[-1]
        super().__init__(message, hint)


class VideoError(DataError):
    """A video file, stream or camera cannot be opened, or gives no frame at all (a video
    that ends early is not an error: its reader stops and records why).

    Args:
        message: ``"<source>: <reason>."``.
        hint: What the user can do about it (optional).
        code: The reason as a stable code, a value of
            :class:`babyemo.data.loading.file_errors.FileErrorCode` (e.g. ``"corrupt"``), or
            ``None`` when not known.
    """

    def __init__(self, message: str, hint: str | None = None, code: str | None = None) -> None:
        self.code = code
        super().__init__(message, hint)


class DownloadError(BabyEmoError):
    """A download failed, or its checksum or archive was rejected."""


class CorruptArchiveError(DownloadError):
    """An archive cannot be read: not a zip or tar file, truncated, corrupt or encrypted
    (not raised for the zip-bomb limits, nor for unsafe entries)."""


class UnsafeArchiveError(DownloadError):
    """An archive entry would be written outside the extraction folder."""


class RegistryError(BabyEmoError, KeyError):
    """An unknown or duplicate name in a registry (architectures, trained models, datasets)."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return BabyEmoError.__str__(self)


class CheckpointError(BabyEmoError):
    """A checkpoint file is missing, unsafe, of an unknown version or lacks a key."""


class StateError(BabyEmoError):
    """babyemo's own files in its home folder (``models.json``, ``state.json``) cannot be
    read or locked: corrupt JSON, or another babyemo process holds the lock too long."""


class DeviceError(BabyEmoError):
    """The requested device or precision is not available on this machine."""


class DistributedError(BabyEmoError):
    """A distributed run (``torchrun``) cannot start or lost a process: a bad launch
    environment, a rendezvous that fails, or a peer that died or stopped answering."""

    default_hint = ("look for the first error of the other ranks above (torchrun prints "
                    "each rank's exit); a rank that hangs is dropped after --dist-timeout")


class ExportError(BabyEmoError):
    """A model export failed its checks, or an exported model (ONNX) is missing, is not
    babyemo's, or does not match its checkpoint."""

    default_hint = "export it again with `babyemo export CHECKPOINT --format onnx`"


class MissingDependencyError(BabyEmoError):
    """A package is missing (an optional one, or a broken install); the hint gives the pip
    command (the extra that brings it, else the package itself)."""

    def __init__(self, package: str, extra: str | None, purpose: str) -> None:
        kind = "optional package" if extra else "package"
        super().__init__(
            f"{purpose} needs the {kind} '{package}', which is not installed.",
            f"pip install 'babyemo[{extra}]'" if extra else f"pip install {package}",
        )
        self.package = package
        self.extra = extra


def unknown_name(kind: str, name: str, known: Iterable[str]) -> RegistryError:
    """Build a :class:`RegistryError` for an unknown name, suggesting close matches.

    Args:
        kind: What was looked up, e.g. ``"architecture"``.
        name: The name received.
        known: The names that exist.

    Returns:
        The error (to be raised by the caller).
    """
    known = sorted(known)
    close = difflib.get_close_matches(name, known, n=3, cutoff=0.5)
    if close:
        hint = "did you mean " + " or ".join(close) + "?"
    elif known:
        hint = "known: " + ", ".join(known[:20]) + (" ..." if len(known) > 20 else "")
    else:
        hint = "none are registered yet"
    return RegistryError(f"Unknown {kind} '{name}'.", hint)
