"""Knowledge distillation (``--teacher``) and the soft-target loss of mixed batches.

Hinton, Vinyals & Dean 2015, "Distilling the Knowledge in a Neural Network": the student
learns from the teacher's probabilities softened by a temperature ``T`` as well as from the
labels::

    loss = (1 - A) * CE(labels) + A * T^2 * KL(softmax(teacher / T) || softmax(student / T))

with the recipe's label smoothing and class weights in ``CE``; ``T^2`` keeps the gradient
of the soft term on the scale of the hard one as ``T`` changes (section 2 of the paper).

Offline distillation: the teacher runs **once**, before epoch 1, on every training image
through :class:`babyemo.inference.InferenceModel` with its own input size, preprocessing
and face crops (the evaluation transform of :func:`babyemo.inference.checkpoint_dataset`),
and its logits are kept in the run folder (``teacher.npz``, reused by ``--resume``). The
student then sees augmented views of each image whose target is the teacher's view of the
un-augmented image: cheap (no teacher in the epoch loop) and the usual approximation of
offline KD. The teacher's calibration temperature is not used: ``T`` alone softens its
raw logits.

Unlabelled images (``--unlabelled FOLDER``) join the training set with the KD term only.
When the student (or the teacher) is trained on face crops, their faces are detected once,
at set-up, with the detector the manifest was prepared with (the teacher's when the
manifest has none): the largest face is used, and an image without a face is skipped.

The teacher's classes must include the student's; its logits are mapped by class name
(the softmax then runs over the student's classes only). With ``--mixup`` / ``--cutmix``
the teacher's probabilities are mixed like the labels and images (see
:mod:`babyemo.training.mixing`).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import Dataset

from babyemo.checkpoint import Checkpoint
from babyemo.config import InputSpec, TrainConfig
from babyemo.data.loading.dataset import (
    ManifestDataset,
    Transform,
    decode_size,
    load_cached,
)
from babyemo.data.loading.folders import FoundFiles, collect_input_files
from babyemo.data.loading.image_cache import ImageCache
from babyemo.data.loading.images import load_image
from babyemo.data.preparation.manifest import Manifest
from babyemo.errors import ConfigError, ImageError
from babyemo.fs import atomic_open, sha256_file
from babyemo.inference import InferenceModel, checkpoint_dataset
from babyemo.models import store
from babyemo.progress import progress_bar
from babyemo.runtime import Runtime
from babyemo.transforms import eval_transform

log = logging.getLogger(__name__)

TEACHER_FILE = "teacher.npz"
"""The teacher's logits of every training image, in the run folder (see
:class:`TeacherTargets`)."""


def load_teacher(teacher: str, class_names: Sequence[str]) -> Checkpoint:
    """The teacher checkpoint (``store.load``: a ``.pt`` file or a trained model's name),
    checked to know every class of the student.

    Args:
        teacher: ``--teacher``: a file, or a registered name (packaged models included).
        class_names: The student's classes.

    Returns:
        The checkpoint, its ``name`` set.

    Raises:
        RegistryError: Neither a file nor a trained model's name.
        CheckpointError: The file is unusable.
        ConfigError: The teacher lacks some of the student's classes.
    """
    path = Path(teacher).expanduser()
    ckpt = store.load(checkpoint=path) if path.is_file() else store.load(model=teacher)
    missing = [c for c in class_names if c not in ckpt.class_names]
    if missing:
        raise ConfigError(f"The teacher '{ckpt.name}' does not know the classes {missing} "
                          f"(its classes: {list(ckpt.class_names)}; the student's: "
                          f"{list(class_names)}).",
                          "distil from a model whose classes include the student's")
    return ckpt


@dataclass
class UnlabelledImages:
    """The unlabelled images trained on (``--unlabelled``), as found at set-up.

    Attributes:
        folder: The folder given (resolved).
        paths: The images used, in the folder's sorted order.
        faces: For each used image, its largest face (a :class:`babyemo.faces.Face` dict,
            boxes in pixels of the upright full-resolution image), or ``None`` for whole
            images (no detector).
        detector: The face detector used, or ``None``.
        n_files: Image files found in the folder (sub-folders included).
        n_unreadable: Files skipped because they cannot be read or decoded (also
            broken links and other entries that are not files).
        n_without_face: Readable images skipped because no face was found.
        n_non_images: Files skipped for a name that does not end like an image.
    """

    folder: Path
    paths: list[Path] = field(default_factory=list)
    faces: list[dict[str, Any] | None] = field(default_factory=list)
    detector: str | None = None
    n_files: int = 0
    n_unreadable: int = 0
    n_without_face: int = 0
    n_non_images: int = 0

    def summary(self) -> dict[str, Any]:
        """Plain-type counts (stored in checkpoints under ``distill.unlabelled``)."""
        return {"folder": str(self.folder), "detector": self.detector, "n_files": self.n_files,
                "n_used": len(self.paths), "n_unreadable": self.n_unreadable,
                "n_without_face": self.n_without_face, "n_non_images": self.n_non_images}


def scan_unlabelled(folder: str) -> FoundFiles:
    """List the image files under ``folder`` (no image opened: a cheap check at set-up).

    Raises:
        DataError: The folder does not exist or holds no image file.
    """
    return collect_input_files([folder])


def read_unlabelled(folder: str, found: FoundFiles, detector: str | None) -> UnlabelledImages:
    """Decode every found image once; with ``detector``, keep its largest face.

    Unreadable files are skipped with a warning each and counted; with ``detector``, an
    image without a face is skipped (counted).

    Args:
        folder: The ``--unlabelled`` folder.
        found: What :func:`scan_unlabelled` found in it.
        detector: A face-detector registry name (``babyemo.faces``), or ``None`` for
            whole images.

    Returns:
        The :class:`UnlabelledImages`.

    Raises:
        RegistryError, MissingDependencyError, DownloadError: The detector cannot be made.
    """
    out = UnlabelledImages(folder=Path(folder).resolve(), detector=detector,
                           n_files=len(found.files) + len(found.skipped),
                           n_unreadable=len(found.skipped), n_non_images=len(found.non_images))
    for entry in found.skipped:
        log.warning("Unlabelled image skipped: %s: %s", entry.path, entry.detail)
    det = None
    if detector is not None:
        from babyemo.faces import get_detector

        det = get_detector(detector)
    with progress_bar("reading unlabelled images" + (f" (faces: {detector})" if det else ""),
                      total=len(found.files), unit="img") as bar:
        for path in found.files:
            bar.advance()
            try:
                image = load_image(path, 3, None if det else 64)
            except ImageError as e:
                log.warning("Unlabelled image skipped: %s", e.message)
                out.n_unreadable += 1
                continue
            face = None
            if det is not None:
                faces = det.detect(image)
                if not faces:
                    out.n_without_face += 1
                    continue
                face = max(faces, key=lambda f: f.area).to_dict()
            out.paths.append(path)
            out.faces.append(face)
    log.info("Unlabelled images in %s: %d used of %d files (%d unreadable, %d without a face%s)",
             out.folder, len(out.paths), out.n_files, out.n_unreadable, out.n_without_face,
             f", {out.n_non_images} non-image files" if out.n_non_images else "")
    return out


class ImageFiles(Dataset):
    """Unlabelled image files as training or teacher items ``(image, -1)``.

    Args:
        paths: The files.
        faces: A face dict per file (or ``None``: whole image), see
            :class:`UnlabelledImages`.
        spec: Input spec (channels, decode size).
        transform: PIL image -> ``(C, S, S) uint8``.
        crop: A :class:`babyemo.faces.CropSpec` to crop each file to its face, or ``None``
            for whole images.
        augment: Decode at twice the input size (training augmentation; see
            :func:`babyemo.data.loading.dataset.decode_size`).
        cache: Decoded images kept after the first epoch (as
            :class:`~babyemo.data.loading.dataset.ManifestDataset`'s), or ``None``.
    """

    def __init__(self, paths: Sequence[Path], faces: Sequence[dict[str, Any] | None],
                 spec: InputSpec, transform: Transform, crop: Any = None,
                 augment: bool = False, cache: ImageCache | None = None) -> None:
        self.paths, self.faces = list(paths), list(faces)
        self.spec, self.transform, self.crop, self.cache = spec, transform, crop, cache
        self.draft_size = decode_size(spec, augment)

    def __len__(self) -> int:
        return len(self.paths)

    def load(self, i: int) -> Any:
        """The decoded (and cropped) PIL image of item ``i``.

        Raises:
            ImageError: The file cannot be decoded any more.
        """
        face = self.faces[i] if self.crop is not None else None
        return load_cached(self.paths[i], face, self.crop if face is not None else None,
                           self.spec, self.draft_size, self.cache)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int]:
        return self.transform(self.load(i)), -1


@dataclass
class TeacherTargets:
    """The teacher's logits of every training image (``teacher.npz``).

    Attributes:
        logits: ``(N, K) float32`` logits of the labelled training images, in the order of
            ``paths``, columns in the student's class order.
        paths: The manifest paths of those images (the training dataset's ``rel_paths``).
        unlabelled_logits: ``(M, K) float32`` logits of the unlabelled images.
        unlabelled: The unlabelled images (paths and faces), or ``None``.
        class_names: The student's classes (the columns).
        teacher: ``name``, ``checkpoint`` (resolved path), ``sha256``, ``arch``,
            ``class_names`` (its own), ``input`` (its input spec) and ``faces`` (its
            face-crop settings) of the teacher.
    """

    logits: np.ndarray
    paths: list[str]
    unlabelled_logits: np.ndarray
    unlabelled: UnlabelledImages | None
    class_names: list[str]
    teacher: dict[str, Any]

    def save(self, path: Path) -> None:
        """Write ``teacher.npz`` atomically (plain arrays: ``np.load(allow_pickle=False)``)."""
        u = self.unlabelled
        arrays = {
            "logits": self.logits.astype(np.float32),
            "paths": np.array(self.paths, dtype=str),
            "class_names": np.array(self.class_names, dtype=str),
            "unlabelled_logits": self.unlabelled_logits.astype(np.float32),
            "unlabelled_paths": np.array([str(p) for p in (u.paths if u else [])], dtype=str),
            "unlabelled_faces": np.array([json.dumps(f) for f in (u.faces if u else [])],
                                         dtype=str),
            "info": np.array(json.dumps({"teacher": self.teacher,
                                         "unlabelled": u.summary() if u else None})),
        }
        with atomic_open(path, "wb") as f:
            np.savez(f, **arrays)

    @classmethod
    def load(cls, path: Path) -> TeacherTargets:
        """Read a ``teacher.npz`` written by :meth:`save`.

        Raises:
            OSError, ValueError, KeyError: The file is unreadable or not one of these.
        """
        with np.load(path, allow_pickle=False) as z:
            info = json.loads(str(z["info"]))
            unlabelled = None
            if info.get("unlabelled") is not None:
                s = info["unlabelled"]
                unlabelled = UnlabelledImages(
                    folder=Path(s["folder"]), paths=[Path(p) for p in z["unlabelled_paths"]],
                    faces=[json.loads(str(f)) for f in z["unlabelled_faces"]],
                    detector=s["detector"], n_files=s["n_files"], n_unreadable=s["n_unreadable"],
                    n_without_face=s["n_without_face"], n_non_images=s.get("n_non_images", 0))
            return cls(logits=z["logits"].astype(np.float32), paths=[str(p) for p in z["paths"]],
                       unlabelled_logits=z["unlabelled_logits"].astype(np.float32),
                       unlabelled=unlabelled, class_names=[str(c) for c in z["class_names"]],
                       teacher=info["teacher"])

    def fits(self, train_ds: ManifestDataset, class_names: Sequence[str]) -> bool:
        """Whether these targets are those of ``train_ds`` (same images in the same order,
        same classes) and the unlabelled images are all still there."""
        return (self.paths == list(train_ds.rel_paths)
                and self.class_names == list(class_names)
                and len(self.logits) == len(self.paths)
                and (self.unlabelled is None
                     or (len(self.unlabelled_logits) == len(self.unlabelled.paths)
                         and all(p.is_file() for p in self.unlabelled.paths))))


def _teacher_info(teacher: Checkpoint) -> dict[str, Any]:
    return {"name": teacher.name, "checkpoint": str(Path(teacher.path).resolve()),
            "sha256": sha256_file(teacher.path), "arch": teacher.arch,
            "class_names": list(teacher.class_names), "input": teacher.input_spec.to_dict(),
            "faces": teacher.faces}


def compute_teacher_targets(teacher: Checkpoint, manifest: Manifest, train_ds: ManifestDataset,
                            splits: Sequence[str], class_names: Sequence[str],
                            unlabelled: UnlabelledImages | None,
                            runtime: Runtime) -> TeacherTargets:
    """Run the teacher once over the training images (its own evaluation view of each).

    The labelled images are read as :func:`babyemo.inference.checkpoint_dataset` reads a
    split for the teacher (its input spec, evaluation transform, its face-crop settings on
    the manifest's boxes); the unlabelled ones with the detected face (when the teacher
    crops faces) or whole.

    Args:
        teacher: The teacher (from :func:`load_teacher`).
        manifest: The dataset trained on.
        train_ds: The student's training images (their order is kept).
        splits: The splits trained on (``config.train_splits``).
        class_names: The student's classes (the teacher's columns kept, in this order).
        unlabelled: The unlabelled images, or ``None``.
        runtime: Device, precision, batch size and workers of the teacher.

    Returns:
        The :class:`TeacherTargets`.

    Raises:
        DataError: The teacher crops faces and the manifest has no face boxes.
    """
    model = InferenceModel(teacher, runtime)
    columns = [list(teacher.class_names).index(c) for c in class_names]
    by_path: dict[str, np.ndarray] = {}
    for split in splits:
        ds = checkpoint_dataset(manifest, split, teacher)
        logits = model.dataset_logits(ds, what=f"teacher on {split}")
        by_path.update(zip(ds.rel_paths, logits[:, columns], strict=True))
    logits = np.stack([by_path[p] for p in train_ds.rel_paths]).astype(np.float32)
    u_logits = np.zeros((0, len(class_names)), dtype=np.float32)
    if unlabelled is not None and unlabelled.paths:
        crop = teacher.crop_spec if unlabelled.detector is not None else None
        ds = ImageFiles(unlabelled.paths, unlabelled.faces, teacher.input_spec,
                        eval_transform(teacher.input_spec), crop=crop)
        u_logits = model.dataset_logits(ds, what="teacher on unlabelled")[:, columns]
    return TeacherTargets(logits=logits, paths=list(train_ds.rel_paths),
                          unlabelled_logits=u_logits.astype(np.float32), unlabelled=unlabelled,
                          class_names=list(class_names), teacher=_teacher_info(teacher))


class DistillDataset(Dataset):
    """The training images with their teacher logits: items ``(image, label, logits)``.

    The labelled images first (``label`` their class index), then the unlabelled ones
    (``label`` -1: the KD term only), ``logits`` the ``(K,) float32`` teacher logits of the
    image.

    Args:
        labelled: The training split (augmented).
        unlabelled: The unlabelled images (augmented, as ``labelled``), or ``None``.
        targets: Their teacher logits.
    """

    def __init__(self, labelled: ManifestDataset, unlabelled: ImageFiles | None,
                 targets: TeacherTargets) -> None:
        self.labelled, self.unlabelled = labelled, unlabelled
        self.n_labelled = len(labelled)
        parts = [targets.logits] + ([targets.unlabelled_logits] if unlabelled else [])
        self.logits = torch.from_numpy(np.concatenate(parts).astype(np.float32))
        if len(self.logits) != len(self):
            raise ValueError(f"{len(self.logits)} teacher logits for {len(self)} images")

    def __len__(self) -> int:
        return self.n_labelled + (len(self.unlabelled) if self.unlabelled is not None else 0)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, torch.Tensor]:
        if i < self.n_labelled:
            image, label = self.labelled[i]
        else:
            assert self.unlabelled is not None
            image, label = self.unlabelled[i - self.n_labelled]
        return image, label, self.logits[i]


@dataclass
class Distillation:
    """What :func:`prepare_distillation` sets up.

    Attributes:
        dataset: The training items with teacher logits (:class:`DistillDataset`).
        targets: The teacher targets (as in ``teacher.npz``).
        reused: Whether they were read from the run's ``teacher.npz`` (``--resume``).
    """

    dataset: DistillDataset
    targets: TeacherTargets
    reused: bool

    def provenance(self, config: TrainConfig) -> dict[str, Any]:
        """The checkpoints' ``train.distill`` entry: the teacher, ``temperature``,
        ``alpha``, the number of labelled images and the unlabelled images' counts."""
        u = self.targets.unlabelled
        return {"teacher": self.targets.teacher, "temperature": config.distill_temperature,
                "alpha": config.distill_alpha, "n_labelled": self.dataset.n_labelled,
                "unlabelled": u.summary() if u is not None else None,
                "targets": TEACHER_FILE}


def prepare_distillation(config: TrainConfig, *, run_dir: Path, manifest: Manifest,
                         train_ds: ManifestDataset, class_names: Sequence[str],
                         student_faces: dict[str, Any] | None, train_transform: Transform,
                         cache: ImageCache | None, device: torch.device,
                         teacher: Checkpoint | None = None,
                         found: FoundFiles | None = None) -> Distillation:
    """The teacher targets of a run (computed once, or reused from ``teacher.npz`` on
    ``--resume``) and the dataset that pairs each training image with them.

    Args:
        config: The run's configuration (``teacher``, ``unlabelled``, ``train_splits``,
            runtime options).
        run_dir: The run folder (``teacher.npz`` is written there).
        manifest: The dataset trained on.
        train_ds: The student's augmented training images.
        class_names: The student's classes.
        student_faces: The student's face-crop settings, or ``None`` (whole images).
        train_transform: The student's training transform (for the unlabelled images).
        cache: The training image cache, or ``None``.
        device: Where the teacher runs.
        teacher: The teacher already loaded (:func:`load_teacher`), else loaded if needed.
        found: The unlabelled folder's files (:func:`scan_unlabelled`), else scanned if
            needed.

    Returns:
        The :class:`Distillation`.

    Raises:
        ConfigError, RegistryError, CheckpointError: See :func:`load_teacher`.
        DataError: See :func:`scan_unlabelled` and :func:`compute_teacher_targets`.
    """
    assert config.teacher is not None
    path = run_dir / TEACHER_FILE
    targets = None
    if config.resume and path.is_file():
        try:
            targets = TeacherTargets.load(path)
        except (OSError, ValueError, KeyError) as e:
            log.warning("%s is unreadable (%s); computing the teacher targets again.", path, e)
        if targets is not None and not targets.fits(train_ds, class_names):
            log.warning("%s does not match the run's images; computing the teacher targets "
                        "again.", path)
            targets = None
    reused = targets is not None
    if targets is None:
        teacher = teacher or load_teacher(config.teacher, class_names)
        unlabelled = None
        if config.unlabelled:
            detector = (student_faces or {}).get("detector")
            if detector is None and teacher.crop_spec is not None:
                detector = (teacher.faces or {}).get("detector")
            unlabelled = read_unlabelled(config.unlabelled,
                                         found or scan_unlabelled(config.unlabelled), detector)
        runtime = Runtime(device=str(device), precision=config.precision,
                          batch_size=config.batch_size, workers=config.num_workers)
        targets = compute_teacher_targets(teacher, manifest, train_ds, config.train_splits,
                                          class_names, unlabelled, runtime)
        targets.save(path)
    else:
        log.info("Reusing the teacher targets of %s (teacher %s).", path,
                 targets.teacher.get("name"))
    u = targets.unlabelled
    images = None
    if u is not None and u.paths:
        crop = None
        if student_faces is not None:
            from babyemo.faces import CropSpec

            crop = CropSpec(margin=student_faces["margin"], align=student_faces["align"])
        images = ImageFiles(u.paths, u.faces, train_ds.spec, train_transform, crop=crop,
                            augment=True, cache=cache)
    return Distillation(dataset=DistillDataset(train_ds, images, targets), targets=targets,
                        reused=reused)


class SoftTargetLoss(nn.Module):
    """The loss of a batch with soft targets: mixed labels (``--mixup``/``--cutmix``),
    unlabelled images, a teacher (``--teacher``)::

        (1 - A) * CE(soft labels) + A * T^2 * KL(teacher_T || softmax(logits / T))

    Targets are packed per image by :meth:`pack` (one-hot label, a label mass of 1 or 0,
    the teacher's probabilities at ``T``) and may be mixed before :meth:`forward`. The
    label term is the recipe's cross entropy on the label part, with its label smoothing
    and class weights, averaged over the labelled images (by their label mass; unlabelled
    images add nothing to it); on unmixed labels it equals ``nn.CrossEntropyLoss(weight,
    label_smoothing)`` of the labelled images exactly. The KD term (Hinton et al. 2015) is
    the batch mean of ``T^2 KL``; without a teacher ``A`` is 0.

    Args:
        num_classes: ``K``.
        weight: ``(K,) float32`` class weights, or ``None``.
        label_smoothing: ``epsilon`` of the label term.
        temperature: ``T`` of the KD term.
        alpha: ``A``, the weight of the KD term (used only with ``teacher``).
        teacher: Whether targets carry the teacher's probabilities.
    """

    def __init__(self, num_classes: int, *, weight: torch.Tensor | None = None,
                 label_smoothing: float = 0.0, temperature: float = 4.0, alpha: float = 0.5,
                 teacher: bool = False) -> None:
        super().__init__()
        self.num_classes, self.label_smoothing = num_classes, float(label_smoothing)
        self.temperature, self.teacher = float(temperature), teacher
        self.alpha = float(alpha) if teacher else 0.0
        self.register_buffer("weight", weight if weight is not None
                             else torch.ones(num_classes), persistent=False)

    def pack(self, labels: torch.Tensor, teacher_logits: torch.Tensor | None = None
             ) -> torch.Tensor:
        """Per-image target rows.

        Args:
            labels: ``(N,) int64`` class indices, -1 for an unlabelled image.
            teacher_logits: ``(N, K)`` teacher logits (with ``teacher``), else ``None``.

        Returns:
            ``(N, K + 1 [+ K]) float32``: the one-hot label (zeros when unlabelled), the
            label mass (1 or 0), then ``softmax(teacher_logits / T)``.
        """
        labelled = labels >= 0
        onehot = F.one_hot(labels.clamp(min=0), self.num_classes).float()
        parts = [onehot * labelled[:, None], labelled.float()[:, None]]
        if self.teacher:
            if teacher_logits is None:
                raise ValueError("SoftTargetLoss(teacher=True) needs teacher logits")
            parts.append(F.softmax(teacher_logits.float() / self.temperature, dim=1))
        return torch.cat(parts, dim=1)

    def hard_targets(self, targets: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(N,) int64`` class of the largest label share of each (mixed) target, and the
        ``(N,) bool`` mask of targets with a label share (training accuracy counts these)."""
        k = self.num_classes
        return targets[:, :k].argmax(dim=1), targets[:, k] > 0

    def forward(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """The loss of a batch.

        Args:
            logits: ``(N, K) float32`` student logits.
            targets: ``(N, K + 1 [+ K])`` rows of :meth:`pack`, possibly mixed.

        Returns:
            The scalar loss.
        """
        k, eps = self.num_classes, self.label_smoothing
        labels, mass = targets[:, :k], targets[:, k]
        loss = logits.new_zeros(())
        if self.alpha < 1:
            log_p = F.log_softmax(logits, dim=1)
            smoothed = (1 - eps) * labels + (eps / k) * mass[:, None]
            # no label share in the batch: the numerator is 0 too (no device sync to test it)
            denominator = (labels * self.weight).sum().clamp_min(1e-12)
            label_term = -(smoothed * self.weight * log_p).sum() / denominator
            loss = loss + (1 - self.alpha) * label_term
        if self.alpha > 0:
            loss = loss + self.alpha * kd_loss(logits, targets[:, k + 1:], self.temperature)
        return loss


def kd_loss(student_logits: torch.Tensor, teacher_probs: torch.Tensor,
            temperature: float) -> torch.Tensor:
    """Hinton et al.'s soft term: the batch mean of ``T^2 KL(q || softmax(z / T))``.

    Args:
        student_logits: ``(N, K)`` logits ``z``.
        teacher_probs: ``(N, K)`` teacher probabilities ``q`` at temperature ``T``
            (``softmax(teacher_logits / T)``, possibly mixed).
        temperature: ``T``.

    Returns:
        The scalar loss (0 when the student's softened probabilities are ``q``).
    """
    log_p = F.log_softmax(student_logits.float() / temperature, dim=1)
    return F.kl_div(log_p, teacher_probs, reduction="batchmean") * temperature ** 2
