"""Folder conventions shared by scanning and fetching datasets (stdlib only).

Hidden entries (names starting with ``.`` and macOS's ``__MACOSX``) are never data; split
folders are ``train/``, ``val/`` or ``validation/`` and ``test/`` (case-insensitive); an
archive often wraps its whole content in one top-level folder.
"""

from __future__ import annotations

from pathlib import Path

SPLIT_ALIASES = {"train": "train", "val": "val", "validation": "val", "test": "test"}
"""Folder names (case-insensitive) recognised as splits, and the split each one means."""


def is_hidden(name: str) -> bool:
    """True for a file or folder name that is never data (``.*`` or ``__MACOSX``)."""
    return name.startswith(".") or name == "__MACOSX"


def is_nonempty_dir(path: Path) -> bool:
    """True when ``path`` is a folder with at least one entry (hidden ones count)."""
    return path.is_dir() and any(path.iterdir())


def visible_subdirs(folder: Path) -> list[Path]:
    """The sub-folders of ``folder`` that are not hidden, sorted by path.

    Raises:
        OSError: ``folder`` cannot be listed.
    """
    return sorted(p for p in folder.iterdir() if p.is_dir() and not is_hidden(p.name))


def single_top_folder(folder: Path) -> Path:
    """The only visible entry of ``folder`` when it is a folder, else ``folder`` itself.

    Archives often wrap everything in one top-level folder; this unwraps one level.
    """
    entries = [p for p in folder.iterdir() if not is_hidden(p.name)]
    if len(entries) == 1 and entries[0].is_dir():
        return entries[0]
    return folder
