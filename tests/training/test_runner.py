"""The training passes' GPU path, run on the CPU: fp16 autocast with a gradient scaler,
pinned-memory loaders on CUDA, and a process's share of a distributed epoch."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.utils.data import DistributedSampler, TensorDataset

from babyemo.config import InputSpec, TrainConfig
from babyemo.devices import PrecisionPlan
from babyemo.training.runner import Runner, make_loader

SPEC = InputSpec(size=8, channels=3, mean=(0.5,) * 3, std=(0.5,) * 3)


def _data(n: int = 32) -> TensorDataset:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(n) % 2
    x = torch.rand(n, 3, 8, 8, generator=g) * 0.2 + y[:, None, None, None] * 0.8
    return TensorDataset(x, y)


def _model() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 2))


def test_fp16_training_scales_the_loss_with_a_grad_scaler():
    """The plan CUDA fp16 gets (resolve_precision), run on the CPU: autocast to float16 and
    torch.amp.GradScaler for the device, whose scale is applied and kept across steps."""
    plan = PrecisionPlan("fp16", torch.float16, grad_scaler=True)
    model = _model().to(memory_format=torch.channels_last)
    runner = Runner(model, torch.device("cpu"), plan, nn.CrossEntropyLoss(), SPEC)
    assert isinstance(runner.scaler, torch.amp.GradScaler) and runner.scaler.is_enabled()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    before = [p.detach().clone() for p in model.parameters()]
    loader = make_loader(_data(), TrainConfig(batch_size=8, num_workers=0),
                         torch.device("cpu"), shuffle=True)
    stats = runner.train_epoch(loader, optimizer, "fp16")
    assert stats["n"] == 32 and torch.isfinite(torch.tensor(stats["train_loss"]))
    assert runner.scaler.get_scale() > 1  # the loss was scaled (65536 unless it overflowed)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert "scale" in runner.scaler.state_dict()  # saved in last.pt for --resume


def test_fp32_and_bf16_train_without_a_scaler():
    for plan in (PrecisionPlan("fp32", None, False), PrecisionPlan("bf16", torch.bfloat16, False)):
        runner = Runner(_model(), torch.device("cpu"), plan, nn.CrossEntropyLoss(), SPEC)
        assert runner.scaler is None


def test_loaders_pin_memory_for_cuda_only():
    config = TrainConfig(batch_size=8, num_workers=0)
    assert make_loader(_data(), config, torch.device("cuda"), shuffle=False).pin_memory
    assert not make_loader(_data(), config, torch.device("cpu"), shuffle=False).pin_memory


@pytest.mark.parametrize("rank", [0, 1])
def test_a_distributed_sampler_gives_each_process_its_half_in_full_batches(rank):
    data = _data(34)
    sampler = DistributedSampler(data, num_replicas=2, rank=rank, shuffle=True, seed=0,
                                 drop_last=True)
    sampler.set_epoch(3)
    loader = make_loader(data, TrainConfig(batch_size=8, num_workers=0), torch.device("cpu"),
                         shuffle=True, sampler=sampler)
    sizes = [len(y) for _, y in loader]
    assert sizes == [8, 8]  # 17 images each, the incomplete batch dropped on every rank
    other = DistributedSampler(data, num_replicas=2, rank=1 - rank, shuffle=True, seed=0,
                               drop_last=True)
    other.set_epoch(3)
    assert not set(sampler) & set(other)  # disjoint shares
