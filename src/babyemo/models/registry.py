"""The architecture registry shared by ``train``, ``evaluate``, ``predict`` and ``models``.

Architectures are registered by name with :func:`register_arch` on a keyword-only builder
``builder(*, num_classes, in_channels, pretrained, **arch_kwargs) -> torch.nn.Module``
whose output is ``(N, num_classes)`` float logits. The built-in entries live in
:mod:`babyemo.models.torchvision_archs` and :mod:`babyemo.models.seeds` and are imported
on first use, so importing this module does not import torch.

An entry also says what the trainer would otherwise have to guess: where its classifier
head is (:attr:`ArchInfo.head`, used to fine-tune across class sets and to replace a
pretrained head) and whether its builder takes the input side (:attr:`ArchInfo.takes_input_size`).
A registration that does not declare them gets the fallbacks of this module, in one place:
the head is the model's last ``nn.Linear`` (:func:`find_head`), and the input side is
passed when the builder's signature has an ``input_size`` parameter.
"""

from __future__ import annotations

import fnmatch
import importlib
import inspect
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from babyemo.config import InputSpec
from babyemo.errors import ConfigError, RegistryError, unknown_name

if TYPE_CHECKING:
    import torch

Builder = Callable[..., "torch.nn.Module"]

_BUILTIN_MODULES = ("babyemo.models.torchvision_archs", "babyemo.models.seeds",
                    "babyemo.models.ensemble")

BUILTIN_ARCHS = ("cnn3", "custom_resnet", "efficientnet_b0", "mobilenet_v3_large",
                 "mobilenet_v3_small", "resnet18", "resnet34", "resnet50", "skip_cnn", "vgg16",
                 "vgg_fer")
"""Names the built-in modules register (a test checks they match), so that an arch name can
be checked by :func:`check_arch_name` without importing torch."""

COMPOSITE_ARCHS = ("ensemble",)
"""Built-in architectures that are assembled from trained checkpoints, never trained
(:attr:`ArchInfo.trainable` False): ``ensemble`` (:mod:`babyemo.models.ensemble`)."""


@dataclass(frozen=True)
class ArchInfo:
    """One registered architecture.

    Attributes:
        name: Registry name, e.g. ``"resnet18"``.
        builder: Keyword-only builder returning an ``nn.Module``.
        default_input: Input size, channels and normalisation it is built for.
        description: One line, with its source (paper or project).
        pretrained: Whether ``pretrained=True`` (ImageNet weights) is supported.
        head: Module path of the classifier ``nn.Linear`` (the one with ``num_classes``
            outputs), dot-separated as in ``model.named_modules()``: ``"fc"`` for the
            torchvision ResNets, ``"classifier.3"`` for MobileNetV3. A negative integer
            step counts from the end of an ``nn.Sequential`` (``"-1"``: its last module),
            for heads whose index depends on the arch kwargs. ``None``: not declared; the
            model's last ``nn.Linear`` is taken (see :func:`find_head`).
        takes_input_size: Whether the builder takes an ``input_size`` keyword (the input
            side in pixels, e.g. for a flatten-then-dense classifier); the trainer passes
            the image size it uses and checkpoints store it in ``arch_kwargs``.
        trainable: False for an architecture assembled from trained checkpoints rather
            than trained (an ``ensemble``): :func:`list_archs` leaves it out unless asked,
            and :func:`check_arch_name` refuses it for training.
    """

    name: str
    builder: Builder
    default_input: InputSpec
    description: str
    pretrained: bool = False
    head: str | None = None
    takes_input_size: bool = False
    trainable: bool = True

    def builder_kwargs(self, arch_kwargs: Mapping[str, Any], input_size: int) -> dict[str, Any]:
        """The keyword arguments to build this arch for ``input_size``-pixel input.

        Args:
            arch_kwargs: Keyword arguments given for the builder (``TrainConfig.arch_kwargs``).
            input_size: Input side in pixels.

        Returns:
            A copy of ``arch_kwargs``, plus ``input_size`` when the builder takes it and
            ``arch_kwargs`` does not set it.
        """
        kwargs = dict(arch_kwargs)
        if self.takes_input_size:
            kwargs.setdefault("input_size", input_size)
        return kwargs

    def head_name(self, model: torch.nn.Module) -> str | None:
        """Module name of ``model``'s classifier head (see :func:`find_head`).

        Args:
            model: A model built from this arch.

        Returns:
            E.g. ``"fc"``, or ``"13"`` for the default ``custom_resnet``; ``None`` when the
            head is not declared and the model has no ``nn.Linear``.

        Raises:
            RegistryError: The declared head is not an ``nn.Linear`` of ``model``.
        """
        return find_head(model, self.head)

    def head_keys(self, model: torch.nn.Module) -> set[str]:
        """State-dict keys of ``model``'s classifier head: ``{"<head>.weight",
        "<head>.bias"}``, or an empty set when it has none (see :meth:`head_name`)."""
        name = self.head_name(model)
        return {f"{name}.weight", f"{name}.bias"} if name is not None else set()


_ARCHS: dict[str, ArchInfo] = {}
_loaded_builtins = False


