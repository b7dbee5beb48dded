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


DOWNSCALE_RANGE = (0.2, 0.5)
"""Sides, as fractions of the input side, that :attr:`AugmentConfig.downscale` shrinks an
image to before resizing it back (e.g. 22-56 px for a 112 px input)."""


def _downscale(size: int) -> v2.Transform:
    """Resize a square image down to a random side in :data:`DOWNSCALE_RANGE` of ``size``
    (``RandomResize``, antialiased), then back to ``size`` (bilinear): the detail of a
    low-resolution face (FER-2013's are 48 px) at the model's input size."""
    low = max(4, round(size * DOWNSCALE_RANGE[0]))
    high = max(low + 1, round(size * DOWNSCALE_RANGE[1]) + 1)
    return v2.Compose([v2.RandomResize(low, high, antialias=True),
                       v2.Resize([size, size], antialias=True)])


def train_transform(spec: InputSpec, augment: AugmentConfig) -> v2.Compose:
    """Random resized crop, flip, rotation/shift and colour jitter; then, when asked, an
    automatic policy, the adult-to-infant "bridge" steps and random erasing.

    In order: ``RandomResizedCrop``, ``RandomHorizontalFlip``, ``RandomAffine``,
    ``ColorJitter``, ``TrivialAugmentWide`` or ``RandAugment`` (``augment.auto``), down- and
    up-scaling (``downscale``), ``GaussianBlur`` (``blur``), ``RandomGrayscale``
    (``grayscale``, kept in the spec's channels), the uint8 tensor, ``RandomErasing``
    (``random_erasing``, erased to 0). Every step draws from torch's generator, so a
    seeded ``torch.manual_seed`` repeats the same images.

    Args:
        spec: Output size and channels.
        augment: Strengths and probabilities; zeros (and ``auto=None``) disable each step.

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
    if augment.auto == "trivialaugment":
        steps.append(v2.TrivialAugmentWide())
    elif augment.auto == "randaugment":
        steps.append(v2.RandAugment())
    if augment.downscale > 0:
        steps.append(v2.RandomApply([_downscale(spec.size)], p=augment.downscale))
    if augment.blur > 0:
        kernel = 2 * max(1, spec.size // 20) + 1  # odd, about a tenth of the side
        steps.append(v2.RandomApply([v2.GaussianBlur(kernel, sigma=(0.1, 2.0))],
                                    p=augment.blur))
    if augment.grayscale > 0 and spec.channels == 3:
        steps.append(v2.RandomGrayscale(p=augment.grayscale))
    steps += _to_tensor(spec)
    if augment.random_erasing > 0:
        steps.append(v2.RandomErasing(p=augment.random_erasing))
    return v2.Compose(steps)
