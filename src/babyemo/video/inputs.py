"""``babyemo predict``'s inputs split into photos and video sources (torch-free, so the CLI
checks them before loading a model)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from babyemo.data.loading import folders
from babyemo.data.loading.folders import FoundFiles
from babyemo.video.reader import is_stream, is_video


@dataclass
class MediaInputs:
    """Photos and videos to predict.

    Attributes:
        found: The photo files (and error entries) found, videos taken out.
        sources: Video files (named, or found in folders by their names, see
            :data:`~babyemo.video.reader.VIDEO_SUFFIXES`), stream URLs and camera indices,
            in input order.
    """

    found: FoundFiles
    sources: list[str | int] = field(default_factory=list)

    @property
    def has_video(self) -> bool:
        """Whether there is at least one video source."""
        return bool(self.sources)


def find_media(inputs: Sequence[str | os.PathLike[str]], *, camera: int | None = None,
               recursive: bool = True, all_files: bool = False) -> MediaInputs:
    """Split ``babyemo predict``'s inputs into photos and video sources.

    Stream URLs (``rtsp://``, ``http(s)://``...) are sources as given; files and folders
    are searched as for photos (:func:`~babyemo.data.loading.folders.find_input_files`),
    and the files whose names end like a video, named or inside folders, become sources;
    the sources keep the order of ``inputs`` (a folder's videos where the folder is) and
    ``camera`` (an index) comes last.

    Raises:
        DataError: An input does not exist, or nothing to predict was given (see
            :func:`~babyemo.data.loading.folders.collect_input_files`).
    """
    paths = [Path(i) for i in inputs if not is_stream(str(i))]
    found = (folders.collect_input_files(paths, recursive=recursive, all_files=all_files,
                                         allow_empty=True) if paths else FoundFiles())
    videos = [p for p in found.entries if isinstance(p, Path) and is_video(p)]
    videos += [p for p in found.non_images if is_video(p)]
    if videos:
        taken = set(videos)
        found.files = [f for f in found.files if f not in taken]
        found.entries = [e for e in found.entries if e not in taken]
        found.non_images = [p for p in found.non_images if p not in taken]
    sources: list[str | int] = _in_input_order(inputs, videos)
    if camera is not None:
        sources.append(camera)
    if not sources:
        folders.check_found(found, paths)
    return MediaInputs(found, sources)


def _in_input_order(inputs: Sequence[str | os.PathLike[str]],
                    videos: list[Path]) -> list[str | int]:
    """The stream URLs of ``inputs`` and the ``videos`` found, in the order of ``inputs``.

    ``videos`` lists named files before the files found in folders (they come from
    :attr:`~babyemo.data.loading.folders.FoundFiles.entries` and ``non_images``); each
    is put back where its input was given: a named file at its place, a folder's videos
    (in the order they were found) at the folder's.
    """
    left = list(videos)
    sources: list[str | int] = []
    for item in inputs:
        if is_stream(str(item)):
            sources.append(str(item))
            continue
        path = Path(item)
        if path in left:  # a named file (given twice: once per time)
            left.remove(path)
            sources.append(str(path))
            continue
        mine = [v for v in left if v.is_relative_to(path)]
        for v in mine:
            left.remove(v)
        sources += [str(v) for v in mine]
    return sources + [str(v) for v in left]