def register_arch(
    name: str,
    *,
    default_input: InputSpec,
    description: str,
    pretrained: bool = False,
    head: str | None = None,
    takes_input_size: bool | None = None,
    trainable: bool = True,
) -> Callable[[Builder], Builder]:
    """Decorator registering an architecture builder under ``name``.

    Args:
        name: Unique registry name (lower case, no spaces).
        default_input: The input the architecture expects by default.
        description: One line naming the architecture and its source.
        pretrained: True if the builder accepts ``pretrained=True``.
        head: Module path of the classifier ``nn.Linear`` (see :attr:`ArchInfo.head`);
            ``None``: the model's last ``nn.Linear``.
        takes_input_size: Whether the builder takes ``input_size`` (see
            :attr:`ArchInfo.takes_input_size`); ``None``: whether its signature has an
            ``input_size`` parameter.
        trainable: False for an architecture assembled from trained checkpoints (see
            :attr:`ArchInfo.trainable`).

    Returns:
        The decorator; it returns the builder unchanged.

    Raises:
        RegistryError: ``name`` is already registered.
    """

    def decorator(builder: Builder) -> Builder:
        if name in _ARCHS:
            raise RegistryError(f"Architecture '{name}' is already registered.",
                                "choose another name")
        takes = takes_input_size
        if takes is None:
            takes = "input_size" in inspect.signature(builder).parameters
        _ARCHS[name] = ArchInfo(name, builder, default_input, description, pretrained,
                                head=head, takes_input_size=takes, trainable=trainable)
        return builder

    return decorator


def _load_builtins() -> None:
    global _loaded_builtins
    if not _loaded_builtins:
        _loaded_builtins = True
        for module in _BUILTIN_MODULES:
            importlib.import_module(module)


def list_archs(pattern: str | None = None, *, composite: bool = False) -> list[ArchInfo]:
    """Registered architectures sorted by name, optionally filtered by a glob ``pattern``.

    Architectures assembled from trained checkpoints (:attr:`ArchInfo.trainable` False,
    e.g. ``ensemble``) are listed only with ``composite``.
    """
    _load_builtins()
    return [a for n, a in sorted(_ARCHS.items())
            if (composite or a.trainable) and (pattern is None or fnmatch.fnmatch(n, pattern))]


def check_arch_name(name: str) -> None:
    """Raise unless ``name`` is a built-in or already registered architecture one can train.

    Cheap: it does not import torch or the built-in modules, so a command can reject a
    mistyped ``--arch`` before loading anything heavy.

    Raises:
        RegistryError: Unknown name; the hint lists the closest names.
        ConfigError: An architecture assembled from trained checkpoints
            (:data:`COMPOSITE_ARCHS`, e.g. ``ensemble``), which is not trained.
    """
    info = _ARCHS.get(name)
    if name in COMPOSITE_ARCHS or (info is not None and not info.trainable):
        raise ConfigError(f"'{name}' is not an architecture to train: it is assembled from "
                          "trained models.", "build one with `babyemo models ensemble NAME "
                          "MEMBER...`, and train its members with --arch")
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
    name: str | ArchInfo,
    *,
    num_classes: int,
    pretrained: bool = False,
    **arch_kwargs: Any,
) -> torch.nn.Module:
    """Build architecture ``name`` with a ``num_classes``-way classifier head.

    Args:
        name: Registry name, or the :class:`ArchInfo` already looked up.
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
    info = name if isinstance(name, ArchInfo) else get_arch(name)
    name = info.name
    if not isinstance(num_classes, int) or num_classes < 2:
        raise ConfigError(f"num_classes must be an int >= 2. Got {num_classes!r}.",
                          "a classifier needs at least two classes")
    if pretrained and not info.pretrained:
        raise ConfigError(f"Architecture '{name}' has no pretrained weights.",
                          "train it from scratch (drop --pretrained) or pick a torchvision arch")
    return info.builder(num_classes=num_classes, in_channels=info.default_input.channels,
                        pretrained=pretrained, **arch_kwargs)


def resolve_module_name(model: torch.nn.Module, path: str) -> str:
    """The name in ``model.named_modules()`` of the submodule at ``path``.

    Args:
        model: The network.
        path: Dot-separated attribute names and ``nn.Sequential`` indices; a negative
            index counts from the end (``"classifier.-1"``: the last module of
            ``classifier``).

    Returns:
        The path with negative indices made concrete, e.g. ``"classifier.3"``.

    Raises:
        RegistryError: No submodule at ``path``.
    """
    module, names = model, []
    for step in path.split("."):
        children = dict(module.named_children())
        if step.lstrip("-").isdigit() and int(step) < 0:
            keys = list(children)
            step = keys[int(step)] if -len(keys) <= int(step) else ""
        if step not in children:
            raise RegistryError(f"{type(model).__name__} has no submodule '{path}'.",
                                "check the head= given to register_arch")
        module = children[step]
        names.append(step)
    return ".".join(names)


def find_head(model: torch.nn.Module, head: str | None = None) -> str | None:
    """Module name of the classifier ``nn.Linear`` of ``model``.

    This is the one place where an undeclared head is guessed.

    Args:
        model: The network.
        head: The declared head path (:attr:`ArchInfo.head`), or ``None`` to take the
            last ``nn.Linear`` in ``model.named_modules()`` order.

    Returns:
        The head's module name, e.g. ``"fc"``; ``None`` when ``head`` is ``None`` and the
        model has no ``nn.Linear``.

    Raises:
        RegistryError: ``head`` does not name an ``nn.Linear`` of ``model``.
    """
    from torch import nn

    if head is None:
        last = None
        for name, module in model.named_modules():
            if isinstance(module, nn.Linear):
                last = name
        return last
    name = resolve_module_name(model, head)
    module = model.get_submodule(name)
    if not isinstance(module, nn.Linear):
        raise RegistryError(f"The declared head '{head}' of {type(model).__name__} is a "
                            f"{type(module).__name__}, not an nn.Linear.",
                            "check the head= given to register_arch")
    return name
