"""Face detection, cropping and alignment (torch-free; ``cv2`` only inside ``yunet``).

Detect faces with a registered detector, then cut square, eye-aligned crops::

    from babyemo.faces import CropSpec, crop_face, get_detector

    detector = get_detector("yunet")           # cached: the ONNX model loads once
    faces = detector.detect(image)             # best first, original-image pixels
    crop = crop_face(image, faces[0], CropSpec(margin=0.25, align=True), out_size=224)

Detectors: ``yunet`` (default; OpenCV; where it finds no face, a second pass on turned,
padded copies finds faces lying sideways or upside down, see
:mod:`babyemo.faces.second_pass`; ``get_detector("yunet", second_pass=False)`` turns it
off) and ``none`` (the image is already a face crop: one face covering the whole image).
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
from babyemo.faces.second_pass import SecondPass, SecondPassDetector

__all__ = [
    "DEFAULT_DETECTOR",
    "KNOWN_MODEL_FILES",
    "CropSpec",
    "DetectorInfo",
    "Face",
    "FaceDetector",
    "ModelFile",
    "SecondPass",
    "SecondPassDetector",
    "clear_detector_cache",
    "crop_face",
    "eye_angle",
    "get_detector",
    "list_detectors",
    "model_path",
    "register_detector",
]
