"""The small networks babyemo grew from, rebuilt in PyTorch and trained from scratch.

* ``custom_resnet``: a custom ResNet for 5-class RGB infant emotion recognition.
* ``skip_cnn``: a small CNN with exactly one residual (skip) connection.
* ``cnn3``: a 3-convolution binary CNN for 256x256 RGB images.
* ``vgg_fer``: a VGG-style CNN for FER-2013's 48x48 grayscale faces.

The original scripts ended in a softmax (or, for the binary CNN, a sigmoid) layer with a
fixed number of classes. Here every network returns ``num_classes`` raw logits; softmax is
applied by the loss (``torch.nn.CrossEntropyLoss``) and by the predictor, and a binary task
is a 2-class one.

``cnn3`` and ``vgg_fer`` flatten their last feature map into a dense layer, so the size of
that layer depends on the input side. Their builders take an ``input_size`` keyword (pixels;
registered with ``takes_input_size=True``, so the trainer passes the image size it uses) and
checkpoints store it in ``arch_kwargs``, so a model is rebuilt with the right shape. The
other builders need no ``input_size``: they end in global average pooling and accept any
input size. Each entry declares its classifier head (``head=``, the module path of its last
``nn.Linear``), which fine-tuning uses to match class rows by name.

None of them has pretrained weights (``pretrained=True`` raises :class:`ConfigError`).
Weights start from PyTorch's default initialisation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from babyemo.config import InputSpec
from babyemo.errors import ConfigError
from babyemo.models.registry import register_arch

_HALF = 0.5


def _half_spec(size: int, channels: int) -> InputSpec:
    """Input scaled to [0, 1], then normalised with mean 0.5 and std 0.5 to [-1, 1]."""
    return InputSpec(size=size, channels=channels, mean=(_HALF,) * channels,
                     std=(_HALF,) * channels)


def _no_pretrained(name: str, pretrained: bool) -> None:
    if pretrained:
        raise ConfigError(f"Architecture '{name}' has no pretrained weights.",
                          "train it from scratch (drop --pretrained) or pick a torchvision arch")


def _check_dropout(name: str, dropout: float) -> float:
    if isinstance(dropout, bool) or not isinstance(dropout, (int, float)) \
            or not 0.0 <= dropout < 1.0:
        raise ConfigError(f"The 'dropout' of '{name}' must be a float in [0, 1). Got {dropout!r}.")
    return float(dropout)


def _conv_bn_relu(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (padding 1, no bias), batch normalisation, ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class ResidualBlock(nn.Module):
    """Basic residual block of He et al. 2016 ("Deep Residual Learning", Fig. 2).

    ``relu(bn(conv3x3(relu(bn(conv3x3(x))))) + shortcut(x))``. The shortcut is the
    identity when shape is kept, else a 1x1 convolution with stride and batch normalisation
    (the paper's projection shortcut, option B).

    Args:
        in_channels: Channels of the input.
        out_channels: Channels of the output.
        stride: Stride of the first convolution (2 halves height and width).

    Shape:
        ``(N, in_channels, H, W) float32`` -> ``(N, out_channels, ceil(H/stride),
        ceil(W/stride)) float32``.
    """

    def __init__(self, in_channels: int, out_channels: int, stride: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            _conv_bn_relu(in_channels, out_channels, stride),
            nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False),
            nn.BatchNorm2d(out_channels),
        )
        self.shortcut: nn.Module = nn.Identity()
        if stride != 1 or in_channels != out_channels:
            self.shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, 1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        self.relu = nn.ReLU(inplace=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply the block; see the class docstring for shapes."""
        return self.relu(self.body(x) + self.shortcut(x))


class FixedSizeNet(nn.Module):
    """Feature extractor plus a dense classifier that needs one input size.

    Args:
        name: Architecture name (for error messages).
        input_size: The only accepted input side in pixels.
        features: Convolutional part.
        classifier: Dense part starting with ``nn.Flatten``.

    Raises:
        ConfigError: In ``forward``, when the input is not ``input_size`` pixels square.
    """

    def __init__(self, name: str, input_size: int, features: nn.Module,
                 classifier: nn.Module) -> None:
        super().__init__()
        self.arch = name
        self.input_size = input_size
        self.features = features
        self.classifier = classifier

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, C, input_size, input_size) float32`` -> ``(N, num_classes) float32`` logits."""
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise ConfigError(
                f"Architecture '{self.arch}' was built for {self.input_size}x{self.input_size} "
                f"input. Got {tuple(x.shape[-2:])}.",
                f"build it with input_size={x.shape[-1]} or resize the images",
            )
        return self.classifier(self.features(x))


def _final_side(name: str, input_size: int, shrink: Callable[[int], int], stages: int,
                minimum: int) -> int:
    """Side of the last feature map after ``stages`` applications of ``shrink``.

    Raises:
        ConfigError: ``input_size`` is not an int or leaves an empty feature map.
    """
    if isinstance(input_size, bool) or not isinstance(input_size, int):
        raise ConfigError(f"The 'input_size' of '{name}' must be an int. Got {input_size!r}.")
    side = input_size
    for _ in range(stages):
        side = shrink(side)
    if side < 1:
        raise ConfigError(f"Architecture '{name}' needs input_size >= {minimum} pixels. "
                          f"Got {input_size}.", f"use e.g. --image-size {max(minimum, 64)}")
    return side


@register_arch(
    "custom_resnet",
    default_input=_half_spec(112, 3),  # the script used 128; 112 is the recipe (recipes.md)
    description="Custom ResNet of Conv-BN-ReLU residual blocks (He et al. 2016); reproduces the "
                "5-class RGB emotion script babyemo grew from",
    head="-1",  # the last module of the Sequential; its index depends on the kwargs
    takes_input_size=False,
)
def build_custom_resnet(*, num_classes: int, in_channels: int, pretrained: bool = False,
                        widths: Sequence[int] = (32, 64, 128, 256), blocks_per_stage: int = 2,
                        dropout: float = 0.5) -> nn.Module:
    """Build the custom ResNet babyemo grew from.

    Stem: 3x3 Conv(widths[0], stride 2)-BN-ReLU and 3x3 max pooling (stride 2). Then one
    stage per width of ``blocks_per_stage`` :class:`ResidualBlock` s (the first block of
    every stage after the first halves the resolution), global average pooling, dropout and
    a ``Linear(widths[-1], num_classes)`` head. The original ended in a 5-class softmax;
    here it returns ``num_classes`` logits (softmax lives in the loss and the predictor).

    Args:
        num_classes: Number of output logits.
        in_channels: Input channels (3 for RGB).
        pretrained: Must be False.
        widths: Channels of each stage.
        blocks_per_stage: Residual blocks per stage (>= 1).
        dropout: Dropout probability before the head.

    Returns:
        A module mapping ``(N, in_channels, H, W) float32`` to ``(N, num_classes) float32``
        logits, for any ``H, W >= 8`` pixels (default 128).

    Raises:
        ConfigError: ``pretrained=True`` or invalid ``widths``, ``blocks_per_stage``,
            ``dropout``.
    """
    name = "custom_resnet"
    _no_pretrained(name, pretrained)
    widths = tuple(widths) if isinstance(widths, (list, tuple)) else ()
    if not widths or not all(isinstance(w, int) and not isinstance(w, bool) and w >= 1
                             for w in widths):
        raise ConfigError(f"The 'widths' of '{name}' must be a non-empty list of ints >= 1.",
                          "e.g. widths=[32, 64, 128, 256]")
    if isinstance(blocks_per_stage, bool) or not isinstance(blocks_per_stage, int) \
            or blocks_per_stage < 1:
        raise ConfigError(f"The 'blocks_per_stage' of '{name}' must be an int >= 1. "
                          f"Got {blocks_per_stage!r}.")
    dropout = _check_dropout(name, dropout)
    layers: list[nn.Module] = [_conv_bn_relu(in_channels, widths[0], stride=2),
                               nn.MaxPool2d(3, stride=2, padding=1)]
    previous = widths[0]
    for stage, width in enumerate(widths):
        for block in range(blocks_per_stage):
            stride = 2 if stage > 0 and block == 0 else 1
            layers.append(ResidualBlock(previous, width, stride))
            previous = width
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
               nn.Linear(previous, num_classes)]
    return nn.Sequential(*layers)


@register_arch(
    "skip_cnn",
    default_input=_half_spec(96, 3),
    description="Small CNN with one residual (skip) connection; reproduces the one-skip CNN "
                "script babyemo grew from",
    head="10",
    takes_input_size=False,
)
def build_skip_cnn(*, num_classes: int, in_channels: int, pretrained: bool = False,
                   dropout: float = 0.5) -> nn.Module:
    """Build the small CNN with exactly one skip connection.

    Conv(32)-BN-ReLU, max pool; Conv(64)-BN-ReLU; one residual block of two 3x3 Conv(64)
    whose output is added to its input, then ReLU (:class:`ResidualBlock`, identity
    shortcut), max pool; Conv(128)-BN-ReLU, max pool; global average pooling, dropout,
    ``Linear(128, num_classes)``. All convolutions are 3x3 with padding 1; pools are 2x2.

    Args:
        num_classes: Number of output logits.
        in_channels: Input channels (3 for RGB).
        pretrained: Must be False.
        dropout: Dropout probability before the head.

    Returns:
        A module mapping ``(N, in_channels, H, W) float32`` to ``(N, num_classes) float32``
        logits, for any ``H, W >= 8`` pixels (default 96).

    Raises:
        ConfigError: ``pretrained=True`` or invalid ``dropout``.
    """
    name = "skip_cnn"
    _no_pretrained(name, pretrained)
    dropout = _check_dropout(name, dropout)
    return nn.Sequential(
        _conv_bn_relu(in_channels, 32), nn.MaxPool2d(2),
        _conv_bn_relu(32, 64),
        ResidualBlock(64, 64), nn.MaxPool2d(2),
        _conv_bn_relu(64, 128), nn.MaxPool2d(2),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
        nn.Linear(128, num_classes),
    )


@register_arch(
    "cnn3",
    default_input=InputSpec(size=256, channels=3, mean=(0.0,) * 3, std=(1.0,) * 3),
    description="3-conv-layer CNN (32/64/128 filters, dense 512); reproduces the binary "
                "256x256 RGB CNN script babyemo grew from",
    head="classifier.4",
    takes_input_size=True,
)
def build_cnn3(*, num_classes: int, in_channels: int, pretrained: bool = False,
               input_size: int = 256) -> nn.Module:
    """Build the 3-convolution CNN (originally binary with a sigmoid output).

    Three times [unpadded 3x3 Conv - ReLU - 2x2 MaxPool] with 32, 64 and 128 filters
    (unpadded as Keras' default ``padding="valid"``), Flatten, Dense 512 - ReLU,
    Dropout 0.5, ``Linear(512, num_classes)``. The original's single sigmoid unit becomes
    ``num_classes`` logits (2 for a binary task). Input pixels are only scaled to [0, 1]
    (mean 0, std 1).

    Args:
        num_classes: Number of output logits.
        in_channels: Input channels (3 for RGB).
        pretrained: Must be False.
        input_size: Input side in pixels (>= 22); fixes the flattened size,
            ``128 * s * s`` with ``s`` the side after three conv-pool stages (30 for 256).

    Returns:
        A module mapping ``(N, in_channels, input_size, input_size) float32`` to
        ``(N, num_classes) float32`` logits.

    Raises:
        ConfigError: ``pretrained=True`` or ``input_size`` too small; in ``forward``, input
            of another size.
    """
    name = "cnn3"
    _no_pretrained(name, pretrained)
    side = _final_side(name, input_size, lambda s: (s - 2) // 2, stages=3, minimum=22)
    features = nn.Sequential(
        nn.Conv2d(in_channels, 32, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
        nn.Conv2d(64, 128, 3), nn.ReLU(inplace=True), nn.MaxPool2d(2),
    )
    classifier = nn.Sequential(
        nn.Flatten(), nn.Linear(128 * side * side, 512), nn.ReLU(inplace=True),
        nn.Dropout(0.5), nn.Linear(512, num_classes),
    )
    return FixedSizeNet(name, input_size, features, classifier)


def _vgg_block(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(_conv_bn_relu(in_channels, out_channels),
                         _conv_bn_relu(out_channels, out_channels),
                         nn.MaxPool2d(2), nn.Dropout(0.25))


def _dense_bn_relu(in_features: int, out_features: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(in_features, out_features, bias=False),
                         nn.BatchNorm1d(out_features), nn.ReLU(inplace=True), nn.Dropout(0.5))


@register_arch(
    "vgg_fer",
    default_input=_half_spec(48, 1),
    description="VGG-style CNN (Simonyan & Zisserman 2015 blocks) for FER-2013; reproduces the "
                "48x48 grayscale FER-2013 CNN script babyemo grew from",
    head="classifier.3",
    takes_input_size=True,
)
def build_vgg_fer(*, num_classes: int, in_channels: int, pretrained: bool = False,
                  input_size: int = 48) -> nn.Module:
    """Build the VGG-style CNN for 48x48 grayscale faces (FER-2013, Goodfellow et al. 2013).

    Three blocks of [3x3 Conv-BN-ReLU, 3x3 Conv-BN-ReLU, 2x2 MaxPool, Dropout 0.25] with 64,
    128 and 256 filters (padding 1), Flatten, FC 512-BN-ReLU-Dropout 0.5, FC 256-BN-ReLU-
    Dropout 0.5, ``Linear(256, num_classes)``. The original's softmax becomes logits.
    Because of ``BatchNorm1d``, training batches need at least 2 images.

    Args:
        num_classes: Number of output logits.
        in_channels: Input channels (1 for grayscale).
        pretrained: Must be False.
        input_size: Input side in pixels (>= 8); fixes the flattened size,
            ``256 * (input_size // 8) ** 2`` (9216 for 48).

    Returns:
        A module mapping ``(N, in_channels, input_size, input_size) float32`` to
        ``(N, num_classes) float32`` logits.

    Raises:
        ConfigError: ``pretrained=True`` or ``input_size`` too small; in ``forward``, input
            of another size.
    """
    name = "vgg_fer"
    _no_pretrained(name, pretrained)
    side = _final_side(name, input_size, lambda s: s // 2, stages=3, minimum=8)
    features = nn.Sequential(_vgg_block(in_channels, 64), _vgg_block(64, 128),
                             _vgg_block(128, 256))
    classifier = nn.Sequential(
        nn.Flatten(), _dense_bn_relu(256 * side * side, 512), _dense_bn_relu(512, 256),
        nn.Linear(256, num_classes),
    )
    return FixedSizeNet(name, input_size, features, classifier)
