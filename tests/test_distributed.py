"""babyemo.distributed: torchrun's environment, the device and backend of a process, the
no-op single-process path, error translation and the --nproc launcher."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from babyemo import distributed
from babyemo.config import LRScaling
from babyemo.errors import DeviceError, DistributedError

TORCHRUN_ENV = {"RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2",
                "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}


def test_no_torchrun_variables_is_a_single_process():
    ctx = distributed.context_from_env({})
    assert (ctx.rank, ctx.world_size, ctx.enabled, ctx.is_main) == (0, 1, False, True)
    # torchrun --nproc-per-node 1 sets WORLD_SIZE=1: still one process, nothing to join
    assert not distributed.context_from_env({**TORCHRUN_ENV, "WORLD_SIZE": "1",
                                             "RANK": "0"}).enabled


def test_torchrun_variables_give_the_process_its_place():
    ctx = distributed.context_from_env(TORCHRUN_ENV)
    assert (ctx.rank, ctx.world_size, ctx.local_rank, ctx.local_world_size) == (1, 2, 1, 2)
    assert ctx.enabled and not ctx.is_main


@pytest.mark.parametrize("change", [{"RANK": None}, {"RANK": "x"}, {"RANK": "2"},
                                    {"LOCAL_RANK": "3"}, {"LOCAL_RANK": None}])
def test_a_broken_launch_environment_is_a_clear_error(change):
    env = {**TORCHRUN_ENV, **change}
    env = {k: v for k, v in env.items() if v is not None}
    with pytest.raises(DistributedError) as e:
        distributed.context_from_env(env)
    assert "torchrun" in e.value.hint


def test_start_outside_torchrun_joins_nothing_and_helpers_are_single_process_no_ops():
    ctx, device = distributed.start("cpu", environ={})
    assert not ctx.enabled and device == torch.device("cpu")
    assert distributed.current() == ctx
    counts = torch.tensor([3, 4])
    summed = distributed.all_reduce_sum(counts)
    assert summed.dtype == torch.int64 and summed.tolist() == [3, 4]
    assert distributed.all_reduce_sum(torch.tensor([0.5])).dtype == torch.float64
    distributed.barrier()
    assert distributed.broadcast_object({"a": 1}) == {"a": 1}
    distributed.stop()  # nothing to leave


def test_process_device_takes_the_local_rank_gpu_or_the_cpu():
    ctx = distributed.context_from_env(TORCHRUN_ENV)
    assert distributed.process_device("cpu", ctx) == torch.device("cpu")
    if not torch.cuda.is_available():
        assert distributed.process_device("auto", ctx) == torch.device("cpu")
        with pytest.raises(DeviceError):
            distributed.process_device("cuda", ctx)
    for spec in ("cuda:1", "mps"):
        with pytest.raises(DistributedError, match="cannot be used by 2 processes"):
            distributed.process_device(spec, ctx)


def test_lr_scaling_rules():
    assert distributed.lr_scale("linear", 4) == 4.0
    assert distributed.lr_scale(LRScaling.none, 4) == 1.0
    assert distributed.lr_scale("linear", 1) == 1.0
    with pytest.raises(ValueError):
        distributed.lr_scale("sqrt", 4)


def test_errors_of_torch_distributed_become_one_typed_error():
    with pytest.raises(DistributedError, match="failed while training: .*Connection closed"):
        with distributed.errors_as_distributed("training"):
            raise RuntimeError("[gloo/transport/tcp/pair.cc:534] Connection closed by peer "
                               "[127.0.0.1]:1234\nmore lines")
    with pytest.raises(DistributedError, match="timed out"):
        with distributed.errors_as_distributed("summing"):
            raise torch.distributed.DistBackendError("Wait timed out after 20 seconds")
    # other errors pass through unchanged
    with pytest.raises(RuntimeError, match="shape mismatch"):
        with distributed.errors_as_distributed("training"):
            raise RuntimeError("shape mismatch")


def test_the_nproc_launcher_runs_torchrun_standalone(monkeypatch):
    cmd = distributed.torchrun_command(2, ["train", "--epochs", "1"])
    assert cmd[:3] == [sys.executable, "-m", "torch.distributed.run"]
    assert "--standalone" in cmd and "--nproc-per-node=2" in cmd
    assert cmd[-5:] == ["-m", "babyemo", "train", "--epochs", "1"]
    seen = {}

    def fake_run(args, env, check):
        seen.update(args=args, threads=env["OMP_NUM_THREADS"])
        return subprocess.CompletedProcess(args, 3)

    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(subprocess, "run", fake_run)
    assert distributed.launch(2, ["train"], cores=16) == 3  # torchrun's exit code
    assert seen["threads"] == "8" and seen["args"][-1] == "train"


def test_the_launcher_refuses_to_nest_inside_a_distributed_run(monkeypatch):
    for k, v in TORCHRUN_ENV.items():
        monkeypatch.setenv(k, v)
    with pytest.raises(DistributedError, match="--nproc"):
        distributed.launch(2, ["train"])
