"""Distillation (issue 15, part 4): the KD loss against its formula, the teacher targets
computed once and reused on --resume, unlabelled images (unreadable ones and images
without a face skipped and counted), refused teachers and options."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image

from babyemo.checkpoint import load_checkpoint, read_checkpoint_dict
from babyemo.config import TrainConfig
from babyemo.errors import ConfigError
from babyemo.faces import Face, register_detector
from babyemo.training import distill, train
from babyemo.training.distill import (
    TEACHER_FILE,
    SoftTargetLoss,
    TeacherTargets,
    kd_loss,
    read_unlabelled,
    scan_unlabelled,
)
from tests.conftest import make_checkpoint, make_image, make_imagefolder

TWO_FACES = "test_two_faces_detector"


class _TwoFaces:
    """Two faces (the smaller one scored higher) unless the top-left pixel is white."""

    name = TWO_FACES

    def detect(self, image: Image.Image) -> list[Face]:
        if image.convert("RGB").getpixel((0, 0)) == (255, 255, 255):
            return []
        w, h = image.size
        small = Face(box=(0.0, 0.0, w * 0.3, h * 0.3), score=0.95)
        large = Face(box=(w * 0.2, h * 0.2, w * 0.6, h * 0.6), score=0.7)
        return [small, large]


register_detector(TWO_FACES, description="test: a small and a large face")(_TwoFaces)


def _config(prepared, tiny_arch, out, **kw):
    base = dict(data=str(prepared), arch=tiny_arch, image_size=None, epochs=1, batch_size=8,
                lr=0.01, precision="fp32", out=str(out), seed=1, init="none")
    base.update(kw)
    return TrainConfig(**base)


def _unlabelled(folder, n=4, white_corner=0):
    """``n`` synthetic photos (``white_corner`` of them "without a face") and a corrupt file."""
    for i in range(n):
        path = make_image(folder / f"photo_{i}.png", color=(40 + 40 * i, 90, 160), size=(40, 40))
        if i < white_corner:
            img = Image.open(path).convert("RGB")
            img.putpixel((0, 0), (255, 255, 255))
            img.save(path)
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 truncated")
    (folder / "notes.txt").write_text("not an image")
    return folder


# -- the loss -----------------------------------------------------------------------------

def test_kd_loss_is_hintons_soft_term_by_hand():
    student = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    teacher = torch.tensor([[1.0, 0.5, 0.0], [0.0, 3.0, -2.0]])
    t = 4.0
    q = torch.softmax(teacher / t, 1)
    p = torch.softmax(student / t, 1)
    by_hand = t * t * (q * (q.log() - p.log())).sum(1).mean()
    assert kd_loss(student, q, t).item() == pytest.approx(by_hand.item(), rel=1e-6)
    assert kd_loss(teacher, q, t).item() == pytest.approx(0.0, abs=1e-6)


def test_distillation_loss_is_the_formula_and_zero_when_the_student_is_the_teacher():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0], [0.0, 0.0, 3.0]])
    teacher = torch.tensor([[1.0, 0.5, 0.0], [0.0, 3.0, -2.0], [1.0, 1.0, 1.0]])
    labels = torch.tensor([0, 2, 1])
    t, a, eps = 3.0, 0.3, 0.1
    loss = SoftTargetLoss(3, label_smoothing=eps, temperature=t, alpha=a, teacher=True)
    got = loss(logits, loss.pack(labels, teacher))
    ce = F.cross_entropy(logits, labels, label_smoothing=eps)
    kl = F.kl_div(F.log_softmax(logits / t, 1), F.softmax(teacher / t, 1),
                  reduction="batchmean")
    assert got.item() == pytest.approx(((1 - a) * ce + a * t * t * kl).item(), rel=1e-6)
    only_kd = SoftTargetLoss(3, temperature=t, alpha=1.0, teacher=True)
    assert only_kd(teacher, only_kd.pack(labels, teacher)).item() == pytest.approx(0, abs=1e-6)
    assert only_kd(logits, only_kd.pack(labels, teacher)).item() > 0.01


def test_label_term_is_the_recipes_cross_entropy_with_class_weights_and_smoothing():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 3), torch.tensor([0, 1, 2, 2, 1, 0])
    weight = torch.tensor([0.5, 2.0, 1.0])
    criterion = torch.nn.CrossEntropyLoss(weight=weight, label_smoothing=0.2)
    loss = SoftTargetLoss(3, weight=weight, label_smoothing=0.2)  # no teacher: alpha is 0
    assert loss.alpha == 0
    assert loss(logits, loss.pack(labels)).item() == pytest.approx(
        criterion(logits, labels).item(), rel=1e-6)


def test_unlabelled_images_add_the_kd_term_only():
    logits = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])
    teacher = torch.tensor([[1.0, 0.5, 0.0], [0.0, 3.0, -2.0]])
    loss = SoftTargetLoss(3, temperature=2.0, alpha=0.5, teacher=True)
    labels = torch.tensor([1, -1])
    targets = loss.pack(labels, teacher)
    assert targets.shape == (2, 7) and targets[1, :4].tolist() == [0, 0, 0, 0]
    ce = F.cross_entropy(logits[:1], labels[:1])  # the labelled image only
    kl = kd_loss(logits, F.softmax(teacher / 2.0, 1), 2.0)  # both
    assert loss(logits, targets).item() == pytest.approx((0.5 * ce + 0.5 * kl).item(), rel=1e-6)
    hard, has_label = loss.hard_targets(targets)
    assert hard[0] == 1 and has_label.tolist() == [True, False]
    unlabelled_only = loss(logits[1:], targets[1:])
    assert unlabelled_only.item() == pytest.approx(0.5 * kd_loss(
        logits[1:], F.softmax(teacher[1:] / 2.0, 1), 2.0).item(), rel=1e-6)


# -- unlabelled images --------------------------------------------------------------------

def test_unlabelled_images_keep_the_largest_face_and_count_what_they_skip(tmp_path):
    folder = _unlabelled(tmp_path / "photos", n=4, white_corner=1)
    found = scan_unlabelled(str(folder))
    u = read_unlabelled(str(folder), found, TWO_FACES)
    assert u.n_files == 5 and u.n_non_images == 1  # 4 photos + the corrupt file; notes.txt
    assert u.n_unreadable == 1 and u.n_without_face == 1 and len(u.paths) == 3
    assert all(f["box"] == pytest.approx([8.0, 8.0, 24.0, 24.0]) for f in u.faces)  # largest
    whole = read_unlabelled(str(folder), found, None)
    assert len(whole.paths) == 4 and whole.faces == [None] * 4 and whole.n_without_face == 0


def test_unlabelled_needs_a_teacher(tmp_path):
    with pytest.raises(ConfigError, match="--teacher") as err:
        TrainConfig(unlabelled=str(tmp_path))
    assert "--teacher" in err.value.hint


def test_a_teacher_without_the_students_classes_is_refused_before_anything_is_written(
        prepared, tiny_arch, tmp_path):
    other = make_checkpoint(tmp_path / "other.pt", tiny_arch, classes=("angry", "happy", "sad"))
    with pytest.raises(ConfigError, match=r"does not know the classes \['crying'\]"):
        train(_config(prepared, tiny_arch, tmp_path / "run", teacher=str(other)))
    assert not (tmp_path / "run").exists()
    # more classes than the student's are fine: mapped by name
    wider = make_checkpoint(tmp_path / "wider.pt", tiny_arch,
                            classes=("sad", "happy", "crying", "angry"))
    ckpt = distill.load_teacher(str(wider), ["angry", "crying", "happy"])
    assert ckpt.class_names == ["sad", "happy", "crying", "angry"]


# -- a whole run --------------------------------------------------------------------------

def test_distillation_run_records_the_teacher_and_resume_reuses_its_targets(
        prepared, checkpoint, tiny_arch, tmp_path, monkeypatch):
    folder = _unlabelled(tmp_path / "photos", n=4)
    cfg = _config(prepared, tiny_arch, tmp_path / "student", teacher=str(checkpoint),
                  unlabelled=str(folder), distill_temperature=2.0, distill_alpha=0.7)
    result = train(cfg)
    run = result.run_dir
    info = load_checkpoint(result.best_checkpoint).train
    assert info["config"]["teacher"] == str(checkpoint.resolve())
    assert info["config"]["unlabelled"] == str(folder.resolve())
    d = info["distill"]
    assert d["teacher"]["checkpoint"] == str(checkpoint.resolve())
    assert len(d["teacher"]["sha256"]) == 64 and d["temperature"] == 2.0 and d["alpha"] == 0.7
    assert d["unlabelled"]["n_used"] == 4 and d["unlabelled"]["n_unreadable"] == 1
    assert d["n_labelled"] == info["n_train"]
    assert json.loads((run / "config.json").read_text())["distill"] == d
    # the targets: the teacher's own logits of each training image, kept in the run
    targets = TeacherTargets.load(run / TEACHER_FILE)
    assert targets.logits.shape == (info["n_train"], 3)
    assert targets.unlabelled_logits.shape == (4, 3)
    assert len(targets.unlabelled.paths) == 4
    with np.load(run / TEACHER_FILE, allow_pickle=False) as z:
        assert z["paths"].shape == (info["n_train"],)
    from babyemo.data.preparation.manifest import read_manifest
    from babyemo.inference import InferenceModel, checkpoint_dataset
    from babyemo.runtime import Runtime

    teacher_ds = checkpoint_dataset(read_manifest(prepared), "train", load_checkpoint(checkpoint))
    expected = InferenceModel(load_checkpoint(checkpoint), Runtime(device="cpu", precision="fp32")
                              ).dataset_logits(teacher_ds)
    order = [teacher_ds.rel_paths.index(p) for p in targets.paths]
    assert np.allclose(targets.logits, expected[order], atol=1e-5)
    rows = result.history
    assert 0 <= rows[0]["train_acc"] <= 1 and math.isfinite(rows[0]["train_loss"])

    # --resume reads teacher.npz: neither the teacher nor the folder is read again
    def fail(*args, **kwargs):
        raise AssertionError("the teacher ran again")

    monkeypatch.setattr(distill, "compute_teacher_targets", fail)
    monkeypatch.setattr(distill, "read_unlabelled", fail)
    monkeypatch.chdir(tmp_path)  # the same teacher and folder, given relative: no conflict
    more = train(TrainConfig(**{**cfg.to_dict(), "resume": True, "epochs": 2,
                                "teacher": str(checkpoint.relative_to(tmp_path)),
                                "unlabelled": "photos"}))
    assert [r["epoch"] for r in more.history] == [1, 2]
    assert load_checkpoint(more.best_checkpoint).train["distill"]["unlabelled"]["n_used"] == 4
    # changing the distillation on --resume is refused
    with pytest.raises(ConfigError, match="--distill-alpha"):
        train(TrainConfig(**{**cfg.to_dict(), "resume": True, "distill_alpha": 0.2}))


def test_face_crops_of_unlabelled_images_use_the_manifests_detector(tiny_arch, tmp_path):
    from babyemo.data.preparation.prepare import prepare

    root = make_imagefolder(tmp_path / "images", per_class=6, size=(40, 40))
    manifest = prepare(root, out=tmp_path / "prepared", split=(0.5, 0.25, 0.25), seed=0,
                       faces=TWO_FACES).manifest_path
    teacher = make_checkpoint(tmp_path / "teacher.pt", tiny_arch)  # whole images
    folder = _unlabelled(tmp_path / "photos", n=3, white_corner=1)
    result = train(_config(manifest, tiny_arch, tmp_path / "run", teacher=str(teacher),
                           unlabelled=str(folder), mixup=0.4))
    u = load_checkpoint(result.best_checkpoint).train["distill"]["unlabelled"]
    assert u["detector"] == TWO_FACES and u["n_used"] == 2 and u["n_without_face"] == 1
    targets = TeacherTargets.load(result.run_dir / TEACHER_FILE)
    assert [f["box"] for f in targets.unlabelled.faces] == [[8.0, 8.0, 24.0, 24.0]] * 2
    assert read_checkpoint_dict(result.last_checkpoint)["faces"]["detector"] == TWO_FACES
