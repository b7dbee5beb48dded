"""The models packaged with babyemo: ``babyemo/models/weights/<name>.pt`` in the installed
package (see ``docs/model-card.md``). They are read-only to every command."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

PACKAGED_MODEL = "babyemo-infant"
"""Name of the packaged default model."""
PACKAGED_INIT = "babyemo-fer2013"
"""Name of the packaged adult-face model that ``train --init auto`` fine-tunes from."""


def weights_folder() -> Path:
    """The folder of the packaged ``.pt`` files."""
    return Path(__file__).resolve().parent / "weights"


def packaged_models() -> dict[str, dict[str, Any]]:
    """Models shipped inside the installed package, by name (``{"checkpoint", "packaged"}``).

    Every ``babyemo/models/weights/<name>.pt``: the default infant model
    (:data:`PACKAGED_MODEL`) and the FER-2013 model it was fine-tuned from
    (:data:`PACKAGED_INIT`). Empty when the files are absent.
    """
    return {p.stem: {"checkpoint": str(p), "packaged": True, "created": ""}
            for p in sorted(weights_folder().glob("*.pt"))}


def is_packaged(checkpoint: str | os.PathLike[str]) -> bool:
    """Whether ``checkpoint`` is one of the packaged files (read-only to every command:
    they live inside the installed package)."""
    try:
        return Path(checkpoint).expanduser().resolve().parent == weights_folder()
    except OSError:
        return False


__all__ = ["PACKAGED_INIT", "PACKAGED_MODEL", "is_packaged", "packaged_models", "weights_folder"]
