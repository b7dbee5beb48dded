"""Train and eval transforms built from an :class:`~babyemo.config.InputSpec`.

Built on ``torchvision.transforms.v2``; inputs are PIL images already upright (EXIF
applied by :func:`babyemo.data.loading.images.load_image`), outputs are ``(C, S, S) uint8``
tensors. Conversion to float and normalisation with the spec's mean and std happen once
per batch, on the model's device, in :func:`normalize` (called by the inference engines
and the training loop): per-image float work costs more than decoding on a small CPU,
and a uint8 batch is a quarter of the bytes to copy to a GPU.
"""

from __future__ import annotations

import torch
from PIL import Image
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from babyemo.config import AugmentConfig, InputSpec


def _to_tensor(spec: InputSpec) -> list[v2.Transform]:
    return [v2.ToImage()]


def normalize(images: torch.Tensor, spec: InputSpec) -> torch.Tensor:
    """Turn transformed uint8 pixels into the model's float input.

    Args:
        images: ``(N, C, S, S)`` or ``(C, S, S)`` ``uint8`` pixels (0..255) from
            :func:`eval_transform` / :func:`train_transform`, on any device. A floating
            tensor is taken as already normalised and returned unchanged.
        spec: Mean and std per channel (on the 0..1 scale).

    Returns:
        ``float32`` tensor of the same shape and device: ``(x / 255 - mean) / std``.
    """
    if images.is_floating_point():
        return images
    shape = (-1, 1, 1)
    mean = torch.tensor(spec.mean, dtype=torch.float32, device=images.device).view(shape)
    std = torch.tensor(spec.std, dtype=torch.float32, device=images.device).view(shape)
    return images.float().sub_(mean * 255).div_(std * 255)


class EvalTransform:
    """Resize the shorter side to ``spec.size`` and centre-crop a ``size x size`` square.

    The image is turned into a ``uint8`` tensor first and resized by torchvision's tensor
    kernel (bilinear, antialiased, like Pillow's; on the infant and baby photos its pixels
    differ from Pillow's by at most 2 levels, in under 0.4% of the values), through
    torchvision's functional API without ``v2.Compose``'s per-call bookkeeping. Measured
    on 640 px baby photos (2 cores, AVX2): 1.15 ms per full-resolution image vs 2.86 ms for
    ``Compose([Resize, CenterCrop, ToImage])`` on the PIL image, 0.38 vs 0.60 ms per image
    JPEG-drafted to 160 px (what prediction decodes; end to end that is about 2% faster,
    within the machine's noise; see ``benchmarks/README.md``).

    Args:
        spec: Output size (pixels) and channels.
    """

    def __init__(self, spec: InputSpec) -> None:
        self.size = spec.size

    def __call__(self, image: Image.Image | torch.Tensor) -> torch.Tensor:
        """Map a PIL image (mode ``RGB`` or ``L``) or a ``(C, H, W) uint8`` tensor to a
        ``(C, size, size) uint8`` tensor (see :func:`normalize`)."""
        x = image if isinstance(image, torch.Tensor) else F.pil_to_tensor(image)
        x = F.resize(x, [self.size], antialias=True)
        return F.center_crop(x, [self.size, self.size])

    def __repr__(self) -> str:
        return f"EvalTransform(size={self.size})"


def eval_transform(spec: InputSpec) -> EvalTransform:
    """The evaluation, validation and prediction transform of ``spec`` (see
    :class:`EvalTransform`): PIL image -> ``(spec.channels, size, size) uint8`` tensor."""
    return EvalTransform(spec)


def train_transform(spec: InputSpec, augment: AugmentConfig) -> v2.Compose:
    """Random resized crop, flip, rotation/shift and colour jitter, then normalisation.

    Args:
        spec: Output size and normalisation.
        augment: Strengths; zeros disable each step.

    Returns:
        A transform mapping a PIL image to a ``(spec.channels, size, size) uint8`` tensor
        (see :func:`normalize`).
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
