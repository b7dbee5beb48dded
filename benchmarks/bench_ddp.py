"""Distributed training overhead: `babyemo train` in 1 process vs 2 processes under torchrun
(Gloo, DistributedDataParallel) on this machine, same global batch, side by side in one run.

    .venv/bin/python benchmarks/bench_ddp.py [--epochs 4] [--arch custom_resnet] [--size 112]

On a 2-core machine two processes share the same two cores (one intra-op thread each
instead of two threads in one process), so the expected ratio is about 1x: the point is
that the distributed path is correct and its overhead small. The figure of each run is
the median ``images_per_s`` of its epochs 2..E in ``metrics.csv`` (the train pass of all
processes together; epoch 1 decodes the images and fills the cache). Both runs read the
train split of a fresh ``babyemo data prepare`` of infant-emotions (whole images), from
scratch (``--init none``), with ``--lr-scaling none``.

Then, from the model's parameter bytes (what DDP all-reduces every step) and the measured
time per step, what scaling to expect elsewhere: a ring all-reduce moves
``2 (N - 1) / N`` times the gradient bytes through each process's link per step
(Patarasuk & Yuan 2009; NCCL's ring algorithm), and DDP overlaps it with the backward
pass in buckets, so a step costs about ``max(compute, all-reduce)`` at best and
``compute + all-reduce`` at worst.
"""

from __future__ import annotations

import argparse
import csv
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _common import DATA, REPO, figure, print_machine, ratio

LINKS = {"NVLink 4 (H100 SXM, ~450 GB/s)": 450e9, "PCIe 5 x16 (~50 GB/s)": 50e9,
         "100 Gb/s InfiniBand (~12 GB/s)": 12.5e9, "10 Gb/s Ethernet (~1.2 GB/s)": 1.25e9}
"""Nominal one-direction bandwidths (vendors' figures), bytes/s."""


def run(args: list[str], env: dict[str, str]) -> None:
    proc = subprocess.run([sys.executable, "-m", "babyemo", "-q", *args], env=env,
                          capture_output=True, text=True)
    if proc.returncode != 0:
        sys.exit(f"babyemo {' '.join(args)} failed:\n{proc.stderr[-3000:]}")


def images_per_s(run_dir: Path) -> float:
    with open(run_dir / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    return statistics.median(float(r["images_per_s"]) for r in rows[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--arch", default="custom_resnet")
    parser.add_argument("--size", type=int, default=112)
    parser.add_argument("--global-batch", type=int, default=32)
    a = parser.parse_args()
    print_machine()
    tmp = Path(tempfile.mkdtemp(prefix="babyemo-bench-ddp-"))
    env = {**os.environ, "BABYEMO_HOME": str(tmp / "home"), "PYTHONPATH": str(REPO / "src")}
    env.pop("OMP_NUM_THREADS", None)
    run(["data", "prepare", str(DATA / "infant-emotions"), "--out", str(tmp / "prepared")], env)
    common = ["train", "--data", str(tmp / "prepared"), "--arch", a.arch, "--image-size",
              str(a.size), "--epochs", str(a.epochs), "--init", "none", "--device", "cpu",
              "--lr-scaling", "none", "--faces", "none"]
    run([*common, "--batch-size", str(a.global_batch), "--out", str(tmp / "one")], env)
    run([*common, "--batch-size", str(a.global_batch // 2), "--nproc", "2",
         "--out", str(tmp / "two")], env)
    one = figure("1 process (all cores)", images_per_s(tmp / "one"), "images/s")
    two = figure("2 processes (torchrun, Gloo)", images_per_s(tmp / "two"), "images/s")
    ratio("2 processes", "1 process", two, one)

    import torch

    from babyemo.models.registry import create_model

    model = create_model(a.arch, num_classes=3)
    grad_bytes = sum(p.numel() * p.element_size() for p in model.parameters() if p.requires_grad)
    step_s = a.global_batch / one
    figure("gradient bytes all-reduced per step", grad_bytes / 1e6, "MB", 2)
    figure(f"compute per step here (global batch {a.global_batch}, 1 process)", step_s * 1e3,
           "ms", 0)
    for n in (2, 8):
        moved = 2 * (n - 1) / n * grad_bytes
        for link, bandwidth in LINKS.items():
            figure(f"ring all-reduce, {n} processes, {link}", moved / bandwidth * 1e3, "ms", 2)
    print(f"(torch {torch.__version__}; run folders in {tmp})")


if __name__ == "__main__":
    main()
