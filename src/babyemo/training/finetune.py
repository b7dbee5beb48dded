"""Fine-tuning: start a run from the weights of another babyemo checkpoint (``--init``).

:func:`resolve_init` reads the checkpoint ``TrainConfig.init`` names (``auto``: the
packaged adult-face model when it fits); :func:`init_from` loads its weights into a fresh
model, the classifier head row by row for the classes both share.
"""

from __future__ import annotations

import logging
from typing import Any

from torch import nn

from babyemo.checkpoint import Checkpoint, load_checkpoint
from babyemo.config import InputSpec, TrainConfig
from babyemo.models import store
from babyemo.models.ensemble import refuse_as_init
from babyemo.models.registry import ArchInfo

log = logging.getLogger(__name__)


def resolve_init(config: TrainConfig, spec: InputSpec) -> Checkpoint | None:
    """The checkpoint ``config.init`` names, read once, or ``None`` for no initialisation.

    ``"auto"`` (the default recipe) is the packaged adult-face model
    (:data:`babyemo.models.packaged.PACKAGED_INIT`, custom_resnet pretrained on
    FER-2013; see ``docs/recipes.md``) when it is installed, has the same arch and input
    channels and ``--pretrained`` is off; otherwise no initialisation. ``"none"`` or
    ``None``: none. Anything else: a file or a trained model's name.

    Args:
        config: The run's configuration (``init``, ``arch``, ``pretrained``).
        spec: The input the model is trained on (its channels must match the donor's).

    Returns:
        The donor checkpoint, or ``None``.

    Raises:
        RegistryError: Neither a file nor a trained model's name.
        ConfigError: The checkpoint is an ensemble (fine-tune one of its members).
        CheckpointError: The checkpoint cannot be read.
    """
    if config.init in (None, "", "none"):
        return None
    if config.init != "auto":
        ckpt = load_checkpoint(store.checkpoint_or_model(config.init))
        refuse_as_init(ckpt)
        return ckpt
    packaged = store.packaged_models().get(store.PACKAGED_INIT)
    if config.pretrained or packaged is None:
        return None
    ckpt = load_checkpoint(packaged["checkpoint"])
    if ckpt.arch != config.arch or ckpt.input_spec.channels != spec.channels:
        log.info("--init auto: no pretrained %s model packaged; training from scratch.",
                 config.arch)
        return None
    return ckpt


def init_from(model: nn.Module, ckpt: Checkpoint, class_names: list[str], arch: ArchInfo
              ) -> dict[str, Any]:
    """Load the weights of another babyemo checkpoint (already read, e.g. by
    :func:`resolve_init`) into ``model``, in place.

    Every tensor whose name and shape match is loaded. The classifier head
    (:meth:`ArchInfo.head_keys <babyemo.models.registry.ArchInfo.head_keys>`) is loaded
    only for the classes both models share, matched by name (e.g. a FER-2013 model's
    ``angry`` and ``happy`` rows initialise an infant model's); the other rows keep their
    fresh initialisation.

    Args:
        model: A freshly built model of ``arch``.
        ckpt: The donor checkpoint.
        class_names: ``model``'s classes, in logit order.
        arch: ``model``'s registry entry (it says where the head is).

    Returns:
        Provenance of the initialisation (stored in the checkpoint's ``train["init"]``):
        the file, its ``sha256`` and its weights' ``weights_sha256``
        (:func:`babyemo.checkpoint.weights_sha256`, unchanged when the donor file is later
        rewritten by ``evaluate --record`` or ``calibrate``), its registered ``name``
        (``--init auto`` or a model name: e.g. ``babyemo-fer2013``; a file registered
        under a name, or a copy of a packaged model's file, gets that name; otherwise
        ``None``), its arch, dataset, training images, epoch, input size, and what was
        loaded. The name and digests let a model card name the donor on machines where
        its path means nothing.

    Raises:
        RegistryError: ``arch`` declares a head that ``model`` does not have.
    """
    from babyemo.checkpoint import weights_sha256 as digest_of
    from babyemo.fs import sha256_file

    sha256, weights_sha256 = sha256_file(ckpt.path), digest_of(ckpt.state_dict)
    name = (store.registered_name(ckpt.path)
            or store.packaged_name_of(sha256, weights_sha256=weights_sha256))
    own = model.state_dict()
    head = arch.head_keys(model)
    loadable = {k: v for k, v in ckpt.state_dict.items()
                if k in own and k not in head and own[k].shape == v.shape}
    shared = [c for c in class_names if c in ckpt.class_names]
    for k in head:
        if k in ckpt.state_dict and own[k].shape[1:] == ckpt.state_dict[k].shape[1:]:
            merged = own[k].clone()
            for c in shared:
                merged[class_names.index(c)] = ckpt.state_dict[k][ckpt.class_names.index(c)]
            loadable[k] = merged
    model.load_state_dict(loadable, strict=False)
    log.info("Initialised from %s: %d of %d tensors loaded; head rows copied for %d of %d "
             "classes (%s)", f"{name} ({ckpt.path})" if name else ckpt.path, len(loadable),
             len(own), len(shared), len(class_names), ", ".join(shared) or "none")
    return {"checkpoint": str(ckpt.path.resolve()), "name": name, "sha256": sha256,
            "weights_sha256": weights_sha256, "arch": ckpt.arch,
            "dataset": ckpt.train.get("dataset"), "n_train": ckpt.train.get("n_train"),
            "epoch": ckpt.train.get("epoch"), "input_size": ckpt.input_spec.size,
            "val_macro_f1": (ckpt.metrics.get("val") or {}).get("macro_f1"),
            "tensors_loaded": len(loadable), "tensors": len(own), "head_classes": shared}
