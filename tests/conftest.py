"""Shared fixtures.

Real-data tests read ``../shared/data`` (beside the repository) in place. They skip when
it is absent (a user's fresh clone); with ``BABYEMO_REQUIRE_REAL_DATA=1`` (set by
``.ci/run``) a missing folder is a failure instead.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

pytest_plugins = ["tests.http_fixtures"]

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("BABYEMO_SHARED_DATA", REPO.parent / "shared" / "data"))
SHARED_MODELS = SHARED_DATA.parent / "models"


def _require(path: Path) -> Path:
    if not path.exists():
        if os.environ.get("BABYEMO_REQUIRE_REAL_DATA") == "1":
            pytest.fail(f"real data required but missing: {path}")
        pytest.skip(f"real data not present: {path}")
    return path


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """``../shared/data`` (skip or fail when absent, see module doc)."""
    return _require(SHARED_DATA)


@pytest.fixture(scope="session")
def infant_dir(shared_data: Path) -> Path:
    """The real infant-emotions folder (ImageFolder layout, 3 classes)."""
    return _require(shared_data / "infant-emotions")


@pytest.fixture(scope="session")
def fer_dir(shared_data: Path) -> Path:
    """The real FER-2013 folder (train/ and test/)."""
    return _require(shared_data / "fer2013")


@pytest.fixture(scope="session")
def baby_photos_dir(shared_data: Path) -> Path:
    """The 300 real unlabelled baby photos."""
    return _require(shared_data / "baby-photos")


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch):
    """Every test gets its own empty ``BABYEMO_HOME`` and no local dataset/model dirs."""
    monkeypatch.setenv("BABYEMO_HOME", str(tmp_path_factory.mktemp("babyemo-home")))
    monkeypatch.delenv("BABYEMO_DATASETS", raising=False)
    monkeypatch.delenv("BABYEMO_MODELS", raising=False)
    monkeypatch.delenv("BABYEMO_DEBUG", raising=False)


def make_image(path: Path, color=(200, 100, 50), size=(32, 32), fmt: str | None = None,
               mode: str = "RGB") -> Path:
    """Write a small synthetic image with Pillow (format from ``fmt`` or the suffix)."""
    from PIL import Image, ImageDraw

    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, color)
    draw = ImageDraw.Draw(img)
    draw.rectangle([size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2],
                   fill=tuple(255 - c for c in color))
    img.convert(mode).save(path, format=fmt)
    return path


def make_imagefolder(root: Path, classes=("angry", "crying", "happy"), per_class: int = 6,
                     size=(32, 32)) -> Path:
    """A small ImageFolder dataset whose classes differ in colour (learnable)."""
    import random

    colors = [(220, 40, 40), (40, 40, 220), (40, 200, 40), (200, 200, 40), (120, 40, 160)]
    rng = random.Random(0)
    for ci, cls in enumerate(classes):
        base = colors[ci % len(colors)]
        for i in range(per_class):
            jitter = tuple(max(0, min(255, c + rng.randint(-30, 30))) for c in base)
            make_image(root / cls / f"{cls}_{i:03d}.png", color=jitter, size=size)
    return root


TINY_ARCH = "tiny_test_cnn"


def _register_tiny_arch() -> str:
    """A tiny CNN registered through the public decorator (fast unit tests)."""
    import torch
    from torch import nn

    from babyemo.config import InputSpec
    from babyemo.models import registry

    if TINY_ARCH in {a.name for a in registry.list_archs()}:
        return TINY_ARCH

    @registry.register_arch(TINY_ARCH, default_input=InputSpec(size=24, channels=3,
                                                                mean=(0.5,) * 3, std=(0.5,) * 3),
                            description="tiny test CNN")
    def _build(*, num_classes: int, in_channels: int, pretrained: bool = False,
               width: int = 8) -> nn.Module:
        torch.manual_seed(0)
        return nn.Sequential(nn.Conv2d(in_channels, width, 3, padding=1), nn.BatchNorm2d(width),
                             nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                             nn.Linear(width, num_classes))

    return TINY_ARCH


@pytest.fixture(scope="session")
def tiny_arch() -> str:
    """Name of the registered tiny test architecture."""
    return _register_tiny_arch()


@pytest.fixture
def prepared(tmp_path: Path) -> Path:
    """A prepared synthetic 3-class dataset (12 images per class); returns manifest.csv."""
    from babyemo.data.preparation.prepare import prepare

    root = make_imagefolder(tmp_path / "images", per_class=12)
    result = prepare(root, out=tmp_path / "prepared", split=(0.5, 0.25, 0.25), seed=0)
    return result.manifest_path


def make_checkpoint(path: Path, arch: str, classes=("angry", "crying", "happy"),
                    temperature: float | None = None) -> Path:
    """An untrained checkpoint of ``arch`` (24 px input), optionally with a temperature."""
    from babyemo.checkpoint import save_checkpoint, write_calibration
    from babyemo.config import InputSpec
    from babyemo.models.registry import create_model

    save_checkpoint(path, model=create_model(arch, num_classes=len(classes)), arch=arch,
                    arch_kwargs={}, class_names=list(classes),
                    input_spec=InputSpec(size=24, mean=(0.5,) * 3, std=(0.5,) * 3),
                    train={}, metrics={})
    if temperature is not None:
        write_calibration(path, {"temperature": temperature, "fitted_on": "val"})
    return path


@pytest.fixture
def checkpoint(prepared: Path, tiny_arch: str, tmp_path: Path) -> Path:
    """``best.pt`` of the tiny arch trained 1 epoch (fp32) on :func:`prepared`."""
    from babyemo.config import TrainConfig
    from babyemo.training import train

    return train(TrainConfig(data=str(prepared), arch=tiny_arch, image_size=None, epochs=1,
                             batch_size=8, precision="fp32", out=str(tmp_path / "run"))
                 ).best_checkpoint


def subset_manifest(source: Path, out: Path, keep: dict[str, int]) -> Path:
    """Prepare a real image folder (seed 0) and keep the first ``keep[split]`` rows of each
    class in each split; returns the new manifest's path (in ``out / "subset"``)."""
    from collections import defaultdict

    from babyemo.data.preparation.manifest import write_manifest
    from babyemo.data.preparation.prepare import prepare

    full = prepare(source, out=out / "full", seed=0).manifest
    taken: dict[tuple[str, str], int] = defaultdict(int)
    rows = []
    for row in full.rows:
        if taken[(row.split, row.label)] < keep.get(row.split, 0):
            taken[(row.split, row.label)] += 1
            rows.append(row)
    return write_manifest(rows, out / "subset", info=full.info)



HEAVY_MODULES = ("torch", "torchvision", "sklearn", "matplotlib")
"""Modules that `--help` and early argument errors must not import (seconds each)."""


def run_cli_in_subprocess(args: list[str], *, exit_code: int = 0,
                          heavy: tuple[str, ...] = HEAVY_MODULES):
    """Run ``babyemo ARGS`` in a fresh interpreter, assert its exit code and that none of
    ``heavy`` was imported; returns the :class:`subprocess.CompletedProcess`."""
    import subprocess
    import sys

    code = ("import sys\nfrom babyemo.cli import app\n"
            f"try:\n    app({list(args)!r})\nexcept SystemExit as e:\n"
            f"    assert e.code == {exit_code}, e.code\n"
            f"bad = [m for m in {tuple(heavy)!r} if m in sys.modules]\n"
            "assert not bad, f'imported {bad}'\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc
