"""Which manifest a command uses when none is given.

A trained model knows its data: ``babyemo train`` records the manifest's path and SHA-256
in the checkpoint (``train.manifest``, ``train.manifest_sha256``), and ``evaluate`` and
``calibrate`` use that manifest when ``--data`` is not given (:func:`manifest_for_model`),
so their test and val splits are the ones the model held out. The "last prepared"
pointer of the babyemo home (``state.json``, written by ``data prepare`` / ``data split``)
is mutable state that another babyemo process may rewrite at any time: it is only the
default of ``train`` and ``data inspect`` (:func:`manifest_for_training`). Every choice
says where it came from (:class:`ManifestChoice`), for the commands to print.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from babyemo import paths
from babyemo.errors import ManifestError
from babyemo.fs import sha256_file

log = logging.getLogger(__name__)

MANIFEST_FILE = "manifest.csv"

GIVEN = "given"
""":attr:`ManifestChoice.source`: passed by the caller (``--data``)."""
RECORDED = "recorded in the checkpoint"
""":attr:`ManifestChoice.source`: the manifest the model was trained on."""
FOUND = "same bytes as the one recorded in the checkpoint"
""":attr:`ManifestChoice.source`: a prepared manifest identical to the recorded one."""
LAST_PREPARED = "last prepared"
""":attr:`ManifestChoice.source`: the home's last prepared (or re-split) manifest."""


@dataclass(frozen=True)
class ManifestChoice:
    """A manifest and why it was chosen.

    Attributes:
        path: The ``manifest.csv`` (or a folder holding it, as given).
        source: One of :data:`GIVEN`, :data:`RECORDED`, :data:`FOUND`,
            :data:`LAST_PREPARED`.
    """

    path: Path
    source: str

    def describe(self) -> str:
        """``"<path> (<source>)"``, for a command's output."""
        return f"{self.path} ({self.source})"


def remember_prepared(manifest_path: str | os.PathLike[str]) -> None:
    """Make ``manifest_path`` the home's last prepared manifest (under a lock, atomically).

    Raises:
        StateError: ``state.json`` is corrupt or locked too long.
    """
    paths.update_state(last_manifest=str(Path(manifest_path).resolve()))


def last_prepared() -> Path:
    """The ``manifest.csv`` most recently prepared or re-split in this babyemo home.

    Raises:
        ManifestError: Nothing was prepared in this home yet, or that manifest is gone
            (deleted or moved since).
        StateError: ``state.json`` is corrupt.
    """
    recorded = paths.read_state().get("last_manifest")
    if not recorded:
        raise ManifestError(f"No dataset was prepared in this babyemo home ({paths.home()}).",
                            "run `babyemo data prepare`, or pass --data MANIFEST")
    path = Path(recorded)
    if not path.is_file():
        raise ManifestError(
            f"The last manifest prepared in this babyemo home, {path}, no longer exists "
            "(deleted or moved since).",
            "pass --data MANIFEST, or prepare the dataset again with `babyemo data prepare`")
    return path


def manifest_for_training(data: str | os.PathLike[str] | None) -> ManifestChoice:
    """The manifest ``train`` (or ``data inspect``) uses: ``data``, else the last prepared.

    Raises:
        ManifestError: No ``data`` and no (existing) last prepared manifest.
    """
    if data is not None and str(data) != "":
        return ManifestChoice(Path(data), GIVEN)
    return ManifestChoice(last_prepared(), LAST_PREPARED)


