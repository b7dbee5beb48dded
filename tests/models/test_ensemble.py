"""Ensembles as models (issue 15): trained checkpoints combined into one checkpoint that
evaluate, predict, calibrate, export and the model card take like any other."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from babyemo.checkpoint import load_checkpoint, save_checkpoint, write_calibration
from babyemo.config import InputSpec
from babyemo.errors import ConfigError, DataError, RegistryError
from babyemo.fs import sha256_file
from babyemo.inference import InferenceModel
from babyemo.models import store
from babyemo.models.ensemble import ARCH, build_ensemble, members_of, read_oof, refuse_as_init
from babyemo.models.registry import check_arch_name, create_model, get_arch, list_archs
from babyemo.runtime import Runtime
from tests.conftest import make_imagefolder

CLASSES = ["angry", "crying", "happy"]
GRAY_ARCH = "tiny_test_gray_cnn"
CPU = Runtime(device="cpu", precision="fp32", readers=1, workers=0)


def _register_gray_arch() -> str:
    """A tiny one-channel CNN (the tiny test arch of conftest is RGB)."""
    from torch import nn

    from babyemo.models import registry

    if GRAY_ARCH not in {a.name for a in registry.list_archs()}:
        @registry.register_arch(GRAY_ARCH, default_input=InputSpec(size=24, channels=1,
                                                                    mean=(0.5,), std=(0.5,)),
                                description="tiny grayscale test CNN")
        def _build(*, num_classes: int, in_channels: int, pretrained: bool = False) -> nn.Module:
            return nn.Sequential(nn.Conv2d(in_channels, 6, 3, padding=1), nn.BatchNorm2d(6),
                                 nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                 nn.Linear(6, num_classes))
    return GRAY_ARCH


def make_member(path: Path, arch: str, classes=CLASSES, *, size: int = 24, seed: int = 0,
                temperature: float | None = None, faces: dict | None = None,
                manifest: Path | None = None, **arch_kwargs) -> Path:
    """A checkpoint of ``arch`` with seeded random weights (distinct members without
    training), optionally calibrated and recording a training manifest."""
    model = create_model(arch, num_classes=len(classes), **arch_kwargs)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.5)
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.copy_(torch.randn(m.num_features, generator=gen) * 0.1)
                m.running_var.copy_(torch.rand(m.num_features, generator=gen) + 0.5)
    channels = get_arch(arch).default_input.channels
    train = {}
    if manifest is not None:
        train = {"manifest": str(manifest.resolve()), "manifest_sha256": sha256_file(manifest),
                 "dataset": "synthetic", "n_train": 18,
                 "config": {"train_splits": ["train"], "seed": seed}}
    save_checkpoint(path, model=model, arch=arch, arch_kwargs=arch_kwargs,
                    class_names=list(classes),
                    input_spec=InputSpec(size=size, channels=channels, mean=(0.5,) * channels,
                                         std=(0.25,) * channels),
                    train=train, metrics={"epoch": 3, "val": {"macro_f1": 0.5 + seed / 100}},
                    faces=faces)
    if temperature is not None:
        write_calibration(path, {"temperature": temperature, "fitted_on": "val", "n": 9})
    return path


@pytest.fixture
def members(tmp_path: Path, tiny_arch: str) -> dict[str, Path]:
    """Three members: other class orders, temperatures, widths, input sizes and channels."""
    gray = _register_gray_arch()
    return {
        "a": make_member(tmp_path / "a.pt", tiny_arch, size=32, seed=1, temperature=1.5),
        "b": make_member(tmp_path / "b.pt", tiny_arch, ["happy", "angry", "crying"], size=32,
                         seed=2, temperature=0.7, width=4),
        "c": make_member(tmp_path / "c.pt", gray, ["crying", "happy", "angry"], size=24,
                         seed=3),
    }


def _images(n: int = 6, size: int = 32) -> list[Image.Image]:
    """Smooth seeded RGB images (the ensemble's input size)."""
    rng = np.random.default_rng(0)
    out = []
    for _ in range(n):
        small = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        out.append(Image.fromarray(small).resize((size, size), Image.BILINEAR))
    return out


def _probs(model: InferenceModel, images: list[Image.Image]) -> torch.Tensor:
    """The model's probabilities of PIL images, read as its own pipeline reads them, in
    the ensemble's class order."""
    mode = "RGB" if model.input_spec.channels == 3 else "L"
    x = torch.stack([model.transform(img.convert(mode)) for img in images])
    p = model.probs(x)
    return p[:, [model.class_names.index(c) for c in CLASSES]]


def test_ensemble_probabilities_are_the_mean_of_the_members_tempered_probabilities(
        members, tmp_path):
    a, b, c = (store.load(checkpoint=members[k]) for k in "abc")
    images = _images()
    # same input size and channels: exactly the mean (class order mapped by name)
    two = build_ensemble([a, b], tmp_path / "ab.pt")
    expected = (_probs(InferenceModel(a, CPU), images) + _probs(InferenceModel(b, CPU), images)) / 2
    got = _probs(InferenceModel(two, CPU), images)
    assert torch.allclose(got, expected, atol=1e-5)
    assert not torch.allclose(expected, _probs(InferenceModel(a, CPU), images), atol=1e-2)
    # a grayscale 24 px member: resized and converted inside (up to uint8 rounding)
    three = build_ensemble([a, b, c], tmp_path / "abc.pt")
    parts = [_probs(InferenceModel(m, CPU), images) for m in (a, b, c)]
    got = _probs(InferenceModel(three, CPU), images)
    assert torch.allclose(got, sum(parts) / 3, atol=1e-3)
    assert three.input_spec == InputSpec(32, 3, (0.0,) * 3, (1.0,) * 3)
    assert three.class_names == CLASSES and three.temperature == 1.0
    # self-describing: plain types and tensors, members' weights under members.<i>.
    raw = torch.load(tmp_path / "abc.pt", weights_only=True)
    assert raw["arch"] == ARCH and len(raw["arch_kwargs"]["members"]) == 3
    assert {k.split(".")[1] for k in raw["state_dict"]} == {"0", "1", "2"}
    assert torch.equal(raw["state_dict"]["members.1.5.weight"], b.state_dict["5.weight"])
    member = raw["arch_kwargs"]["members"][1]
    assert member == {"arch": b.arch, "arch_kwargs": {"width": 4}, "input": b.input_spec.to_dict(),
                      "temperature": 0.7, "class_names": ["happy", "angry", "crying"]}
    records = members_of(three)
    assert [r["name"] for r in records] == ["a", "b", "c"]
    assert records[2]["sha256"] == sha256_file(members["c"]) and records[0]["temperature"] == 1.5


def test_an_ensemble_can_be_a_member(members, tmp_path):
    a, b, c = (store.load(checkpoint=members[k]) for k in "abc")
    inner = build_ensemble([a, b], tmp_path / "ab.pt")
    write_calibration(inner.path, {"temperature": 2.0, "fitted_on": "val"})
    inner = store.load(checkpoint=inner.path)
    outer = build_ensemble([inner, c], tmp_path / "outer.pt")
    images = _images(3)
    expected = (_probs(InferenceModel(inner, CPU), images) + _probs(InferenceModel(c, CPU),
                                                                     images)) / 2
    assert torch.allclose(_probs(InferenceModel(outer, CPU), images), expected, atol=5e-3)


def test_torch_engine_folds_the_members_and_runs_in_bf16(members, tmp_path):
    ens = build_ensemble([store.load(checkpoint=p) for p in members.values()], tmp_path / "e.pt")
    x = torch.stack([InferenceModel(ens, CPU).transform(img) for img in _images(4)])
    fp32 = InferenceModel(ens, CPU)
    reference = ens.build_model("cpu")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fp32.engine.model.modules())
    with torch.inference_mode():
        plain = reference(x.float() / 255)
    assert torch.allclose(fp32.logits(x), plain, atol=1e-5)
    bf16 = InferenceModel(ens, Runtime(device="cpu", precision="bf16", readers=1, workers=0))
    assert bf16.engine.precision == "bf16"
    assert torch.allclose(bf16.probs(x), fp32.probs(x), atol=3e-2)


