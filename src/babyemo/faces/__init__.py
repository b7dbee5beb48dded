"""Face detection, cropping and alignment (torch-free; ``cv2`` only inside ``yunet``).

Detect faces with a registered detector, then cut square, eye-aligned crops::

    from babyemo.faces import CropSpec, crop_face, get_detector

    detector = get_detector("yunet")           # cached: the ONNX model loads once
    faces = detector.detect(image)             # best first, original-image pixels
    crop = crop_face(image, faces[0], CropSpec(margin=0.25, align=True), out_size=224)

Detectors: ``yunet`` (default; OpenCV) and ``none`` (the image
is already a face crop: one face covering the whole image).
"""

from __future__ import annotations

from babyemo.faces.crop import CropSpec, crop_face, eye_angle
from babyemo.faces.model_files import KNOWN_MODEL_FILES, ModelFile, model_path
from babyemo.faces.registry import (
    DEFAULT_DETECTOR,
    DetectorInfo,
    Face,
    FaceDetector,
    clear_detector_cache,
    get_detector,
    list_detectors,
    register_detector,
)

__all__ = [
    "DEFAULT_DETECTOR",
    "KNOWN_MODEL_FILES",
    "CropSpec",
    "DetectorInfo",
    "Face",
    "FaceDetector",
    "ModelFile",
    "clear_detector_cache",
    "crop_face",
    "eye_angle",
    "get_detector",
    "list_detectors",
    "model_path",
    "register_detector",
]
