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
    """What prediction (and evaluation) does with a photo in which no face is found.

    ``whole_image`` (the default): classify the whole image; ``error``: no answer (a row
    with ``error=no_face``; in evaluation, counted as wrong). ``full`` is the deprecated
    old name of ``whole_image``: ``NoFaceFallback("full")`` and ``NoFaceFallback.full``
    are ``whole_image``.
    """

    whole_image = "whole_image"
    error = "error"
    full = "whole_image"  # deprecated alias of whole_image

    @classmethod
    def _missing_(cls, value: object) -> NoFaceFallback | None:
        return cls.whole_image if value == "full" else None


class EpochSelection(str, Enum):
    """Which epoch's weights ``best.pt`` keeps.

    ``best``: the epoch with the highest validation macro-F1 (ties to the lower val loss).
    ``last``: the final epoch, no selection on the validation split; cross-validation uses
    it, because an epoch chosen on the fold it is then scored on makes the out-of-fold
    score optimistic (by +0.024 macro-F1 over 5 folds of infant-emotions, see
    ``docs/recipes.md``).
    """

    best = "best"
    last = "last"


class LRScaling(str, Enum):
    """How ``--lr`` changes with the number of training processes (``--lr-scaling``).

    ``linear``: multiplied by the number of processes, as the global batch is (the linear
    scaling rule of Goyal et al. 2017, "Accurate, Large Minibatch SGD: Training ImageNet
    in 1 Hour"); ``none``: unchanged.
    """

    linear = "linear"
    none = "none"


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


AUTO_AUGMENT_POLICIES = ("trivialaugment", "randaugment")
"""Automatic augmentation policies of :attr:`AugmentConfig.auto`: TrivialAugmentWide
(Müller & Hutter 2021) and RandAugment (Cubuk et al. 2020), from torchvision."""


