"""The architecture registry shared by ``train``, ``evaluate``, ``predict`` and ``models``.

Architectures are registered by name with :func:`register_arch` on a keyword-only builder
``builder(*, num_classes, in_channels, pretrained, **arch_kwargs) -> torch.nn.Module``
whose output is ``(N, num_classes)`` float logits. The built-in entries live in
:mod:`babyemo.models.torchvision_archs` and :mod:`babyemo.models.seeds` and are imported
on first use, so importing this module does not import torch.
"""

from __future__ import annotations

import fnmatch
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from babyemo.config import InputSpec
from babyemo.errors import ConfigError, RegistryError, unknown_name

if TYPE_CHECKING:
    import torch

Builder = Callable[..., "torch.nn.Module"]

_BUILTIN_MODULES = ("babyemo.models.torchvision_archs", "babyemo.models.seeds")

BUILTIN_ARCHS = ("cnn3", "custom_resnet", "efficientnet_b0", "mobilenet_v3_large",
                 "mobilenet_v3_small", "resnet18", "resnet34", "resnet50", "skip_cnn", "vgg16",
                 "vgg_fer")
"""Names the built-in modules register (a test checks they match), so that an arch name can
be checked by :func:`check_arch_name` without importing torch."""


@dataclass(frozen=True)
class ArchInfo:
    """One registered architecture.

    Attributes:
        name: Registry name, e.g. ``"resnet18"``.
        builder: Keyword-only builder returning an ``nn.Module``.
        default_input: Input size, channels and normalisation it is built for.
        description: One line, with its source (paper or project).
        pretrained: Whether ``pretrained=True`` (ImageNet weights) is supported.
    """

    name: str
    builder: Builder
    default_input: InputSpec
    description: str
    pretrained: bool = False


_ARCHS: dict[str, ArchInfo] = {}
_loaded_builtins = False


def register_arch(
    name: str,
    *,
    default_input: InputSpec,
    description: str,
    pretrained: bool = False,
) -> Callable[[Builder], Builder]:
    """Decorator registering an architecture builder under ``name``.

    Args:
        name: Unique registry name (lower case, no spaces).
        default_input: The input the architecture expects by default.
        description: One line naming the architecture and its source.
        pretrained: True if the builder accepts ``pretrained=True``.

    Returns:
        The decorator; it returns the builder unchanged.

    Raises:
        RegistryError: ``name`` is already registered.
    """

    def decorator(builder: Builder) -> Builder:
        if name in _ARCHS:
            raise RegistryError(f"Architecture '{name}' is already registered.",
                                "choose another name")
        _ARCHS[name] = ArchInfo(name, builder, default_input, description, pretrained)
        return builder

    return decorator


def _load_builtins() -> None:
    global _loaded_builtins
    if not _loaded_builtins:
        _loaded_builtins = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def list_archs(pattern: str | None = None) -> list[ArchInfo]:
    """Registered architectures sorted by name, optionally filtered by a glob ``pattern``."""
    _load_builtins()
    return [a for n, a in sorted(_ARCHS.items()) if pattern is None or fnmatch.fnmatch(n, pattern)]


def check_arch_name(name: str) -> None:
    """Raise unless ``name`` is a built-in or already registered architecture.

    Cheap: it does not import torch or the built-in modules, so a command can reject a
    mistyped ``--arch`` before loading anything heavy.

    Raises:
        RegistryError: Unknown name; the hint lists the closest names.
    """
    if name not in BUILTIN_ARCHS and name not in _ARCHS:
        raise unknown_name("architecture", name, set(BUILTIN_ARCHS) | _ARCHS.keys())


def get_arch(name: str) -> ArchInfo:
    """The registered architecture ``name``.

    Raises:
        RegistryError: Unknown name; the hint lists the closest names.
    """
    _load_builtins()
    try:
        return _ARCHS[name]
    except KeyError:
        raise unknown_name("architecture", name, _ARCHS) from None


def create_model(
    name: str,
    *,
    num_classes: int,
    pretrained: bool = False,
    **arch_kwargs: Any,
) -> torch.nn.Module:
    """Build architecture ``name`` with a ``num_classes``-way classifier head.

    Args:
        name: Registry name.
        num_classes: Number of output logits (>= 2).
        pretrained: Start from torchvision's ImageNet weights (head replaced).
        **arch_kwargs: Extra keyword arguments of the builder (stored in checkpoints).

    Returns:
        A module mapping ``(N, C, H, W) float32`` to ``(N, num_classes) float32`` logits,
        with ``C = get_arch(name).default_input.channels``.

    Raises:
        RegistryError: Unknown architecture.
        ConfigError: ``num_classes < 2`` or ``pretrained`` unsupported by the arch.
    """
    info = get_arch(name)
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an int >= 2. Got {num_classes!r}.",
                          "a classifier needs at least two classes")
    if pretrained and not info.pretrained:
        raise ConfigError(f"Architecture '{name}' has no pretrained weights.",
                          "train it from scratch (drop --pretrained) or pick a torchvision arch")
    return info.builder(num_classes=num_classes, in_channels=info.default_input.channels,
                        pretrained=pretrained, **arch_kwargs)
