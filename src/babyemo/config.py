"""Plain configuration objects shared by the API and the CLI (stdlib only).

Closed sets of choices are :class:`enum.Enum` subclasses defined here once, so the CLI
and the Python API accept exactly the same values.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from enum import Enum
from typing import Any

from babyemo.errors import ConfigError

IMAGENET_MEAN = (0.485, 0.456, 0.406)
"""ImageNet RGB mean used by torchvision's pretrained weights (torchvision docs)."""
IMAGENET_STD = (0.229, 0.224, 0.225)
"""ImageNet RGB standard deviation used by torchvision's pretrained weights."""


class Precision(str, Enum):
    """Numeric precision of training and inference."""

    auto = "auto"
    fp32 = "fp32"
    bf16 = "bf16"
    fp16 = "fp16"


class Backend(str, Enum):
    """Inference engine of evaluation and prediction (see :mod:`babyemo.engines`)."""

    torch = "torch"
    onnxruntime = "onnxruntime"


class CacheMode(str, Enum):
    """Where training keeps decoded, resized images so later epochs skip JPEG decoding.

    ``auto`` is ``ram`` when images are decoded in the main process (0 workers) and
    ``disk`` with worker processes (a RAM cache would be rebuilt by every worker).
    """

    auto = "auto"
    ram = "ram"
    disk = "disk"
    none = "none"


class OptimizerName(str, Enum):
    """Optimizers of :func:`babyemo.training.train`."""

    adamw = "adamw"
    sgd = "sgd"


class SchedulerName(str, Enum):
    """Learning-rate schedules: cosine annealing, ReduceLROnPlateau, or constant."""

    cosine = "cosine"
    plateau = "plateau"
    none = "none"


class NoFaceFallback(str, Enum):
    """What prediction does with a photo in which no face is found."""

    error = "error"
    full = "full"


class Split(str, Enum):
    """Names of dataset splits in a manifest."""

    train = "train"
    val = "val"
    test = "test"


