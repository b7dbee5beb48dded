"""ONNX export (fp32 and int8) of a tiny trained checkpoint, and its metadata checks."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import torch

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from babyemo.checkpoint import (  # noqa: E402
    load_checkpoint,
    read_checkpoint_dict,
    weights_sha256,
)
from babyemo.config import TrainConfig  # noqa: E402
from babyemo.data.preparation.manifest import read_manifest  # noqa: E402
from babyemo.data.preparation.prepare import prepare  # noqa: E402
from babyemo.engines import OnnxEngine, TorchEngine, create_engine  # noqa: E402
from babyemo.errors import (  # noqa: E402
    ConfigError,
    ExportError,
    ManifestError,
    MissingDependencyError,
)
from babyemo.export import export_onnx, int8_path_for  # noqa: E402
from babyemo.onnx_format import OnnxMetadata  # noqa: E402
from babyemo.runtime import Runtime
from babyemo.training import train  # noqa: E402
from tests.conftest import _register_tiny_arch, make_imagefolder, subset_manifest  # noqa: E402


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """A tiny checkpoint trained on synthetic data, exported to fp32 + int8 ONNX (once)."""
    tmp = tmp_path_factory.mktemp("export")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BABYEMO_HOME", str(tmp / "home"))
        arch = _register_tiny_arch()
        root = make_imagefolder(tmp / "images", per_class=12)
        manifest = prepare(root, out=tmp / "prepared", split=(0.5, 0.25, 0.25),
                           seed=0).manifest_path
        ckpt = train(TrainConfig(data=str(manifest), arch=arch, image_size=None, epochs=2,
                                 batch_size=8, precision="fp32", out=str(tmp / "run"))
                     ).best_checkpoint
        result = export_onnx(ckpt, int8=True, quantization_images=8, batch_size=4)
    return {"tmp": tmp, "manifest": manifest, "ckpt": ckpt, "result": result,
            "images": root}


def _rewrite(ckpt: Path, out: Path, edit) -> Path:
    data = read_checkpoint_dict(ckpt)
    edit(data)
    torch.save(data, out)
    return out


def test_fp32_export_matches_torch_with_dynamic_batch(exported):
    result = exported["result"]
    ckpt = load_checkpoint(exported["ckpt"])
    assert result.onnx == exported["ckpt"].with_name("best.onnx") and result.onnx.is_file()
    assert result.max_abs_diff <= result.tolerance
    engine = OnnxEngine(result.onnx)
    assert engine.input_name == "input" and engine.precision == "fp32"
    assert isinstance(engine.session.get_inputs()[0].shape[0], str)  # dynamic batch axis
    torch_engine = TorchEngine(ckpt, device="cpu", precision="fp32")
    for n in (1, 7):
        x = torch.randn(n, 3, 24, 24, generator=torch.Generator().manual_seed(n))
        got, ref = engine.logits(x), torch_engine.logits(x)
        assert got.shape == ref.shape == (n, 3) and got.dtype == torch.float32
        assert torch.allclose(got, ref, atol=1e-4)


def test_metadata_round_trip(exported):
    import onnx

    result = exported["result"]
    ckpt = load_checkpoint(exported["ckpt"])
    props = {p.key: p.value for p in onnx.load(str(result.onnx)).metadata_props}
    meta = OnnxMetadata.from_props(props, result.onnx)
    assert meta.class_names == ckpt.class_names == ["angry", "crying", "happy"]
    assert meta.input_spec == ckpt.input_spec
    assert meta.arch == ckpt.arch and meta.int8 is False and meta.faces is None
    assert meta.weights_sha256 == weights_sha256(ckpt.state_dict)
    assert len(meta.source_checkpoint_sha256) == 64 and meta.source_checkpoint == "best.pt"
    assert meta.extra["export_check"]["max_abs_diff"] == pytest.approx(result.max_abs_diff)
    assert OnnxMetadata.from_props(meta.to_props(), "x") == meta
    q = OnnxEngine(result.int8).metadata
    assert q.int8 is True and q.class_names == meta.class_names
    cal = q.extra["int8_calibration"]
    assert cal["split"] == "train" and cal["n_images"] == 8 and cal["seed"] == 0
    assert q.extra["int8_eval"] == result.int8_eval


def test_int8_model_is_quantized_and_compared_on_val(exported):
    import onnx

    result = exported["result"]
    assert result.int8 == int8_path_for(result.onnx) == result.onnx.with_name("best.int8.onnx")
    ops = {n.op_type for n in onnx.load(str(result.int8)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    ev = result.int8_eval
    assert ev["split"] == "val" and ev["n"] == 8 and 0 <= ev["agreement"] <= 1
    for key in ("fp32_torch", "int8_onnxruntime"):
        assert set(ev[key]) == {"accuracy", "macro_f1"}
    assert ev["macro_f1_drop"] == pytest.approx(ev["fp32_torch"]["macro_f1"]
                                                - ev["int8_onnxruntime"]["macro_f1"])


def test_int8_quantization_sample_reads_only_training_images(exported, tmp_path, monkeypatch):
    import babyemo.data.loading.dataset as dataset_mod

    read: list[Path] = []
    real = dataset_mod.load_image

    def spy(path, *args, **kwargs):
        read.append(Path(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(dataset_mod, "load_image", spy)
    result = export_onnx(exported["ckpt"], out=tmp_path / "m.onnx", int8=True,
                         quantization_images=6, seed=3, eval_split=None)
    manifest = read_manifest(exported["manifest"])
    train_files = {manifest.resolve(r) for r in manifest.rows_for("train")}
    assert len(read) == 6 and set(read) <= train_files
    assert {manifest.resolve(p) for p in result.quantization["paths"]} == set(read)
    assert result.int8 == tmp_path / "m.int8.onnx" and result.int8_eval is None
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.int8.onnx", "m.onnx"]  # no temp


def test_int8_needs_the_training_manifest(exported, tmp_path):
    ckpt = _rewrite(exported["ckpt"], tmp_path / "moved.pt",
                    lambda d: d["train"].update(manifest=str(tmp_path / "gone" / "manifest.csv"),
                                                manifest_sha256="0" * 64))
    with pytest.raises(ManifestError, match="not on this machine") as e:
        export_onnx(ckpt, int8=True)
    assert "--quantization-data" in e.value.hint
    assert not (tmp_path / "moved.onnx").exists()  # refused before writing anything
    # an explicit manifest works: its train split calibrates
    result = export_onnx(ckpt, int8=True, quantization_data=exported["manifest"],
                         quantization_images=4, eval_split=None)
    assert result.quantization["manifest"] == str(exported["manifest"])


def test_predictions_of_onnxruntime_match_torch(exported):
    from babyemo.evaluation import evaluate
    from babyemo.prediction import Predictor

    files = sorted(exported["images"].rglob("*.png"))
    rows = {}
    for backend in ("torch", "onnxruntime"):
        p = Predictor(exported["ckpt"],
                      runtime=Runtime(precision="fp32", backend=backend, batch_size=5))
        rows[backend] = list(p.predict_files(files))
    assert [r.label for r in rows["torch"]] == [r.label for r in rows["onnxruntime"]]
    np.testing.assert_allclose([r.probs for r in rows["torch"]],
                               [r.probs for r in rows["onnxruntime"]], atol=1e-4)
    reports = {b: evaluate(exported["ckpt"], data=exported["manifest"], split="all",
                           runtime=Runtime(precision="fp32", backend=b))
               for b in ("torch", "onnxruntime")}
    assert (reports["torch"].y_pred == reports["onnxruntime"].y_pred).all()
    assert reports["onnxruntime"].engine["backend"] == "onnxruntime"
    assert reports["onnxruntime"].engine["onnx"].endswith("best.onnx")
    assert reports["torch"].engine == {
        "backend": "torch",
        "precision": "fp32",
        "device": "cpu",
        "tta": False,
        "whole_images": False,
    }
    int8 = evaluate(
        exported["ckpt"],
        data=exported["manifest"],
        split="val",
        runtime=Runtime(backend="onnxruntime", onnx=exported["result"].int8),
    )
    assert int8.engine["precision"] == "int8" and "int8_eval" in int8.engine


def test_mismatching_exports_are_refused(exported, tmp_path):
    onnx_file = exported["result"].onnx
    cases = {
        "class names": lambda d: d.update(class_names=["happy", "crying", "angry"]),
        "expects input": lambda d: d["input"].update(size=32),
        "other weights": lambda d: d["state_dict"].update(
            {k: v + 1 for k, v in d["state_dict"].items() if v.is_floating_point()}
        ),
    }
    for i, (words, edit) in enumerate(cases.items()):
        ckpt = load_checkpoint(_rewrite(exported["ckpt"], tmp_path / f"c{i}.pt", edit))
        with pytest.raises(ExportError) as e:
            create_engine(ckpt, backend="onnxruntime", onnx=onnx_file)
        assert words in e.value.message and "babyemo export" in e.value.hint
    # other checkpoint entries (e.g. a temperature written later) do not matter
    same = _rewrite(
        exported["ckpt"], tmp_path / "same.pt", lambda d: d.update(calibration={"temperature": 2.0})
    )
    engine = create_engine(load_checkpoint(same), backend="onnxruntime", onnx=onnx_file)
    assert engine.metadata.source_checkpoint == "best.pt"


def test_missing_and_foreign_files(exported, tmp_path):
    import onnx

    ckpt = load_checkpoint(_rewrite(exported["ckpt"], tmp_path / "alone.pt", lambda d: None))
    with pytest.raises(ExportError) as e:
        create_engine(ckpt, backend="onnxruntime")  # nothing exported beside alone.pt
    assert "alone.onnx" in e.value.message and "babyemo export" in e.value.hint
    with pytest.raises(ExportError, match="not found"):
        create_engine(ckpt, backend="onnxruntime", onnx=tmp_path / "nope.onnx")
    (tmp_path / "junk.onnx").write_bytes(b"not a model")
    with pytest.raises(ExportError, match="cannot load"):
        OnnxEngine(tmp_path / "junk.onnx")
    model = onnx.load(str(exported["result"].onnx))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "plain.onnx"))
    with pytest.raises(ExportError, match="not an ONNX file exported by babyemo"):
        OnnxEngine(tmp_path / "plain.onnx")


def test_backend_options_are_checked(exported):
    ckpt = load_checkpoint(exported["ckpt"])
    with pytest.raises(ConfigError, match="Unknown backend"):
        create_engine(ckpt, backend="tensorrt")
    with pytest.raises(ConfigError, match="torch backend"):
        create_engine(ckpt, backend="torch", onnx=exported["result"].onnx)
    with pytest.raises(ConfigError, match="CPU only"):
        create_engine(ckpt, backend="onnxruntime", device="cuda")
    with pytest.raises(ConfigError, match="torch backend only"):
        create_engine(ckpt, backend="onnxruntime", precision="bf16")


def test_missing_onnxruntime_is_a_typed_error(exported, monkeypatch):
    from babyemo.prediction import Predictor

    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import fails
    with pytest.raises(MissingDependencyError) as e:
        Predictor(exported["ckpt"], runtime=Runtime(backend="onnxruntime"))
    assert e.value.hint == "pip install 'babyemo[onnx]'"
    with pytest.raises(MissingDependencyError):
        export_onnx(exported["ckpt"])


@pytest.mark.realdata
@pytest.mark.slow
def test_int8_agrees_with_fp32_on_real_infant_photos(infant_dir, tmp_path, monkeypatch):
    """Real photos: calibrate on a fixed subset's train split, compare on its val split."""
    monkeypatch.setenv("BABYEMO_HOME", str(tmp_path / "home"))
    manifest = subset_manifest(infant_dir, tmp_path, {"train": 30, "val": 15})
    ckpt = train(
        TrainConfig(
            data=str(manifest),
            arch="skip_cnn",
            image_size=48,
            epochs=1,
            lr=3e-3,
            batch_size=16,
            out=str(tmp_path / "run"),
            seed=0,
        )
    ).best_checkpoint
    result = export_onnx(ckpt, int8=True, quantization_images=60)
    assert result.quantization["n_images"] == 60 and result.quantization["split"] == "train"
    train_paths = {r.path for r in read_manifest(manifest).rows if r.split == "train"}
    assert set(result.quantization["paths"]) <= train_paths
    ev = result.int8_eval
    assert ev["n"] == 45
    # measured on this subset: agreement 1.0 (45 of 45 labels), macro-F1 0.240 for both
    # (0.978 and 0.240 / 0.236 with full-range int8 weights, on an AVX2 CPU)
    assert ev["agreement"] >= 0.85
    assert abs(ev["macro_f1_drop"]) <= 0.15
    # not a trivial agreement: a model predicting one class has macro-F1 1/6 on 3 balanced
    # classes, so this one predicts more than one
    assert ev["fp32_torch"]["macro_f1"] > 0.17
