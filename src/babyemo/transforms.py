"""Train and eval transforms built from an :class:`~babyemo.config.InputSpec`.

Built on ``torchvision.transforms.v2``; inputs are PIL images already upright (EXIF
applied by :func:`babyemo.data.images.load_image`), outputs are ``(C, S, S) float32``
tensors normalised with the spec's mean and std.
"""

from __future__ import annotations

import torch
from torchvision.transforms import v2

from babyemo.config import AugmentConfig, InputSpec


def _to_tensor(spec: InputSpec) -> list[v2.Transform]:
    return [v2.ToImage(), v2.ToDtype(torch.float32, scale=True),
            v2.Normalize(mean=list(spec.mean), std=list(spec.std))]


def eval_transform(spec: InputSpec) -> v2.Compose:
    """Resize the shorter side to ``spec.size`` and centre-crop a ``size x size`` square.

    Returns:
        A transform mapping a PIL image to a ``(spec.channels, size, size) float32`` tensor.
    """
    return v2.Compose([v2.Resize(spec.size, antialias=True), v2.CenterCrop(spec.size),
                       *_to_tensor(spec)])


def train_transform(spec: InputSpec, augment: AugmentConfig) -> v2.Compose:
    """Random resized crop, flip, rotation/shift and colour jitter, then normalisation.

    Args:
        spec: Output size and normalisation.
        augment: Strengths; zeros disable each step.

    Returns:
        A transform mapping a PIL image to a ``(spec.channels, size, size) float32`` tensor.
    """
    steps: list[v2.Transform] = [
        v2.RandomResizedCrop(spec.size, scale=augment.scale, ratio=(0.9, 1.1), antialias=True)
    ]
    if augment.hflip > 0:
        steps.append(v2.RandomHorizontalFlip(p=augment.hflip))
    if augment.rotation > 0 or augment.translate > 0:
        steps.append(v2.RandomAffine(degrees=augment.rotation,
                                     translate=(augment.translate, augment.translate)))
    if augment.color_jitter > 0:
        j = augment.color_jitter
        steps.append(v2.ColorJitter(brightness=j, contrast=j,
                                    saturation=j if spec.channels == 3 else 0))
    return v2.Compose([*steps, *_to_tensor(spec)])
