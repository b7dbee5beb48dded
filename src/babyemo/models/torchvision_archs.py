"""torchvision classification networks registered as babyemo architectures.

Each entry wraps a builder of :mod:`torchvision.models`. From scratch (the default) the
network is built with ``weights=None`` and a ``num_classes``-way head. With
``pretrained=True`` the ImageNet weights of torchvision's ``DEFAULT`` weights enum are
fetched by torchvision's hub loader (cached in ``$TORCH_HOME/hub/checkpoints``), loaded into
the 1000-class network, and the classifier ``Linear`` (the entry's declared head,
:attr:`babyemo.models.registry.ArchInfo.head`) is replaced by a new, randomly initialised
``Linear(in_features, num_classes)`` (:func:`replace_head`).

All entries expect 3-channel input normalised with the ImageNet mean and standard deviation
(:data:`babyemo.config.IMAGENET_MEAN` / ``IMAGENET_STD``). babyemo's default input size for
them is 112 pixels, not ImageNet's 224: infant face crops carry little detail beyond that and
it trains about 4x faster on a CPU (see ``docs/results.md``). Every one ends in adaptive
average pooling, so any size works (``--image-size 224`` for ImageNet's native size).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import sys
from collections.abc import Callable
from typing import Any

import torch
import torchvision.models as tvm
from torch import nn

from babyemo.config import InputSpec
from babyemo.errors import ConfigError, DownloadError
from babyemo.models.registry import find_head, register_arch

logger = logging.getLogger(__name__)

_IMAGENET_INPUT = InputSpec(size=112, channels=3)

# name: (torchvision builder, weights enum name, head, description); the head is the module
# path of the final nn.Linear in torchvision's network (ArchInfo.head)
_TORCHVISION_ARCHS: dict[str, tuple[str, str, str, str]] = {
    "resnet18": ("resnet18", "ResNet18_Weights", "fc",
                 "ResNet-18 (He et al. 2016, Deep Residual Learning), torchvision"),
    "resnet34": ("resnet34", "ResNet34_Weights", "fc",
                 "ResNet-34 (He et al. 2016, Deep Residual Learning), torchvision"),
    "resnet50": ("resnet50", "ResNet50_Weights", "fc",
                 "ResNet-50 (He et al. 2016, Deep Residual Learning), torchvision"),
    "mobilenet_v3_small": ("mobilenet_v3_small", "MobileNet_V3_Small_Weights", "classifier.3",
                           "MobileNetV3-Small (Howard et al. 2019), torchvision"),
    "mobilenet_v3_large": ("mobilenet_v3_large", "MobileNet_V3_Large_Weights", "classifier.3",
                           "MobileNetV3-Large (Howard et al. 2019), torchvision"),
    "efficientnet_b0": ("efficientnet_b0", "EfficientNet_B0_Weights", "classifier.1",
                        "EfficientNet-B0 (Tan & Le 2019), torchvision"),
    "vgg16": ("vgg16", "VGG16_Weights", "classifier.6",
              "VGG-16 (Simonyan & Zisserman 2015), torchvision"),
}


def replace_head(model: nn.Module, head: str, num_classes: int) -> nn.Linear:
    """Replace the final ``nn.Linear`` of ``model`` by a new ``num_classes``-way one.

    Args:
        model: The network, modified in place.
        head: Module path of the layer (:attr:`babyemo.models.registry.ArchInfo.head`),
            e.g. ``"fc"`` for torchvision's ResNets or ``"classifier.3"`` for MobileNetV3.
        num_classes: Number of output logits of the new layer.

    Returns:
        The new layer, ``Linear(in_features, num_classes)`` with PyTorch's default
        initialisation.

    Raises:
        RegistryError: The module at ``head`` is missing or not an ``nn.Linear``.
    """
    name = find_head(model, head)
    assert name is not None  # a declared head is never None
    parent_name, _, attr = name.rpartition(".")
    parent = model.get_submodule(parent_name)
    old = getattr(parent, attr)
    new = nn.Linear(old.in_features, num_classes, bias=old.bias is not None)
    setattr(parent, attr, new)
    return new


def _fetch_weights(name: str, weights: tvm.WeightsEnum) -> dict[str, torch.Tensor]:
    """ImageNet state dict of ``weights`` via torchvision's hub loader (cached, hash-checked).

    Raises:
        DownloadError: The download failed or the cached file is unreadable.
    """
    cache = os.path.join(torch.hub.get_dir(), "checkpoints")
    logger.info("Loading ImageNet weights %s for %s (cache: %s)", weights, name, cache)
    try:
        # torch.hub announces downloads on stdout, which carries only results in babyemo.
        with contextlib.redirect_stdout(sys.stderr):
            return weights.get_state_dict(progress=False, check_hash=True, weights_only=True)
    except (OSError, RuntimeError, EOFError, pickle.UnpicklingError) as exc:
        raise DownloadError(
            f"Could not get the pretrained ImageNet weights of '{name}' from {weights.url}: {exc}",
            "offline: train from scratch (drop --pretrained) or start from a checkpoint with "
            f"--init CHECKPOINT; torchvision caches weights in TORCH_HOME ({cache}), so copy "
            "the file there or delete a corrupt one",
        ) from exc


def _call_torchvision(name: str, fn: Callable[..., nn.Module], **kwargs: Any) -> nn.Module:
    try:
        return fn(**kwargs)
    except TypeError as exc:
        raise ConfigError(f"Invalid keyword argument for architecture '{name}': {exc}",
                          "check the arch kwargs against the torchvision builder") from exc


def _make_builder(name: str, fn_name: str, weights_name: str,
                  head: str) -> Callable[..., nn.Module]:
    fn = getattr(tvm, fn_name)
    weights_enum = getattr(tvm, weights_name)

    def build(*, num_classes: int, in_channels: int, pretrained: bool = False,
              **kwargs: Any) -> nn.Module:
        if in_channels != 3:
            raise ConfigError(f"Architecture '{name}' takes 3-channel input. Got {in_channels}.",
                              "load images as RGB")
        if not pretrained:
            return _call_torchvision(name, fn, weights=None, num_classes=num_classes, **kwargs)
        weights = weights_enum.DEFAULT
        state_dict = _fetch_weights(name, weights)
        model = _call_torchvision(name, fn, weights=None,
                                  num_classes=len(weights.meta["categories"]), **kwargs)
        try:
            model.load_state_dict(state_dict)
        except RuntimeError as exc:
            raise ConfigError(
                f"The arch kwargs {kwargs} of '{name}' do not fit its pretrained weights: {exc}",
                "drop the arch kwargs or train from scratch",
            ) from exc
        replace_head(model, head, num_classes)
        return model

    build.__name__ = f"build_{name}"
    build.__qualname__ = build.__name__
    build.__doc__ = f"""Build torchvision's ``{fn_name}`` with a ``num_classes``-way head.

    Args:
        num_classes: Number of output logits.
        in_channels: Must be 3 (RGB).
        pretrained: Start from ``{weights_name}.DEFAULT`` (ImageNet) and replace the head.
        **kwargs: Passed on to ``torchvision.models.{fn_name}``.

    Returns:
        A module mapping ``(N, 3, H, W) float32`` to ``(N, num_classes) float32`` logits.

    Raises:
        ConfigError: ``in_channels != 3`` or invalid keyword arguments.
        DownloadError: ``pretrained=True`` and the weights cannot be downloaded or read.
    """
    return build


def _register_all() -> None:
    for name, (fn_name, weights_name, head, description) in _TORCHVISION_ARCHS.items():
        builder = _make_builder(name, fn_name, weights_name, head)
        register_arch(name, default_input=_IMAGENET_INPUT, description=description,
                      pretrained=True, head=head, takes_input_size=False)(builder)


_register_all()
