"""`babyemo train` under torchrun on this CPU machine: Gloo, 2 processes, real subprocesses.

The dataset is synthetic (classes differ in colour, each image its own noise so none are
near-duplicates) and the arch the real custom_resnet at 32 px: the processes are fresh
interpreters, which do not have the test suite's tiny registered arch.
"""

from __future__ import annotations

import csv
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from babyemo.training.setup import RUN_FILES

COMMON = ["--arch", "custom_resnet", "--image-size", "32", "--init", "none", "--device", "cpu",
          "--lr", "0.003", "--lr-scaling", "none", "--dist-timeout", "60"]


@pytest.fixture(scope="module")
def noisy_manifest(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A prepared 3-class set, 40 noisy 32 px images per class (20/10/10 per split)."""
    from PIL import Image

    from babyemo.data.preparation.prepare import prepare

    root = tmp_path_factory.mktemp("noisy")
    rng = np.random.default_rng(0)
    colors = {"angry": (220, 40, 40), "crying": (40, 40, 220), "happy": (40, 200, 40)}
    for cls, color in colors.items():
        (root / "images" / cls).mkdir(parents=True)
        for i in range(40):
            pixels = np.array(color)[None, None, :] + rng.integers(-60, 60, (32, 32, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype("uint8")).save(
                root / "images" / cls / f"{i:03d}.png")
    return prepare(root / "images", out=root / "prepared", split=(0.5, 0.25, 0.25),
                   seed=0).manifest_path


def _env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def _torchrun(args: list[str], logs: Path, nproc: int = 2) -> subprocess.CompletedProcess:
    """``torchrun --standalone --nproc-per-node N -m babyemo ARGS``, each rank's output in
    ``logs/<attempt>/attempt_0/<rank>/stdout.log|stderr.log``."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={nproc}", "--log-dir", str(logs), "--redirects", "3",
           "-m", "babyemo", *args]
    return subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=300)


def _rank_output(logs: Path, rank: int, stream: str) -> str:
    (path,) = logs.glob(f"*/attempt_0/{rank}/{stream}.log")
    return path.read_text()


