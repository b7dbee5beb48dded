"""Detect faces once, at prepare time, and store the primary face of each image.

Training, evaluation and the inspect report then read the boxes from the manifest instead
of running the detector every epoch. Torch-free.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from babyemo.data.loading.images import load_image
from babyemo.data.preparation.manifest import ManifestRow, resolve_under
from babyemo.errors import ImageError
from babyemo.progress import progress_bar

logger = logging.getLogger(__name__)


def annotate_faces(rows: Sequence[ManifestRow], root: Path, detector: str) -> dict[str, Any]:
    """Run ``detector`` on every row's image and set ``row.n_faces`` and ``row.face``.

    The primary face is the detector's first (highest score, then largest). Boxes are in
    pixels of the upright (EXIF-applied) full-resolution image. With ``yunet`` (whose
    second pass is on by default, :mod:`babyemo.faces.second_pass`) a face found only on a
    turned copy of the image is stored like any other: its landmarks turn the crop upright.

    Args:
        rows: Manifest rows (modified in place).
        root: Dataset root the row paths are relative to.
        detector: A face-detector registry name (``babyemo.faces``), e.g. ``"yunet"``.

    Returns:
        Plain-type summary stored in ``dataset.json`` under ``faces``: ``detector``,
        ``settings`` (the detector's options, e.g. yunet's thresholds and ``second_pass``:
        what found the faces), ``n_images``, ``n_with_face``, ``n_second_pass`` (of those,
        the faces found only by a second pass on turned copies), ``n_multi_face``,
        ``seconds`` (detection only) and ``ms_per_image``.

    Raises:
        RegistryError: Unknown detector.
        MissingDependencyError: The detector needs an optional package.
        DownloadError: Its model file cannot be fetched or fails its checksum.
    """
    from babyemo.faces import get_detector
    from babyemo.faces.registry import detector_settings

    det = get_detector(detector)
    seconds = 0.0
    second = 0
    with progress_bar(f"detecting faces ({detector})", total=len(rows), unit="img") as bar:
        for row in rows:
            try:
                image = load_image(resolve_under(root, row.path), channels=3)
            except ImageError as e:  # prepare only keeps decodable images; be safe anyway
                logger.warning("face detection skipped: %s", e.message)
                row.n_faces, row.face = 0, None
                bar.advance()
                continue
            t0 = time.perf_counter()
            faces = det.detect(image)
            seconds += time.perf_counter() - t0
            row.n_faces = len(faces)
            row.face = faces[0].to_dict() if faces else None
            second += bool(faces) and faces[0].rotation is not None
            bar.advance()
    n = len(rows)
    with_face = sum(1 for r in rows if r.n_faces)
    summary = {"detector": detector, "settings": detector_settings(det), "n_images": n,
               "n_with_face": with_face, "n_second_pass": second,
               "n_multi_face": sum(1 for r in rows if (r.n_faces or 0) > 1),
               "seconds": round(seconds, 2),
               "ms_per_image": round(1000 * seconds / n, 1) if n else 0.0}
    logger.info("Faces (%s): %d of %d images have a face (%d found by the second pass), %d "
                "several; %.1f ms/image", detector, with_face, n, second,
                summary["n_multi_face"], summary["ms_per_image"])
    return summary