@dataclass(frozen=True)
class AugmentConfig:
    """Training-time augmentation (torchvision.transforms.v2), applied after EXIF transpose.

    The last five fields are off by default (the default recipe does not use them); the
    ``strong`` and ``bridge`` presets turn some on (see :meth:`preset`).

    Attributes:
        hflip: Probability of a horizontal flip.
        rotation: Maximum rotation in degrees (uniform in ``[-rotation, rotation]``).
        translate: Maximum shift as a fraction of the image side.
        scale: ``(min, max)`` area fraction kept by the random resized crop.
        color_jitter: Brightness/contrast/saturation jitter strength (0 disables it).
        auto: An automatic policy applied after the colour jitter: ``None``,
            ``"trivialaugment"`` (``TrivialAugmentWide``) or ``"randaugment"``
            (``RandAugment``, 2 ops of magnitude 9).
        random_erasing: Probability of erasing a random rectangle (``RandomErasing``, on
            the uint8 tensor, erased to 0; Zhong et al. 2020).
        grayscale: Probability of turning the image gray (``RandomGrayscale``; the adult
            FER-2013 faces are grayscale, the infant photos colour).
        blur: Probability of a Gaussian blur (``GaussianBlur``, kernel about a tenth of
            the input side, sigma 0.1-2 px).
        downscale: Probability of resizing the image down to a random side of 20-50% of
            the input (e.g. 22-56 px for 112 px, around FER-2013's 48 px) and back up.
    """

    hflip: float = 0.5
    rotation: float = 10.0
    translate: float = 0.1
    scale: tuple[float, float] = (0.8, 1.0)
    color_jitter: float = 0.2
    auto: str | None = None
    random_erasing: float = 0.0
    grayscale: float = 0.0
    blur: float = 0.0
    downscale: float = 0.0

    def __post_init__(self) -> None:
        if self.auto in ("", "none"):
            object.__setattr__(self, "auto", None)
        if self.auto is not None and self.auto not in AUTO_AUGMENT_POLICIES:
            raise ConfigError(f"Unknown automatic augmentation '{self.auto}'.",
                              "use auto=" + " or auto=".join(AUTO_AUGMENT_POLICIES)
                              + " (or none)")
        object.__setattr__(self, "scale", tuple(self.scale))
        if len(self.scale) != 2 or not 0 < self.scale[0] <= self.scale[1]:
            raise ConfigError(f"The augmentation's 'scale' is (min, max) with 0 < min <= max. "
                              f"Got {self.scale!r}.")
        for name in ("hflip", "random_erasing", "grayscale", "blur", "downscale"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0 <= value <= 1:
                raise ConfigError(f"The augmentation's '{name}' is a probability in [0, 1]. "
                                  f"Got {value!r}.")

    @classmethod
    def preset(cls, name: str) -> AugmentConfig:
        """The named presets ``none``, ``light``, ``default``, ``strong`` and ``bridge``.

        ``strong`` is ``default`` plus TrivialAugmentWide and random erasing (p 0.25);
        ``bridge`` is ``default`` plus what makes a colour infant photo look like a
        48 px grayscale adult face now and then (grayscale p 0.2, blur p 0.2, downscale
        p 0.3), for fine-tuning from FER-2013.

        Raises:
            ConfigError: Unknown preset name.
        """
        presets = {
            "none": cls(hflip=0.0, rotation=0.0, translate=0.0, scale=(1.0, 1.0), color_jitter=0.0),
            "light": cls(hflip=0.5, rotation=5.0, translate=0.05, scale=(0.9, 1.0),
                         color_jitter=0.0),
            "default": cls(),
            "strong": cls(auto="trivialaugment", random_erasing=0.25),
            "bridge": cls(grayscale=0.2, blur=0.2, downscale=0.3),
        }
        if name not in presets:
            raise ConfigError(f"Unknown augmentation preset '{name}'.",
                              "choose one of: " + ", ".join(presets))
        return presets[name]

    @classmethod
    def parse(cls, text: str) -> AugmentConfig:
        """A preset name, optionally followed by ``,FIELD=VALUE`` changes, as ``--augment``
        takes it: ``"strong"``, ``"default,random_erasing=0.25,auto=randaugment"``,
        ``"none,blur=0.5"``, ``"light,scale=0.7:1.0"``.

        Raises:
            ConfigError: Unknown preset or field, or a value that is not a number (``auto``
                takes a policy name or ``none``; ``scale`` takes ``MIN:MAX``).
        """
        name, *changes = [part.strip() for part in text.split(",")]
        config = cls.preset(name)
        fields = {f.name for f in dataclasses.fields(cls)}
        values: dict[str, Any] = {}
        for change in changes:
            key, sep, value = (s.strip() for s in change.partition("="))
            if not sep or key not in fields:
                raise ConfigError(f"Cannot read '{change}' in --augment {text!r}.",
                                  "write PRESET,FIELD=VALUE with FIELD one of: "
                                  + ", ".join(sorted(fields)))
            try:
                values[key] = (value if key == "auto" else
                               tuple(float(v) for v in value.split(":")) if key == "scale"
                               else float(value))
            except ValueError:
                raise ConfigError(f"'{value}' is not a number in --augment {text!r}.",
                                  "scale takes MIN:MAX, e.g. scale=0.7:1.0") from None
        return dataclasses.replace(config, **values)

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
    (``None``: never; ``--patience``). ``select`` is which epoch ``best.pt`` keeps
    (:class:`EpochSelection`; ``--select``).

    Recipe tools, all off by default: ``augment`` also takes ``"strong"``, ``"bridge"``
    and ``PRESET,FIELD=VALUE`` changes (:meth:`AugmentConfig.parse`); ``mixup`` and
    ``cutmix`` the Beta ``alpha`` of torchvision's ``MixUp`` / ``CutMix`` on each batch
    (0: off; both: one of them per batch); ``ema`` the decay of an exponential moving
    average of the weights, which is what is validated and saved (``None``: off).
    Distillation (Hinton et al. 2015, see :mod:`babyemo.training.distill`): ``teacher`` a
    trained model's name or ``.pt`` file, ``distill_temperature`` ``T`` and
    ``distill_alpha`` ``A`` of ``(1 - A) CE + A T^2 KL``, ``unlabelled`` a folder of
    images trained on with the teacher's targets only (needs ``teacher``).

    Several processes (``torchrun``, see :mod:`babyemo.distributed`): ``batch_size`` is
    per process; ``lr_scaling`` how ``lr`` grows with the processes (:class:`LRScaling`);
    ``sync_bn`` converts batch norms to ``torch.nn.SyncBatchNorm`` (statistics over the
    global batch); ``dist_timeout`` the seconds a process waits for the others before the
    run fails.

    Multi-task training (see :mod:`babyemo.training.multitask`): ``aux_data`` a second
    prepared manifest (``manifest.csv`` or its folder, as ``data``) whose ``train`` rows
    are an auxiliary task with its own classifier head on the shared backbone, a batch of
    it beside every main batch; ``aux_weight`` ``W`` of ``CE(main) + W CE(aux)``. The
    saved model is the main task's only. Not with ``teacher``/``unlabelled``, ``mixup``
    or ``cutmix``.
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
    mixup: float = 0.0
    cutmix: float = 0.0
    ema: float | None = None
    teacher: str | None = None
    distill_temperature: float = 4.0
    distill_alpha: float = 0.5
    unlabelled: str | None = None
    select: EpochSelection = EpochSelection.best
    sync_bn: bool = False
    lr_scaling: LRScaling = LRScaling.linear
    dist_timeout: float = 600.0
    aux_data: str | None = None
    aux_weight: float = 0.5

    def __post_init__(self) -> None:
        self.optimizer = OptimizerName(self.optimizer)
        if isinstance(self.train_splits, str):  # "train,val", as --train-on takes it
            self.train_splits = tuple(s.strip() for s in self.train_splits.split(",")
                                      if s.strip())
        self.train_splits = tuple(self.train_splits)
        self.scheduler = SchedulerName(self.scheduler)
        self.precision = Precision(self.precision)
        self.cache = CacheMode(self.cache)
        self.select = EpochSelection(self.select)
        self.lr_scaling = LRScaling(self.lr_scaling)
        if isinstance(self.augment, str):  # a preset name (and changes), as --augment
            self.augment = AugmentConfig.parse(self.augment)
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
            ("mixup", self.mixup, self.mixup >= 0, "a float >= 0 (0: off)"),
            ("cutmix", self.cutmix, self.cutmix >= 0, "a float >= 0 (0: off)"),
            ("ema", self.ema, self.ema is None or 0 < self.ema < 1,
             "a decay in (0, 1), e.g. 0.999, or None"),
            ("distill_temperature", self.distill_temperature, self.distill_temperature > 0,
             "a float > 0"),
            ("distill_alpha", self.distill_alpha, 0 <= self.distill_alpha <= 1,
             "a float in [0, 1]"),
            ("dist_timeout", self.dist_timeout, self.dist_timeout > 0, "seconds > 0"),
            ("aux_weight", self.aux_weight, self.aux_weight > 0, "a float > 0"),
        ]
        for name, value, ok, what in checks:
            if not ok:
                raise ConfigError(f"The '{name}' parameter must be {what}. Got {value!r}.")
        if self.unlabelled and not self.teacher:
            raise ConfigError("Unlabelled images (--unlabelled) are trained on with a "
                              "teacher's targets only, and no teacher was given.",
                              "add --teacher MODEL (a trained model's name or .pt file)")
        if self.aux_data:
            clash = [option for option, on in (("--teacher", self.teacher),
                                               ("--unlabelled", self.unlabelled),
                                               ("--mixup", self.mixup > 0),
                                               ("--cutmix", self.cutmix > 0)) if on]
            if clash:
                raise ConfigError(f"--aux-data (multi-task training) cannot be combined with "
                                  f"{', '.join(clash)}: the auxiliary batches have neither "
                                  "teacher targets nor mixed labels.",
                                  f"drop {' and '.join(clash)}, or drop --aux-data")

    def to_dict(self) -> dict[str, Any]:
        """Plain-type dict (JSON- and ``weights_only``-safe)."""
        d = dataclasses.asdict(self)
        d["optimizer"] = self.optimizer.value
        d["scheduler"] = self.scheduler.value
        d["precision"] = self.precision.value
        d["cache"] = self.cache.value
        d["select"] = self.select.value
        d["lr_scaling"] = self.lr_scaling.value
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
