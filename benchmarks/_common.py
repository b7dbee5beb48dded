"""Helpers shared by the benchmark scripts: data paths, a temporary babyemo home, timing
and the plain output lines (``name: value unit``, ``ratio X vs Y: 1.23x``, ``target ...``).
"""

from __future__ import annotations

import os
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
"""The real data sets, read in place (``../shared/data`` beside the repo)."""


def temp_home() -> tempfile.TemporaryDirectory:
    """Point ``BABYEMO_HOME`` at a new temporary folder (removed by ``.cleanup()``), so a
    benchmark never touches the user's prepared data or model registry."""
    tmp = tempfile.TemporaryDirectory(prefix="babyemo-bench-")
    os.environ["BABYEMO_HOME"] = tmp.name
    return tmp


def cpu_name() -> str:
    """The CPU model name from ``/proc/cpuinfo`` (``platform.processor()`` elsewhere)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def print_machine() -> None:
    """Print the lines that say where the figures come from."""
    import torch

    from babyemo.devices import cpu_has_native_bf16

    print(f"machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}, "
          f"{torch.get_num_threads()} intra-op threads, native bf16 {cpu_has_native_bf16()}, "
          f"cuda {torch.cuda.is_available()}")


def figure(name: str, value: float, unit: str, digits: int = 1) -> float:
    """Print ``name: value unit`` and return ``value``."""
    print(f"{name}: {value:.{digits}f} {unit}")
    return value


def ratio(x: str, y: str, a: float, b: float) -> float:
    """Print ``ratio x vs y: a/b x`` and return ``a / b``."""
    r = a / b if b else float("nan")
    print(f"ratio {x} vs {y}: {r:.2f}x")
    return r


def target(name: str, value: float, threshold: float, *, at_most: bool = False,
           unit: str = "x") -> bool:
    """Print whether ``value >= threshold`` (or ``<=`` with ``at_most``); never hides a miss."""
    met = value <= threshold if at_most else value >= threshold
    op = "<=" if at_most else ">="
    print(f"target {name} {op} {threshold:g}{unit}: {'met' if met else 'MISSED'} "
          f"({value:.2f}{unit})")
    return met


def decode(path: Path, size: int):
    """Decode an image as babyemo does, with Pillow only: JPEGs drafted to >= 2x the model
    input ``size`` (babyemo's ``decode_size``), EXIF orientation applied, RGB."""
    from PIL import Image, ImageOps

    with Image.open(path) as img:
        if img.format == "JPEG":
            img.draft("RGB", (2 * size, 2 * size))
        img.load()
        return (ImageOps.exif_transpose(img) or img).convert("RGB")


def median_seconds(fn: Callable[[], object], repeat: int, warmup: int = 1) -> float:
    """Median wall time of ``fn()`` in seconds over ``repeat`` calls after ``warmup`` calls."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def quick_checkpoint(data: Path, out: Path, *, epochs: int, arch: str = "custom_resnet",
                     image_size: int | None = None) -> Path:
    """Prepare ``data`` (in the temporary home) and train ``arch`` for ``epochs`` on the CPU
    with the default recipe otherwise; print the setup time; return ``best.pt``."""
    from babyemo.config import TrainConfig
    from babyemo.data.preparation.prepare import prepare
    from babyemo.training import train

    t0 = time.perf_counter()
    prepared = prepare(data)
    result = train(TrainConfig(data=str(prepared.manifest_path), arch=arch,
                               image_size=image_size, epochs=epochs, device="cpu", out=str(out)))
    figure(f"setup: prepare + {epochs}-epoch {arch}", time.perf_counter() - t0, "s")
    return result.best_checkpoint

