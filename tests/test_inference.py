"""The inference seam: one place turns a model and images into logits and probabilities."""

import numpy as np
import pytest
import torch

from babyemo.checkpoint import load_checkpoint
from babyemo.data.preparation.manifest import read_manifest
from babyemo.engines import TorchEngine
from babyemo.errors import ConfigError
from babyemo.inference import (
    InferenceModel,
    calibrate_on_dataset,
    checkpoint_dataset,
    probabilities,
)
from babyemo.runtime import Runtime


def test_probs_are_the_softmax_of_the_engines_logits_over_the_temperature(checkpoint):
    from babyemo.prediction import Predictor

    ckpt = load_checkpoint(checkpoint)
    ckpt.raw["calibration"] = {"temperature": 0.5, "fitted_on": "val"}
    model = InferenceModel(ckpt, Runtime(device="cpu", precision="fp32"))
    assert isinstance(model.engine, TorchEngine) and model.engine.plan.name == "fp32"
    x = torch.randint(0, 255, (3, 3, 24, 24), dtype=torch.uint8)
    expected = torch.softmax(model.engine.logits(x) / 0.5, dim=1)
    assert torch.allclose(model.probs(x), expected)
    assert np.allclose(probabilities(model.logits(x).numpy(), 0.5), expected.numpy(), atol=1e-6)
    # prediction runs the same seam
    predictor = Predictor(checkpoint, runtime=Runtime(device="cpu", precision="fp32"))
    assert isinstance(predictor.model, InferenceModel)
    assert torch.allclose(predictor.predict_tensor(x), predictor.model.probs(x))


def test_dataset_logits_are_the_same_in_any_number_of_readers_and_in_order(checkpoint,
                                                                           prepared):
    ckpt = load_checkpoint(checkpoint)
    ds = checkpoint_dataset(read_manifest(prepared), None, ckpt)  # all 36 images
    threads = torch.get_num_threads()
    calls = []

    class Recording(TorchEngine):
        def logits(self, images):
            calls.append(images.shape[0])
            return super().logits(images)

    one = InferenceModel(ckpt, Runtime(device="cpu", precision="fp32", batch_size=5, readers=1))
    three = InferenceModel(ckpt, Runtime(device="cpu", precision="fp32", batch_size=5,
                                         readers=3))
    assert (one.readers, three.readers) == (1, 3)
    three.engine = Recording(ckpt, device="cpu", precision="fp32")
    a, b = one.dataset_logits(ds), three.dataset_logits(ds)
    assert a.shape == b.shape == (len(ds), 3) and abs(a - b).max() < 1e-5
    assert sum(calls) == len(ds) and max(calls) == 5
    assert torch.get_num_threads() == threads
    order = list(three.map_batches(ds, lambda batch: batch[1].tolist()))
    assert sum(order, []) == ds.targets  # input order kept


def test_runtime_defaults_and_checks():
    assert InferenceModel.__init__.__defaults__ == (None,)
    r = Runtime()
    assert (r.device, r.precision.value, r.backend.value, r.batch_size, r.tta) == (
        "auto", "auto", "torch", 64, False)
    assert Runtime(precision="fp32").replace(batch_size=8).batch_size == 8
    for bad in ({"batch_size": 0}, {"readers": 0}, {"workers": -1}, {"precision": "fp8"},
                {"backend": "tensorrt"}):
        with pytest.raises(ConfigError):
            Runtime(**bad)


def test_calibrate_on_dataset_fits_without_writing(checkpoint, prepared):
    ckpt = load_checkpoint(checkpoint)
    before = checkpoint.read_bytes()
    ds = checkpoint_dataset(read_manifest(prepared), "val", ckpt)
    result = calibrate_on_dataset(InferenceModel(ckpt, Runtime(precision="fp32")), ds)
    assert result.n == len(ds) and result.temperature > 0 and result.checkpoint is None
    assert checkpoint.read_bytes() == before
