import pytest
import torch

from babyemo.devices import default_num_workers, resolve_device, resolve_precision
from babyemo.errors import DeviceError


def test_resolve_device_cpu_and_auto():
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto").type in ("cpu", "cuda", "mps")


@pytest.mark.skipif(torch.cuda.is_available(), reason="machine has CUDA")
def test_cuda_unavailable_is_a_clear_error():
    with pytest.raises(DeviceError, match="CUDA is not available"):
        resolve_device("cuda")
    with pytest.raises(DeviceError):
        resolve_device("cuda:1")


def test_unknown_device():
    with pytest.raises(DeviceError, match="Unknown device"):
        resolve_device("tpu7")


def test_precision_plans_on_cpu():
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu).autocast_dtype is None
    bf16 = resolve_precision("bf16", cpu)
    assert bf16.autocast_dtype is torch.bfloat16 and not bf16.grad_scaler
    assert resolve_precision("auto", cpu).name in ("bf16", "fp32")
    with pytest.raises(DeviceError, match="fp16 is not supported on the CPU"):
        resolve_precision("fp16", cpu)


def test_fp16_on_cuda_uses_grad_scaler():
    plan = resolve_precision("fp16", torch.device("cuda"))
    assert plan.autocast_dtype is torch.float16 and plan.grad_scaler


def test_workers_do_not_oversubscribe_small_cpu(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 2)
    assert default_num_workers(torch.device("cpu")) == 0
    assert default_num_workers(torch.device("cuda")) == 1


def test_set_cpu_threads_leaves_cores_for_workers_and_keeps_a_lower_user_setting(monkeypatch):
    import torch

    from babyemo.devices import set_cpu_threads

    before = torch.get_num_threads()
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    try:
        torch.set_num_threads(8)
        assert set_cpu_threads(torch.device("cpu"), 3) == 5
        assert set_cpu_threads(torch.device("cpu"), 0) == 5  # never raised above the user's
        assert set_cpu_threads(torch.device("cpu"), 20) == 1
        torch.set_num_threads(8)
        assert set_cpu_threads(torch.device("meta"), 3) == 8  # not the CPU: untouched
    finally:
        torch.set_num_threads(before)


def test_a_cuda_build_without_a_gpu_says_what_was_found(monkeypatch):
    """Issue 12: the hint said "install a CUDA build" to a user who had one."""
    monkeypatch.setattr(torch.version, "cuda", "13.0")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 0)
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    with pytest.raises(DeviceError) as err:
        resolve_device("cuda")
    assert "built for CUDA 13.0" in err.value.message
    assert "torch.cuda.device_count() is 0" in err.value.message
    assert "install" not in err.value.hint and "nvidia-smi" in err.value.hint
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    with pytest.raises(DeviceError) as err:
        resolve_device("cuda")
    assert "CUDA_VISIBLE_DEVICES is ''" in err.value.hint
    monkeypatch.setattr(torch.version, "cuda", None)
    with pytest.raises(DeviceError) as err:
        resolve_device("cuda")
    assert "CPU-only build" in err.value.message and "install a CUDA build" in err.value.hint


# --- the CUDA path, tested here without a GPU: only the device checks are replaced ---

def test_auto_precision_on_cuda_is_bf16_where_the_gpu_has_it_else_fp16_with_a_scaler(
        monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    plan = resolve_precision("auto", cuda)
    assert (plan.name, plan.autocast_dtype, plan.grad_scaler) == ("bf16", torch.bfloat16, False)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    plan = resolve_precision("auto", cuda)
    assert (plan.name, plan.autocast_dtype, plan.grad_scaler) == ("fp16", torch.float16, True)
    with pytest.raises(DeviceError, match="does not support bf16"):
        resolve_precision("bf16", cuda)


def test_worker_counts_are_sized_for_the_machine_and_its_processes():
    cuda, cpu = torch.device("cuda"), torch.device("cpu")
    assert default_num_workers(cuda, cores=16) == 4
    assert default_num_workers(cuda, cores=16, processes=8) == 1  # 2 cores per GPU process
    assert default_num_workers(cuda, cores=16, processes=4) == 3
    assert default_num_workers(cuda, cores=1) == 1
    assert default_num_workers(cpu, cores=16) == 4
    assert default_num_workers(cpu, cores=16, processes=4) == 0  # 4 cores each: decode inline
    assert default_num_workers(cpu, cores=2) == 0


def test_set_cpu_threads_shares_the_cores_between_processes(monkeypatch):
    from babyemo.devices import set_cpu_threads

    before = torch.get_num_threads()
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    try:
        torch.set_num_threads(8)
        assert set_cpu_threads(torch.device("cpu"), 0, processes=2) == 4
        torch.set_num_threads(8)
        assert set_cpu_threads(torch.device("cpu"), 1, processes=4) == 1
    finally:
        torch.set_num_threads(before)


def test_configure_backends_turns_on_cudnn_benchmark_and_tf32_for_cuda_only():
    from babyemo.devices import configure_backends

    saved = (torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32,
             torch.get_float32_matmul_precision())
    try:
        torch.backends.cudnn.benchmark = False
        torch.set_float32_matmul_precision("highest")
        configure_backends(torch.device("cpu"))
        assert not torch.backends.cudnn.benchmark
        assert torch.get_float32_matmul_precision() == "highest"
        configure_backends(torch.device("cuda"))
        assert torch.backends.cudnn.benchmark and torch.backends.cudnn.allow_tf32
        assert torch.get_float32_matmul_precision() == "high"
    finally:
        torch.backends.cudnn.benchmark, torch.backends.cudnn.allow_tf32 = saved[:2]
        torch.set_float32_matmul_precision(saved[2])