def manifest_for_model(data: str | os.PathLike[str] | None, train: Mapping[str, Any] | None,
                       model: str, *, option: str = "--data",
                       changed_ok: bool = False) -> ManifestChoice:
    """The manifest to evaluate or calibrate a model on: ``data``, else the model's own.

    Without ``data``, the manifest recorded at training (``train["manifest"]``) is used if
    it still holds the same bytes (``train["manifest_sha256"]``); when it is gone, a
    prepared manifest of this home with the same bytes is used instead (e.g. after moving
    the babyemo home, or for a packaged model whose data the user prepared the same way).
    Never the "last prepared" pointer, which other processes rewrite.

    Args:
        data: ``--data`` (a ``manifest.csv`` or its folder), or ``None``.
        train: The checkpoint's ``train`` record (``None`` when it has none).
        model: The model's name or file, for messages.
        option: The command's option for ``data``, for hints.
        changed_ok: Use a recorded manifest that changed since training, with a warning
            in the log, instead of raising (e.g. to draw int8 calibration images).

    Returns:
        The chosen manifest and why.

    Raises:
        ManifestError: No ``data`` and the checkpoint records no manifest, or its manifest
            changed since training (re-split or re-prepared: its held-out splits may
            contain training images), or it is not on this machine.
    """
    if data is not None and str(data) != "":
        return ManifestChoice(Path(data), GIVEN)
    recorded = (train or {}).get("manifest")
    digest = (train or {}).get("manifest_sha256")
    if not recorded:
        raise ManifestError(f"{model} records no training manifest.",
                            f"pass {option} MANIFEST")
    path = Path(recorded)
    if path.is_file():
        if digest and sha256_file(path) != digest:
            changed = (f"{model} was trained on {path}, which has changed since (re-split or "
                       "prepared again)")
            if changed_ok:
                log.warning("%s: its train split may hold images the model did not train "
                            "on.", changed)
                return ManifestChoice(path, RECORDED)
            raise ManifestError(
                f"{changed}: its val and test splits may now hold training images.",
                f"to use it anyway, pass {option} {path}; or prepare the data again exactly "
                "as for training")
        return ManifestChoice(path, RECORDED)
    same = _find_same_manifest(digest) if digest else None
    if same is not None:
        log.info("%s was trained on %s, which is not here; %s has the same bytes.",
                 model, path, same)
        return ManifestChoice(same, FOUND)
    dataset = (train or {}).get("dataset")
    example = f" (e.g. one from `babyemo data prepare {dataset}`)" if dataset else ""
    raise ManifestError(
        f"{model} was trained on {path}, which is not on this machine, and no prepared "
        f"manifest in {paths.prepared_dir()} has the same bytes.",
        f"pass {option} MANIFEST{example}")


def trained_on(manifest_path: str | os.PathLike[str], train: Mapping[str, Any] | None,
               split: str | None) -> bool:
    """Whether a model was trained on ``split`` of this very manifest (same bytes).

    Args:
        manifest_path: The manifest about to be used.
        train: The checkpoint's ``train`` record.
        split: A split name; ``"all"`` / ``None`` mean every row.

    Returns:
        True when the manifest's SHA-256 is the recorded one and ``split`` is (or, for
        all rows, includes) a split the model trained on (``config.train_splits``).
    """
    train = train or {}
    digest = train.get("manifest_sha256")
    splits = set((train.get("config") or {}).get("train_splits") or ["train"])
    chosen = set(splits) if split in (None, "all") else {split}
    if not digest or not chosen & splits:
        return False
    path = Path(manifest_path)
    path = path / MANIFEST_FILE if path.is_dir() else path
    try:
        return sha256_file(path) == digest
    except OSError:
        return False


def _find_same_manifest(digest: str) -> Path | None:
    """A prepared manifest of this home whose SHA-256 is ``digest`` (``None``: none)."""
    candidates = sorted(paths.prepared_dir().glob(f"*/{MANIFEST_FILE}"))
    last = paths.read_state().get("last_manifest")
    if last and Path(last) not in candidates:
        candidates.append(Path(last))
    for candidate in candidates:
        try:
            if sha256_file(candidate) == digest:
                return candidate
        except OSError:
            continue
    return None


__all__ = ["FOUND", "GIVEN", "LAST_PREPARED", "RECORDED", "ManifestChoice", "last_prepared",
           "manifest_for_model", "manifest_for_training", "remember_prepared", "trained_on"]