def _history(run: Path) -> list[dict[str, str]]:
    with open(run / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


def test_two_processes_match_one_with_the_same_global_batch(noisy_manifest, tmp_path):
    """Tolerance: both runs separate the val split (macro-F1 >= 0.95 at the last epoch)
    and their final val losses differ by less than 0.3 (the two runs see the same images
    in different batches, so their losses are not equal, only close)."""
    base = ["train", "--data", str(noisy_manifest), "--epochs", "5", *COMMON]
    two = _torchrun([*base, "--batch-size", "8", "--out", str(tmp_path / "two")],
                    tmp_path / "logs")
    assert two.returncode == 0, two.stderr[-3000:]
    one = subprocess.run([sys.executable, "-m", "babyemo", *base, "--batch-size", "16",
                          "--out", str(tmp_path / "one")], env=_env(), capture_output=True,
                         text=True, timeout=300)
    assert one.returncode == 0, one.stderr[-3000:]

    h1, h2 = _history(tmp_path / "one"), _history(tmp_path / "two")
    assert len(h1) == len(h2) == 5
    # every process trained on its half: the summed counts are the whole train split
    assert h2[0]["train_acc"] and float(h2[-1]["val_macro_f1"]) >= 0.95
    assert float(h1[-1]["val_macro_f1"]) >= 0.95
    assert abs(float(h1[-1]["val_loss"]) - float(h2[-1]["val_loss"])) < 0.3
    assert [r["lr"] for r in h1] == [r["lr"] for r in h2]  # --lr-scaling none

    # rank 0 said how the run is distributed, first; rank 1 wrote nothing and said nothing
    err0 = _rank_output(tmp_path / "logs", 0, "stderr")
    assert err0.splitlines()[0].startswith(
        "Distributed: 2 processes (gloo, cpu), global batch 16 = 2 x 8 per process, lr 0.003")
    assert _rank_output(tmp_path / "logs", 1, "stdout") == ""
    assert "epoch 1/5" not in _rank_output(tmp_path / "logs", 1, "stderr")
    assert "best epoch" in _rank_output(tmp_path / "logs", 0, "stdout")
    assert {p.name for p in (tmp_path / "two").iterdir()} == set(RUN_FILES) - {"teacher.npz"}

    from babyemo.checkpoint import load_checkpoint

    ckpt = load_checkpoint(tmp_path / "two" / "best.pt")
    dist = ckpt.train["distributed"]
    assert (dist["world_size"], dist["global_batch"], dist["backend"]) == (2, 16, "gloo")
    assert not any(k.startswith("module.") for k in ckpt.state_dict)  # the model, not DDP


def test_resume_with_another_number_of_processes(noisy_manifest, tmp_path):
    run = tmp_path / "run"
    args = ["train", "--data", str(noisy_manifest), "--batch-size", "8", *COMMON,
            "--out", str(run)]
    first = _torchrun([*args, "--epochs", "2"], tmp_path / "logs")
    assert first.returncode == 0, first.stderr[-3000:]
    # continue in one process, with more epochs
    more = subprocess.run([sys.executable, "-m", "babyemo", *args, "--epochs", "3", "--resume"],
                          env=_env(), capture_output=True, text=True, timeout=300)
    assert more.returncode == 0, more.stderr[-3000:]
    assert "Resuming with 1 process (the run had 2)" in more.stderr
    assert [int(r["epoch"]) for r in _history(run)] == [1, 2, 3]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_a_killed_rank_makes_the_other_exit_with_a_clear_error(noisy_manifest, tmp_path):
    """The two ranks are started by hand with torchrun's variables (so the test knows each
    one's process); rank 1 is killed once training runs, and rank 0 must fail with one
    `Error:` line, exit code 1, well within its --dist-timeout (no hang)."""
    port = _free_port()
    args = [sys.executable, "-m", "babyemo", "train", "--data", str(noisy_manifest),
            "--epochs", "200", "--batch-size", "4", *COMMON, "--out", str(tmp_path / "run")]
    procs = []
    for rank in (0, 1):
        env = {**_env(), "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": "2",
               "LOCAL_WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
        procs.append(subprocess.Popen(args, env=env, stdout=subprocess.PIPE,
                                      stderr=subprocess.PIPE, text=True))
    rank0, rank1 = procs
    try:
        deadline = time.monotonic() + 120
        lines = []
        while time.monotonic() < deadline:  # wait until rank 0 trains
            line = rank0.stderr.readline()
            lines.append(line)
            if line.startswith("epoch 1/200") or not line:
                break
        assert any(x.startswith("epoch 1/200") for x in lines), "".join(lines)
        rank1.send_signal(signal.SIGKILL)
        killed = time.monotonic()
        out, err = rank0.communicate(timeout=90)
        waited = time.monotonic() - killed
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert rank0.returncode == 1, err[-3000:]
    error_lines = [x for x in err.splitlines() if x.startswith("Error:")]
    assert len(error_lines) == 1 and "Rank 0 of 2 failed while training" in error_lines[0]
    assert "Traceback" not in err
    assert waited < 60  # the peer's closed connection is seen; the timeout is the backstop


def test_nproc_starts_torchrun_itself(noisy_manifest, tmp_path):
    proc = subprocess.run([sys.executable, "-m", "babyemo", "train", "--data", str(noisy_manifest),
                           "--epochs", "1", "--batch-size", "8", *COMMON, "--nproc", "2",
                           "--out", str(tmp_path / "run")], env=_env(), capture_output=True,
                          text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "Distributed: 2 processes (gloo, cpu)" in proc.stderr
    assert proc.stdout.count("best epoch 1") == 1  # rank 0 only
    assert (tmp_path / "run" / "best.pt").is_file()


def test_options_a_distributed_cpu_run_cannot_use_are_refused():
    """Checked in every process before anything is written (setup's first steps)."""
    import torch

    from babyemo.config import TrainConfig
    from babyemo.distributed import DistContext
    from babyemo.errors import ConfigError
    from babyemo.training.setup import _distributed_lr

    two = DistContext(rank=0, world_size=2, local_world_size=2, backend="gloo")
    cpu = torch.device("cpu")
    with pytest.raises(ConfigError, match="--sync-bn needs GPUs"):
        _distributed_lr(TrainConfig(sync_bn=True), two, cpu, None)
    with pytest.raises(ConfigError, match="--teacher is not supported in a distributed run"):
        _distributed_lr(TrainConfig(teacher="m.pt"), two, cpu, None)
    assert _distributed_lr(TrainConfig(lr=0.001), two, cpu, None) == pytest.approx(0.002)
    assert _distributed_lr(TrainConfig(lr=0.001, lr_scaling="none"), two, cpu, None) == 0.001
    one = DistContext()
    assert _distributed_lr(TrainConfig(sync_bn=True, lr=0.001), one, cpu, None) == 0.001
