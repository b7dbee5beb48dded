"""The inference-engine seam: TorchEngine, the ONNX file lookup, the weights digest."""

from __future__ import annotations

import pytest
import torch

from babyemo.checkpoint import weights_sha256
from babyemo.engines import (
    BACKENDS,
    Engine,
    FlipTTA,
    TorchEngine,
    available_cores,
    create_engine,
    import_onnxruntime,
)
from babyemo.errors import ExportError, MissingDependencyError
from babyemo.onnx_format import find_onnx, onnx_paths


def test_torch_engine_returns_float32_cpu_logits(checkpoint):
    from babyemo.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    engine = create_engine(ckpt, device="cpu", precision="fp32")
    assert isinstance(engine, TorchEngine) and engine.backend == "torch"
    assert engine.describe() == "torch cpu fp32" and engine.channels_last
    x = torch.randn(4, 3, 24, 24)
    out = engine.logits(x)
    assert out.shape == (4, 3) and out.dtype == torch.float32 and out.device.type == "cpu"
    ref = ckpt.build_model("cpu")(x)
    assert torch.allclose(out, ref, atol=1e-5)
    # bf16 autocast where the CPU has it: still float32 logits, close to fp32
    try:
        bf16 = TorchEngine(ckpt, device="cpu", precision="bf16")
    except Exception:  # a CPU without bf16 support
        return
    assert bf16.logits(x).dtype == torch.float32


def test_onnx_file_names_and_lookup(tmp_path):
    ckpt = tmp_path / "best.pt"
    fp32, int8 = onnx_paths(ckpt)
    assert (fp32.name, int8.name) == ("best.onnx", "best.int8.onnx")
    with pytest.raises(ExportError) as e:
        find_onnx(ckpt)
    assert "best.onnx" in e.value.message and "--onnx" in e.value.hint
    int8.write_bytes(b"")
    assert find_onnx(ckpt) == int8
    fp32.write_bytes(b"")
    assert find_onnx(ckpt) == fp32  # fp32 first: it is the exact model


def test_weights_digest_depends_on_weights_only():
    a = {"w": torch.arange(6, dtype=torch.float32).reshape(2, 3), "n": torch.tensor(3)}
    b = {"n": torch.tensor(3), "w": torch.arange(6, dtype=torch.float32).reshape(2, 3)}
    assert weights_sha256(a) == weights_sha256(b)
    assert weights_sha256(a) != weights_sha256({**a, "w": a["w"].reshape(3, 2)})
    assert weights_sha256(a) != weights_sha256({**a, "w": a["w"] + 1})
    assert weights_sha256(a) != weights_sha256({**a, "w": a["w"].to(torch.bfloat16)})


def test_backends_and_cores(monkeypatch):
    assert BACKENDS == ("torch", "onnxruntime")
    assert 1 <= available_cores() <= (__import__("os").cpu_count() or 1)
    import sys

    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependencyError) as e:
        import_onnxruntime()
    assert "onnxruntime" in e.value.message and "babyemo[onnx]" in e.value.hint


class _LeftRight(Engine):
    """Logits that tell a left-bright image from a right-bright one."""

    backend, device, precision = "torch", torch.device("cpu"), "fp32"

    def __init__(self):
        self.calls = []

    def logits(self, images):
        self.calls.append(images.shape[0])
        x = images.float()
        half = x.shape[-1] // 2
        left, right = x[..., :half].mean((1, 2, 3)), x[..., half:].mean((1, 2, 3))
        return torch.stack([left, right, left - right], dim=1)


def test_flip_tta_averages_image_and_mirror_in_one_pass():
    inner = _LeftRight()
    tta = FlipTTA(inner)
    x = torch.zeros(3, 3, 8, 8, dtype=torch.uint8)
    x[..., :4] = 200  # bright on the left
    out = tta.logits(x)
    assert inner.calls == [6]  # the batch and its mirror, in one call
    plain, mirrored = _LeftRight().logits(x), _LeftRight().logits(x.flip(-1))
    assert torch.allclose(out, (plain + mirrored) / 2)
    assert torch.allclose(out[:, 2], torch.zeros(3))  # left-right difference cancels out
    assert tta.describe().endswith("+flip TTA") and tta.backend == "torch"


def test_create_engine_wraps_in_tta_on_request(checkpoint):
    from babyemo.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    engine = create_engine(ckpt, device="cpu", precision="fp32", tta=True)
    assert isinstance(engine, FlipTTA) and isinstance(engine.inner, TorchEngine)
    assert engine.plan is engine.inner.plan
    x = torch.randint(0, 255, (2, 3, 24, 24), dtype=torch.uint8)
    expected = (engine.inner.logits(x) + engine.inner.logits(x.flip(-1))) / 2
    assert torch.allclose(engine.logits(x), expected, atol=1e-5)


def _with_random_batchnorm_stats(model: torch.nn.Module) -> torch.nn.Module:
    """Eval-mode model whose batch norms are far from identity (so folding shows)."""
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.rand(n, generator=gen) - 0.5)
                m.running_var.copy_(torch.rand(n, generator=gen) + 0.5)
                m.weight.copy_(torch.rand(n, generator=gen) + 0.5)
                m.bias.copy_(torch.rand(n, generator=gen) - 0.5)
    return model.eval()


def _batchnorms(model: torch.nn.Module) -> int:
    return sum(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())


@pytest.mark.parametrize("arch", ["custom_resnet", "skip_cnn", "vgg_fer", "cnn3", "resnet18",
                                  "mobilenet_v3_small", "efficientnet_b0"])
def test_fold_batchnorm_keeps_the_logits_and_removes_the_batchnorms(arch):
    import copy

    from babyemo.engines import fold_batchnorm
    from babyemo.models.registry import create_model, get_arch

    spec = get_arch(arch).default_input
    model = _with_random_batchnorm_stats(create_model(arch, num_classes=3))
    reference = copy.deepcopy(model)
    x = torch.randn(2, spec.channels, spec.size, spec.size, generator=torch.Generator()
                    .manual_seed(1))
    folded = fold_batchnorm(model)
    with torch.inference_mode():
        expected, out = reference(x), folded(x)
    assert out.shape == expected.shape == (2, 3)
    assert torch.allclose(out, expected, rtol=1e-4, atol=1e-4)
    assert _batchnorms(folded) == 0  # every batch norm of these archs follows a conv/linear


def test_fold_batchnorm_keeps_a_batchnorm_whose_conv_output_is_used_twice():
    from babyemo.engines import fold_batchnorm

    class Branch(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
            self.bn = torch.nn.BatchNorm2d(4)

        def forward(self, x):
            y = self.conv(x)
            return self.bn(y) + y  # folding bn into conv would change the second use

    model = _with_random_batchnorm_stats(Branch())
    x = torch.randn(2, 3, 8, 8)
    with torch.inference_mode():
        expected = model(x)
        folded = fold_batchnorm(model)
        assert torch.allclose(folded(x), expected, atol=1e-6)
    assert _batchnorms(folded) == 1


def test_fold_batchnorm_refuses_a_model_in_training_mode():
    from babyemo.engines import fold_batchnorm

    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(model)


def test_torch_engine_runs_the_folded_model(checkpoint):
    from babyemo.checkpoint import load_checkpoint

    ckpt = load_checkpoint(checkpoint)
    engine = TorchEngine(ckpt, device="cpu", precision="fp32")
    assert _batchnorms(ckpt.build_model("cpu")) > 0 and _batchnorms(engine.model) == 0