@dataclass(frozen=True)
class InputSpec:
    """How images are turned into the model's input tensor.

    Attributes:
        size: Side of the square input in pixels; the tensor is ``(N, channels, size, size)``.
        channels: 3 for RGB, 1 for grayscale.
        mean: Per-channel mean subtracted after scaling to [0, 1] (length ``channels``).
        std: Per-channel standard deviation divided after the mean (length ``channels``).
    """

    size: int = 224
    channels: int = 3
    mean: tuple[float, ...] = IMAGENET_MEAN
    std: tuple[float, ...] = IMAGENET_STD

    def __post_init__(self) -> None:
        if not isinstance(self.size, int) or self.size < 8:
            raise ConfigError(
                f"The input size must be an int >= 8 pixels. Got {self.size!r}.",
                "use e.g. --image-size 112",
            )
        if self.channels not in (1, 3):
            raise ConfigError(f"channels must be 1 or 3. Got {self.channels!r}.")
        object.__setattr__(self, "mean", tuple(float(m) for m in self.mean))
        object.__setattr__(self, "std", tuple(float(s) for s in self.std))
        if len(self.mean) != self.channels or len(self.std) != self.channels:
            raise ConfigError(
                f"mean and std need {self.channels} values. Got {self.mean} and {self.std}."
            )

    def with_size(self, size: int | None) -> InputSpec:
        """Return a copy with another input size (``None`` keeps this one)."""
        return self if size is None else dataclasses.replace(self, size=size)

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (stored in checkpoints)."""
        return {"size": self.size, "channels": self.channels,
                "mean": list(self.mean), "std": list(self.std)}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> InputSpec:
        """Inverse of :meth:`to_dict`."""
        return cls(size=int(d["size"]), channels=int(d["channels"]),
                   mean=tuple(d["mean"]), std=tuple(d["std"]))


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation (torchvision.transforms.v2), applied after EXIF transpose.

    Attributes:
        hflip: Probability of a horizontal flip.
        rotation: Maximum rotation in degrees (uniform in ``[-rotation, rotation]``).
        translate: Maximum shift as a fraction of the image side.
        scale: ``(min, max)`` area fraction kept by the random resized crop.
        color_jitter: Brightness/contrast/saturation jitter strength (0 disables it).
    """

    hflip: float = 0.5
    rotation: float = 10.0
    translate: float = 0.1
    scale: tuple[float, float] = (0.8, 1.0)
    color_jitter: float = 0.2

    @classmethod
    def preset(cls, name: str) -> AugmentConfig:
        """The named presets ``none``, ``light`` and ``default``.

        Raises:
            ConfigError: Unknown preset name.
        """
        presets = {
            "none": cls(hflip=0.0, rotation=0.0, translate=0.0, scale=(1.0, 1.0), color_jitter=0.0),
            "light": cls(hflip=0.5, rotation=5.0, translate=0.05, scale=(0.9, 1.0),
                         color_jitter=0.0),
            "default": cls(),
        }
        if name not in presets:
            raise ConfigError(f"Unknown augmentation preset '{name}'.",
                              "choose one of: " + ", ".join(presets))
        return presets[name]

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict."""
        d = dataclasses.asdict(self)
        d["scale"] = list(self.scale)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> AugmentConfig:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["scale"] = tuple(d.get("scale", (0.8, 1.0)))
        return cls(**d)


@dataclass
class TrainConfig:
    """Everything :func:`babyemo.training.train` needs; stored in every checkpoint.

    Defaults are the documented default recipe (see ``docs/results.md``). Fields take the
    same values as the ``babyemo train`` options, strings included: ``augment`` a preset
    name (``"none"``, ``"light"``, ``"default"``; :meth:`AugmentConfig.preset`), an
    :class:`AugmentConfig` or its dict; ``train_splits`` ``"train"`` or ``"train,val"``
    (comma-separated, as ``--train-on``) or a tuple of split names. ``patience`` is the
    number of epochs without a validation macro-F1 gain after which training stops
    (``None``: never; ``--patience``).
    """

    data: str | None = None
    arch: str = "custom_resnet"
    arch_kwargs: dict[str, Any] = field(default_factory=dict)
    pretrained: bool = False
    image_size: int | None = None
    epochs: int = 30
    batch_size: int = 32
    lr: float = 1e-3
    weight_decay: float = 0.05
    optimizer: OptimizerName = OptimizerName.adamw
    scheduler: SchedulerName = SchedulerName.cosine
    augment: AugmentConfig | str = field(default_factory=AugmentConfig)
    label_smoothing: float = 0.1
    class_weights: bool = False
    patience: int | None = None
    seed: int = 0
    device: str = "auto"
    precision: Precision = Precision.auto
    num_workers: int | None = None
    cache: CacheMode = CacheMode.auto
    compile: bool = False
    out: str | None = None
    overwrite: bool = False
    resume: bool = False
    init: str | None = "auto"
    name: str | None = None
    faces: str = "auto"
    face_margin: float = 0.25
    face_align: bool = True
    train_splits: tuple[str, ...] | str = ("train",)

    def __post_init__(self) -> None:
        self.optimizer = OptimizerName(self.optimizer)
        if isinstance(self.train_splits, str):  # "train,val", as --train-on takes it
            self.train_splits = tuple(s.strip() for s in self.train_splits.split(",")
                                      if s.strip())
        self.train_splits = tuple(self.train_splits)
        self.scheduler = SchedulerName(self.scheduler)
        self.precision = Precision(self.precision)
        self.cache = CacheMode(self.cache)
        if isinstance(self.augment, str):  # a preset name, as --augment takes it
            self.augment = AugmentConfig.preset(self.augment)
        elif isinstance(self.augment, dict):
            self.augment = AugmentConfig.from_dict(self.augment)
        checks = [
            ("epochs", self.epochs,
             isinstance(self.epochs, int) and self.epochs >= 1, "an int >= 1"),
            ("batch_size", self.batch_size,
             isinstance(self.batch_size, int) and self.batch_size >= 1, "an int >= 1"),
            ("lr", self.lr, self.lr > 0, "a float > 0"),
            ("weight_decay", self.weight_decay, self.weight_decay >= 0, "a float >= 0"),
            ("label_smoothing", self.label_smoothing,
             0 <= self.label_smoothing < 1, "a float in [0, 1)"),
            ("face_margin", self.face_margin, 0 <= self.face_margin <= 2, "a float in [0, 2]"),
            ("patience", self.patience,
             self.patience is None or self.patience >= 1,
             "an int >= 1 or None"),
            ("train_splits", self.train_splits,
             bool(self.train_splits) and "train" in self.train_splits
             and set(self.train_splits) <= {"train", "val"},
             "('train',) or ('train', 'val')"),
        ]
        for name, value, ok, what in checks:
            if not ok:
                raise ConfigError(f"The '{name}' parameter must be {what}. Got {value!r}.")

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (JSON- and ``weights_only``-safe)."""
        d = dataclasses.asdict(self)
        d["optimizer"] = self.optimizer.value
        d["scheduler"] = self.scheduler.value
        d["precision"] = self.precision.value
        d["cache"] = self.cache.value
        d["augment"] = self.augment.to_dict()
        d["train_splits"] = list(self.train_splits)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> TrainConfig:
        """Inverse of :meth:`to_dict`; unknown keys are ignored.

        Keys of older versions are read too: ``early_stopping`` (babyemo <= 0.1, the
        field now called ``patience``).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        d = dict(d)
        if "early_stopping" in d and "patience" not in d:
            d["patience"] = d["early_stopping"]
        return cls(**{k: v for k, v in d.items() if k in names})