@pytest.fixture
def ensemble_on_data(prepared: Path, tiny_arch: str, tmp_path: Path) -> Path:
    """An ensemble of two members that record the same training manifest."""
    a = make_member(tmp_path / "m1.pt", tiny_arch, seed=4, temperature=1.2, manifest=prepared)
    b = make_member(tmp_path / "m2.pt", tiny_arch, ["happy", "crying", "angry"], size=32,
                    seed=5, manifest=prepared)
    ens = build_ensemble([store.load(checkpoint=a), store.load(checkpoint=b)],
                         tmp_path / "ens.pt", name="ens")
    return ens.path


def test_evaluate_predict_and_calibrate_an_ensemble(ensemble_on_data, prepared, tmp_path):
    from babyemo.evaluation import evaluate
    from babyemo.evaluation.calibration import calibrate_checkpoint
    from babyemo.prediction import Predictor, predict_to_files

    ens = load_checkpoint(ensemble_on_data)
    assert ens.train["manifest"] == str(prepared.resolve())  # shared: evaluate finds it
    assert ens.train["config"] == {"train_splits": ["train"]}
    assert store.get_trained("ens")["arch"] == ARCH
    report = evaluate(model="ens", split="test", out=tmp_path / "eval", runtime=CPU)
    assert report.probs.shape == (len(report.y_true), 3)
    assert np.allclose(report.probs.sum(1), 1, atol=1e-5)
    assert 0 <= report.metrics["accuracy"] <= 1
    with open(tmp_path / "eval" / "predictions.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == len(report.y_true) and {f"prob_{c}" for c in CLASSES} <= set(rows[0])

    folder = make_imagefolder(tmp_path / "photos", per_class=2)
    predictor = Predictor(ensemble_on_data, runtime=CPU)
    result = predict_to_files([folder], predictor, csv_out=tmp_path / "pred.csv")
    with open(tmp_path / "pred.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert result.n_files == len(rows) == 6 and all(r["label"] in CLASSES for r in rows)
    assert all(abs(sum(float(r[f"prob_{c}"]) for c in CLASSES) - 1) < 1e-3 for r in rows)

    fitted = calibrate_checkpoint(model="ens", split="val", runtime=CPU)
    assert fitted.checkpoint == ensemble_on_data
    assert load_checkpoint(ensemble_on_data).temperature == pytest.approx(fitted.temperature)
    with pytest.raises(ConfigError, match="trained on the 'train' split"):
        calibrate_checkpoint(model="ens", split="train", runtime=CPU)  # a member trained on it


def test_oof_fits_the_ensemble_temperature(members, tmp_path):
    a, b = (store.load(checkpoint=members[k]) for k in "ab")
    rng = np.random.default_rng(0)
    oof = tmp_path / "oof.csv"
    with open(oof, "w", newline="") as f:  # overconfident: 60% right at confidence 0.98
        w = csv.writer(f)
        w.writerow(["path", "true", "label", "confidence", "prob_happy", "prob_angry",
                    "prob_crying", "fold", "error", "error_detail"])
        for i in range(200):
            true = CLASSES[i % 3]
            pred = true if rng.random() < 0.6 else CLASSES[(i + 1) % 3]
            p = {c: (0.98 if c == pred else 0.01) for c in CLASSES}
            w.writerow([f"img{i}.png", true, pred, "0.98", p["happy"], p["angry"], p["crying"],
                        i % 5, "", ""])
        w.writerow(["broken.png", "happy", "", "", "", "", "", 0, "truncated", "cut"])
    ens = build_ensemble([a, b], tmp_path / "e.pt", oof=oof)
    cal = ens.calibration
    assert cal["fitted_on"] == "out-of-fold" and cal["n"] == 200
    assert cal["temperature"] > 1.5 and cal["ece_after"] < cal["ece_before"]
    assert cal["file"] == "oof.csv" and cal["file_sha256"] == sha256_file(oof)
    assert ens.metrics["out_of_fold"]["n"] == 200
    assert 0.5 < ens.metrics["out_of_fold"]["accuracy"] < 0.7
    probs, labels = read_oof(oof, CLASSES)
    assert probs.shape == (200, 3) and labels[:3].tolist() == [0, 1, 2]


@pytest.mark.slow
def test_export_to_one_onnx_graph_fp32_and_int8(prepared, tiny_arch, tmp_path):
    pytest.importorskip("onnxruntime")
    from babyemo.engines import OnnxEngine, TorchEngine
    from babyemo.export import export_onnx

    gray = _register_gray_arch()
    parts = [make_member(tmp_path / "m1.pt", tiny_arch, size=32, seed=1, manifest=prepared),
             make_member(tmp_path / "m2.pt", gray, ["happy", "crying", "angry"], seed=2,
                         temperature=0.8, manifest=prepared)]
    ens = build_ensemble([store.load(checkpoint=p) for p in parts], tmp_path / "e.pt")
    result = export_onnx(ens.path, int8=True, quantization_images=8, batch_size=4)
    assert result.max_abs_diff <= result.tolerance
    x = torch.stack([InferenceModel(ens, CPU).transform(img) for img in _images(5)])
    onnx = OnnxEngine(result.onnx)
    assert onnx.metadata.arch == ARCH and onnx.metadata.input_spec == ens.input_spec
    assert torch.allclose(onnx.logits(x), TorchEngine(ens, device="cpu", precision="fp32")
                          .logits(x), atol=1e-4)
    ort = InferenceModel(ens, Runtime(backend="onnxruntime", readers=1, workers=0))
    assert torch.allclose(ort.probs(x), InferenceModel(ens, CPU).probs(x), atol=1e-4)
    # int8: quantized on the members' shared training manifest, compared with fp32 on val
    assert result.int8 is not None and result.int8_eval["n"] > 0
    int8 = OnnxEngine(result.int8)
    assert int8.precision == "int8" and int8.logits(x).shape == (5, 3)


def test_refused_combinations(members, tmp_path, tiny_arch):
    a, b = (store.load(checkpoint=members[k]) for k in "ab")
    other = store.load(checkpoint=make_member(tmp_path / "o.pt", tiny_arch,
                                              ["angry", "crying", "sad"]))
    with pytest.raises(ConfigError, match="classes"):
        build_ensemble([a, other], tmp_path / "e.pt")
    faces = {"detector": "yunet", "margin": 0.25, "align": True}
    cropped = store.load(checkpoint=make_member(tmp_path / "f.pt", tiny_arch, faces=faces))
    with pytest.raises(ConfigError, match="face crops") as info:
        build_ensemble([a, cropped], tmp_path / "e.pt")
    assert "--face-margin" in info.value.hint
    with pytest.raises(ConfigError, match="at least 2"):
        build_ensemble([a], tmp_path / "e.pt")
    with pytest.raises(ConfigError, match="more than once"):
        build_ensemble([a, store.load(checkpoint=members["a"])], tmp_path / "e.pt")
    with pytest.raises(ConfigError):  # the output is a member
        build_ensemble([a, b], members["a"])
    with pytest.raises(ConfigError, match="not an ensemble checkpoint"):
        build_ensemble([a, b], cropped.path)  # another model's file is never replaced
    bad = tmp_path / "bad.csv"
    bad.write_text("path,true,prob_angry,prob_crying\nx.png,angry,0.5,0.5\n")
    with pytest.raises(DataError, match="prob_<class>"):
        build_ensemble([a, b], tmp_path / "e.pt", oof=bad)
    assert not (tmp_path / "e.pt").exists()  # nothing written by a refused build
    store.register_trained("taken", members["c"])
    with pytest.raises(RegistryError, match="already exists"):
        build_ensemble([a, b], tmp_path / "e.pt", name="taken")


def test_an_ensemble_is_assembled_not_trained(members, tmp_path):
    assert ARCH not in {i.name for i in list_archs()}
    assert ARCH in {i.name for i in list_archs(composite=True)}
    assert not get_arch(ARCH).trainable
    with pytest.raises(ConfigError, match="not an architecture to train"):
        check_arch_name(ARCH)
    with pytest.raises(ConfigError, match="assembled") as info:
        create_model(ARCH, num_classes=3)
    assert "babyemo models ensemble" in info.value.hint
    ens = build_ensemble([store.load(checkpoint=members[k]) for k in "ab"], tmp_path / "e.pt")
    with pytest.raises(ConfigError, match="fine-tuned from an ensemble") as info:
        refuse_as_init(ens)
    assert str(members["a"].resolve()) in info.value.hint
    refuse_as_init(store.load(checkpoint=members["a"]))  # a single model is a fine donor
    from babyemo.config import TrainConfig
    from babyemo.training.finetune import resolve_init

    spec = store.load(checkpoint=members["a"]).input_spec
    with pytest.raises(ConfigError, match="fine-tuned from an ensemble"):  # train --init
        resolve_init(TrainConfig(init=str(tmp_path / "e.pt")), spec)
    assert resolve_init(TrainConfig(init=str(members["a"])), spec) is not None


def test_model_card_describes_the_members(members, tmp_path):
    from babyemo.card import checkpoint_facts, model_card

    ens = build_ensemble([store.load(checkpoint=members[k]) for k in "abc"], tmp_path / "e.pt",
                         name="cv3")
    text = model_card(ens, "cv3")
    assert "`ensemble` of 3 members" in text and "## Ensemble members" in text
    table = text.split("## Ensemble members")[1].split("## Intended use")[0]
    assert all(f"| {k} |" in table for k in "abc") and "| 0.700 |" in table
    assert "Recipe:" not in text
    assert checkpoint_facts(ens.path)["arch"] == ARCH


def test_fold_models_record_their_parent_manifest(prepared, tiny_arch, tmp_path):
    """The fold models of a cross-validation each train on a fold manifest of one parent:
    the ensemble records the parent, whose train and val splits every image of trained
    some member (evaluate warns, calibrate refuses), and each member's fold."""
    import json
    import shutil

    from babyemo.evaluation.calibration import calibrate_checkpoint

    parent_sha = sha256_file(prepared)
    members = []
    for k in (1, 2):
        folder = tmp_path / "manifests" / f"fold-{k}"
        folder.mkdir(parents=True)
        shutil.copy(prepared, folder / "manifest.csv")
        info = json.loads((prepared.parent / "dataset.json").read_text())
        info["folds"] = {"parent": str(prepared.resolve()), "parent_sha256": parent_sha,
                         "folds": 2, "fold": k, "seed": 0}
        (folder / "dataset.json").write_text(json.dumps(info))
        members.append(store.load(checkpoint=make_member(
            tmp_path / f"fold-{k}.pt", tiny_arch, seed=k, manifest=folder / "manifest.csv")))
    ens = build_ensemble(members, tmp_path / "cv.pt")
    assert ens.train["manifest"] == str(prepared.resolve())
    assert ens.train["manifest_sha256"] == parent_sha
    assert ens.train["config"] == {"train_splits": ["train", "val"]}
    assert ens.train["cv"]["members_folds"] == [1, 2]
    assert [m["fold"] for m in members_of(ens)] == [1, 2]
    with pytest.raises(ConfigError, match="trained on the 'val' split"):
        calibrate_checkpoint(ens.path, split="val", runtime=CPU)
    assert calibrate_checkpoint(ens.path, split="test", runtime=CPU, write=False).n > 0
