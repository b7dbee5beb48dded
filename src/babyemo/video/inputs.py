"""``babyemo predict``'s inputs split into photos and video sources (torch-free, so the CLI
checks them before loading a model)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from babyemo.data.loading.folders import FoundFiles, collect_input_files, find_input_files
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
    ``camera`` (an index) comes last.

    Raises:
        DataError: An input does not exist, or nothing to predict was given (see
            :func:`~babyemo.data.loading.folders.collect_input_files`).
    """
    streams = [str(i) for i in inputs if is_stream(str(i))]
    paths = [Path(i) for i in inputs if not is_stream(str(i))]
    found = FoundFiles()
    if paths:
        try:
            found = find_input_files(paths, recursive=recursive, all_files=all_files)
        except FileNotFoundError:
            collect_input_files(paths, recursive=recursive, all_files=all_files)  # raises
            raise
    videos = [p for p in found.entries if isinstance(p, Path) and is_video(p)]
    videos += [p for p in found.non_images if is_video(p)]
    if videos:
        taken = set(videos)
        found.files = [f for f in found.files if f not in taken]
        found.entries = [e for e in found.entries if e not in taken]
        found.non_images = [p for p in found.non_images if p not in taken]
    sources: list[str | int] = [str(v) for v in videos] + streams
    if camera is not None:
        sources.append(camera)
    if not sources:
        return MediaInputs(collect_input_files(paths, recursive=recursive, all_files=all_files))
    return MediaInputs(found, sources)
