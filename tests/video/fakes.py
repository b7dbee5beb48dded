"""Videos whose answers are known, for the tests of video prediction.

- :func:`write_colour_video`: solid-colour stretches (red, green, blue) and
  :func:`colour_probs`, a stand-in for a model's probabilities that reads the colour of
  its input (red -> angry, blue -> crying, green -> happy, 0.8 / 0.1 / 0.1): the label of
  every sampled frame is then known exactly.
- :data:`SQUARES`: a face detector that finds white squares on black (each square a
  face), and :func:`write_squares_video` to move squares about, so tracks are known.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from babyemo.faces import Face, list_detectors, register_detector
from tests.video.clips import write_frames

CLASSES = ("angry", "crying", "happy")
"""The classes of the tiny test checkpoints (``tests.conftest.make_checkpoint``)."""

BGR = {"red": (0, 0, 255), "green": (0, 255, 0), "blue": (255, 0, 0)}
LABEL_OF = {"red": "angry", "blue": "crying", "green": "happy"}
HIGH, LOW = 0.8, 0.1


def write_colour_video(path: Path, stretches: Sequence[tuple[str, float]], *,
                       fps: float = 30.0, size: tuple[int, int] = (64, 48)) -> Path:
    """A video of solid-colour stretches ``(colour, seconds)`` (``round(seconds * fps)``
    frames each) at ``fps`` frames/s."""
    width, height = size
    frames = []
    for colour, seconds in stretches:
        frame = np.zeros((height, width, 3), np.uint8)
        frame[:] = BGR[colour]
        frames += [frame] * round(seconds * fps)
    return write_frames(path, frames, fps)


def colour_probs(images):
    """``(N, 3, S, S) uint8`` model inputs -> ``(N, 3)`` probabilities: 0.8 for the class
    of the input's dominant colour (:data:`LABEL_OF`), 0.1 for the others."""
    import torch

    channel = images.float().mean(dim=(2, 3)).argmax(dim=1)  # 0 red, 1 green, 2 blue
    klass = torch.tensor([0, 2, 1])[channel]  # angry, happy, crying
    probs = torch.full((len(images), 3), LOW)
    probs[torch.arange(len(images)), klass] = HIGH
    return probs


def patch_colour_model(monkeypatch) -> None:
    """Every :class:`~babyemo.inference.InferenceModel` answers with :func:`colour_probs`
    (also the ones the CLI builds)."""
    from babyemo.inference import InferenceModel

    monkeypatch.setattr(InferenceModel, "probs", lambda self, images: colour_probs(images))


SQUARES = "video_test_squares"
"""A face detector: every white square (all channels > 200) of at least 4x4 pixels is a
face, score 0.9, listed top to bottom."""


class _Squares:
    name = SQUARES

    def detect(self, image):
        from scipy import ndimage

        mask = (np.asarray(image.convert("RGB")) > 200).all(axis=2)
        labels, _ = ndimage.label(mask)
        faces = []
        for rows, cols in ndimage.find_objects(labels):
            h, w = rows.stop - rows.start, cols.stop - cols.start
            if w >= 4 and h >= 4:
                faces.append(Face(box=(float(cols.start), float(rows.start), float(w), float(h)),
                                  score=0.9))
        return sorted(faces, key=lambda f: f.box[1])


NEVER = "video_test_never"
"""A face detector that finds no face."""


class _Never:
    name = NEVER

    def detect(self, image):
        return []


for _name, _factory in ((SQUARES, _Squares), (NEVER, _Never)):
    if _name not in {d.name for d in list_detectors()}:
        register_detector(_name, description="test detector")(_factory)


def write_squares_video(path: Path, seconds: float,
                        squares: Sequence[Callable[[float], tuple[int, int] | None]], *,
                        fps: float = 30.0, size: tuple[int, int] = (160, 96),
                        side: int = 20) -> Path:
    """A black video with white ``side``-pixel squares: each of ``squares`` gives the
    top-left corner ``(x, y)`` of its square at a time in seconds, or ``None`` (absent)."""
    width, height = size
    frames = []
    for i in range(round(seconds * fps)):
        frame = np.zeros((height, width, 3), np.uint8)
        for where in squares:
            corner = where(i / fps)
            if corner is not None:
                x, y = corner
                frame[y:y + side, x:x + side] = 255
        frames.append(frame)
    return write_frames(path, frames, fps)
