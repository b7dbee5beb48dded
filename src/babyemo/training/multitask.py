"""Multi-task training (``--aux-data MANIFEST --aux-weight W``): a second, auxiliary task
trained at the same time as the main one, on the same backbone.

Hard parameter sharing (Caruana 1997, "Multitask Learning"; Ruder 2017, "An Overview of
Multi-Task Learning in Deep Neural Networks"): the auxiliary task (e.g. FER-2013's adult
faces beside the infant photos) gets its own classifier head, an ``nn.Linear`` from the
features the main head reads (its input, taken with a forward pre-hook, so no
architecture changes) to the auxiliary classes. Each training step concatenates the main
batch and the next auxiliary batch into **one** forward pass (the batch-norm statistics
see both), and minimises::

    loss = CE_main(main logits) + W * CE_aux(aux_head(features of the auxiliary rows))

``CE_main`` is the run's criterion (label smoothing and class weights as configured),
``CE_aux`` plain cross entropy with the same label smoothing. The epoch is the main
loader's; the auxiliary batches come from a cycling iterator over the auxiliary ``train``
rows (shuffled by a generator seeded ``seed + epoch + AUX_SEED_OFFSET`` at the start of
each epoch, so ``--resume`` continues exactly), as many per batch as the main batch
size. The auxiliary images are read with the main run's input spec (size, channels, mean
and std: 48 px grayscale FER-2013 faces become e.g. 112 px RGB) and augmentation, cropped
to their face boxes when the main run crops faces and the auxiliary manifest has them,
else whole.

Only the main task is saved: checkpoints hold the main model's weights (no auxiliary
tensors), so prediction, evaluation and export are unchanged. The training record holds
``aux_data``, ``aux_weight`` and the auxiliary classes (``train["aux"]``); ``last.pt``'s
resume entry holds the auxiliary head (``resume["aux_head"]``). Validation and the choice
of ``best.pt`` use the main task only.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import DataLoader

from babyemo import distributed
from babyemo.config import InputSpec, TrainConfig
from babyemo.data.loading.dataset import ManifestDataset
from babyemo.data.loading.image_cache import ImageCache
from babyemo.data.preparation.lookup import manifest_for_training
from babyemo.data.preparation.manifest import Manifest, read_manifest
from babyemo.errors import ConfigError, DataError
from babyemo.models.registry import ArchInfo
from babyemo.transforms import train_transform

log = logging.getLogger(__name__)

AUX_SEED_OFFSET = 104_729
"""Added to ``seed + epoch`` for the auxiliary shuffling generator (its own sequence,
independent of the main loader's)."""


def check_aux_manifest(config: TrainConfig, main: Manifest,
                       dist: distributed.DistContext | None = None) -> Manifest | None:
    """The auxiliary manifest of ``config.aux_data``, checked (``None`` without one).

    ``aux_data`` is resolved as ``--data`` is
    (:func:`~babyemo.data.preparation.lookup.manifest_for_training`: a ``manifest.csv`` or
    its folder).

    Args:
        config: The run's configuration.
        main: The main manifest.
        dist: This process's place in a distributed run (default: one process).

    Returns:
        The auxiliary :class:`~babyemo.data.preparation.manifest.Manifest`, or ``None``.

    Raises:
        ConfigError: A distributed run (torchrun / ``--nproc``).
        ManifestError: No manifest there (see
            :func:`~babyemo.data.preparation.manifest.read_manifest`).
        DataError: The auxiliary manifest has no ``train`` rows or fewer than two classes,
            or it is the main manifest (the same file or the same bytes) or the manifest
            the main one's cross-validation folds were made from.
    """
    if not config.aux_data:
        return None
    if dist is not None and dist.enabled:
        raise ConfigError("--aux-data (multi-task training) is not supported in a distributed "
                          "run yet.", "train with one process (drop torchrun / --nproc)")
    aux = read_manifest(manifest_for_training(config.aux_data).path)
    parent = (main.info.get("folds") or {}).get("parent")
    same = (aux.path.resolve() == main.path.resolve() or aux.sha256() == main.sha256()
            or (parent and Path(parent).resolve() == aux.path.resolve()))
    if same:
        which = "the main manifest" + (" or its cross-validation parent" if parent else "")
        raise DataError(f"The auxiliary manifest {aux.path} is {which} ({main.path}): its "
                        "images would be trained on twice, the held-out ones included.",
                        "pass another dataset to --aux-data (e.g. a prepared FER-2013)")
    if not aux.rows_for("train"):
        raise DataError(f"The auxiliary manifest {aux.path} has no 'train' rows (its splits: "
                        f"{', '.join(aux.splits()) or 'none'}).",
                        "re-split it with `babyemo data split`, or prepare it again")
    classes = sorted({r.label for r in aux.rows_for("train")})
    if len(classes) < 2:
        raise DataError(f"The 'train' rows of the auxiliary manifest {aux.path} have "
                        f"{len(classes)} class(es).", "an auxiliary task needs two or more")
    return aux


def aux_faces(config: TrainConfig, aux: Manifest) -> dict[str, Any] | None:
    """How the auxiliary images are cropped: to their face boxes (with the main run's
    margin and alignment) when the main run crops faces (``--faces`` other than ``none``)
    and the auxiliary manifest has boxes, else ``None`` (whole images)."""
    from babyemo.training.setup import face_settings

    if config.faces == "none":
        return None
    # as the main run's --faces auto: the boxes when there are any, of whichever detector
    return face_settings(replace(config, faces="auto"), aux)


def main_head(info: ArchInfo, model: nn.Module) -> tuple[str, nn.Linear]:
    """The main classifier head (``info.head_name``) whose input the auxiliary head reads.

    Raises:
        ConfigError: ``model`` has no ``nn.Linear`` head.
        RegistryError: The arch's declared head is not an ``nn.Linear`` (see
            :meth:`~babyemo.models.registry.ArchInfo.head_name`).
    """
    name = info.head_name(model)
    head = model.get_submodule(name) if name is not None else None
    if not isinstance(head, nn.Linear):
        raise ConfigError(f"--aux-data needs a classifier head that is an nn.Linear, and the "
                          f"arch '{info.name}' has none.",
                          "choose another --arch (see `babyemo models list`), or declare its "
                          "head with register_arch(..., head=...)")
    return name, head


class FeatureTap:
    """Keeps the input of a module (the main head's features) while :meth:`capture` is on.

    A forward pre-hook (``register_forward_pre_hook``) on the head: no architecture change,
    and outside :meth:`capture` (validation, the EMA copy) it keeps nothing.

    Args:
        head: The module whose first input is kept, ``(N, F) float`` features.
    """

    def __init__(self, head: nn.Module) -> None:
        self.features: torch.Tensor | None = None
        self._on = False
        self.handle = head.register_forward_pre_hook(self._hook)

    def _hook(self, module: nn.Module, args: tuple[Any, ...]) -> None:
        if self._on:
            self.features = args[0]

    @contextlib.contextmanager
    def capture(self) -> Iterator[FeatureTap]:
        """On for the ``with`` block; :attr:`features` then holds the last forward's
        features (cleared on entry and exit)."""
        self._on, self.features = True, None
        try:
            yield self
        finally:
            self._on = False

    def take(self) -> torch.Tensor:
        """The captured features, forgotten here (so the graph is not kept alive).

        Raises:
            RuntimeError: Nothing was captured (the head did not run).
        """
        if self.features is None:
            raise RuntimeError("the classifier head did not run: no features to take")
        features, self.features = self.features, None
        return features


@dataclass
class AuxTask:
    """The auxiliary task of a multi-task run (made by :func:`prepare_aux`).

    Attributes:
        manifest: The auxiliary manifest.
        class_names: Its classes in the auxiliary head's logit order (sorted labels of its
            ``train`` rows).
        dataset: Its ``train`` rows, with the main run's spec and augmentation.
        head: The auxiliary classifier, ``nn.Linear(F, len(class_names))`` on the device.
        tap: Captures the main head's features.
        weight: ``W`` of ``CE_main + W * CE_aux``.
        criterion: ``CE_aux`` (the run's label smoothing, no class weights).
        faces: The auxiliary face-crop settings, or ``None`` (whole images).
    """

    manifest: Manifest
    class_names: list[str]
    dataset: ManifestDataset
    head: nn.Linear
    tap: FeatureTap
    weight: float
    criterion: nn.Module
    faces: dict[str, Any] | None = None

    def batches(self, config: TrainConfig, device: torch.device, epoch: int
                ) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """Endless auxiliary batches for ``epoch``: passes over a loader shuffled by one
        generator seeded ``config.seed + epoch + AUX_SEED_OFFSET`` (each pass draws the
        next permutation from it), ``config.batch_size`` images each.

        Yields:
            ``(N, C, H, W) uint8`` pixels of the main run's input spec (normalised on
            the device by the runner, as the main batches) and ``(N,) int64`` auxiliary
            labels.
        """
        from babyemo.training.runner import make_loader

        loader: DataLoader = make_loader(self.dataset, config, device, shuffle=True,
                                         epoch_seed=config.seed + epoch + AUX_SEED_OFFSET)
        while True:
            yield from loader

    def provenance(self) -> dict[str, Any]:
        """The checkpoints' ``train["aux"]`` entry (plain types)."""
        return {"manifest": str(self.manifest.path.resolve()),
                "manifest_sha256": self.manifest.sha256(), "dataset": self.manifest.name,
                "class_names": list(self.class_names), "n_train": len(self.dataset),
                "weight": self.weight, "faces": self.faces,
                "n_train_without_face": self.dataset.n_without_face}


def prepare_aux(config: TrainConfig, aux: Manifest, *, info: ArchInfo, model: nn.Module,
                spec: InputSpec, cache: ImageCache | None, device: torch.device) -> AuxTask:
    """The auxiliary task of ``config`` on ``model`` (the hook registered, the head made).

    Args:
        config: The run's configuration (``aux_weight``, ``augment``, ``label_smoothing``,
            the face-crop options).
        aux: The checked auxiliary manifest (:func:`check_aux_manifest`).
        info: The main arch's registry entry.
        model: The main model, on ``device``.
        spec: The main run's input spec.
        cache: The image cache of the run's training images.
        device: Where it trains.

    Raises:
        ConfigError, RegistryError: See :func:`main_head`.
        DataError: An image of the auxiliary ``train`` rows is missing.
    """
    _, head = main_head(info, model)
    faces = aux_faces(config, aux)
    crop = None
    if faces is not None:
        from babyemo.faces import CropSpec

        crop = CropSpec(margin=faces["margin"], align=faces["align"])
    class_names = sorted({r.label for r in aux.rows_for("train")})
    dataset = ManifestDataset(aux, "train", class_names, spec,
                              train_transform(spec, config.augment), cache=cache, crop=crop,
                              augment=True)
    aux_head = nn.Linear(head.in_features, len(class_names)).to(device)
    return AuxTask(manifest=aux, class_names=class_names, dataset=dataset, head=aux_head,
                   tap=FeatureTap(head), weight=config.aux_weight,
                   criterion=nn.CrossEntropyLoss(label_smoothing=config.label_smoothing),
                   faces=faces)


def check_resumed_aux(aux: AuxTask, saved_train: dict[str, Any]) -> None:
    """Refuse to resume when the auxiliary classes changed since the run started.

    Raises:
        ConfigError: The auxiliary manifest's ``train`` classes differ from the run's.
    """
    before = (saved_train.get("aux") or {}).get("class_names")
    if before is not None and list(before) != aux.class_names:
        raise ConfigError(f"The auxiliary manifest {aux.manifest.path} now has the classes "
                          f"{aux.class_names}; the run started with {list(before)}.",
                          "restore that manifest, or start a new run with another --out")
    digest = (saved_train.get("aux") or {}).get("manifest_sha256")
    if digest and digest != aux.manifest.sha256():
        log.warning("The auxiliary manifest %s changed since the run started.",
                    aux.manifest.path)


__all__ = ["AUX_SEED_OFFSET", "AuxTask", "FeatureTap", "aux_faces", "check_aux_manifest",
           "check_resumed_aux", "main_head", "prepare_aux"]
