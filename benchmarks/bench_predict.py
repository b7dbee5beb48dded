
"""Prediction speed: `predict_to_files` end to end (files -> CSV) vs the model alone on
pre-decoded tensors at the same batch size, vs a naive per-image loop; the reading side
alone and the ceiling it sets; and the peak memory of prediction over 300 vs 3,000 files.

    .venv/bin/python benchmarks/bench_predict.py [--checkpoint best.pt] [--batch-size 32]

Without ``--checkpoint`` a custom_resnet (the default arch) is trained for one epoch on
infant-emotions first
(the weights do not matter for speed). The model is warmed up with one batch before the
timed runs. End to end (with babyemo's default CPU streams, and with 1 stream), model-only
(one ``predict_tensor`` call per batch on all intra-op threads, and the same calls spread
over the predictor's streams of one thread each), reading-only (the predictor's DataLoader
without the model, one thread) and the naive loop are run ``--rounds`` times, alternated,
and their medians compared; the 0.8x target is judged against the faster model-only.
Since reading and the model share the cores, end to end cannot beat
``cores / (cores / model + 1 / reading)`` images/s; the script prints that ceiling as a
ratio to model-only (an estimate: it counts the model as keeping every core busy).
The naive loop opens each file with Pillow (full decode), applies torchvision's
``Resize``, ``CenterCrop`` and ``ToImage`` to the PIL image, and runs the fp32 model on one
image at a time under ``torch.no_grad``, writing a CSV row per image. Peak memory is
measured in a fresh subprocess per input size (see :func:`child`): the RSS high-water mark
during prediction, and the Python-level allocation peak (tracemalloc).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    DATA,
    decode,
    figure,
    print_machine,
    quick_checkpoint,
    ratio,
    target,
    temp_home,
)


def proc_status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory field (``VmRSS``, ``VmHWM``) in MiB (Linux)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    raise KeyError(field)


def list_files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file())


def naive_rate(checkpoint: Path, folder: Path, out_csv: Path) -> float:
    """Images/s of a plain loop: PIL open, eval transform, fp32 model on one image, CSV row."""
    import torch
    from PIL import Image
    from torchvision.transforms import v2

    from babyemo.checkpoint import load_checkpoint
    from babyemo.transforms import normalize

    ckpt = load_checkpoint(checkpoint)
    model = ckpt.build_model("cpu")
    size = ckpt.input_spec.size
    # The torchvision pipeline a plain script writes (resize the PIL image), as babyemo's
    # eval transform was until it moved the resize to uint8 tensors.
    transform = v2.Compose([v2.Resize(size, antialias=True), v2.CenterCrop(size), v2.ToImage()])
    with torch.no_grad():  # warm-up
        model(torch.zeros(1, 3, ckpt.input_spec.size, ckpt.input_spec.size))
    t0 = time.perf_counter()
    files = list_files(folder)
    with open(out_csv, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["path", "label", "confidence", *ckpt.class_names])
        for path in files:
            x = normalize(transform(Image.open(path).convert("RGB")).unsqueeze(0),
                          ckpt.input_spec)
            with torch.no_grad():
                probs = torch.softmax(model(x), dim=1)[0]
            k = int(probs.argmax())
            writer.writerow([str(path), ckpt.class_names[k], f"{probs[k]:.4f}",
                             *[f"{v:.4f}" for v in probs.tolist()]])
    return len(files) / (time.perf_counter() - t0)


def model_only_rate(predictor, images) -> float:
    """Images/s of ``predictor.predict_tensor`` on pre-decoded, pre-transformed batches."""
    bs = predictor.model.runtime.batch_size
    t0 = time.perf_counter()
    for i in range(0, len(images), bs):
        predictor.predict_tensor(images[i:i + bs])
    return len(images) / (time.perf_counter() - t0)


def model_streams_rate(predictor, images) -> float:
    """Images/s of the model alone run as prediction runs it: ``predictor.model.readers``
    threads of one intra-op thread each, each calling ``predict_tensor`` on whole batches
    (1 stream: :func:`model_only_rate`)."""
    from babyemo.devices import map_in_readers

    if predictor.model.readers == 1:
        return model_only_rate(predictor, images)
    bs = predictor.model.runtime.batch_size
    t0 = time.perf_counter()
    for _ in map_in_readers(lambda i: predictor.predict_tensor(images[i:i + bs]),
                            range(0, len(images), bs), predictor.model.readers):
        pass
    return len(images) / (time.perf_counter() - t0)


def decode_only_rate(predictor, folder: Path) -> float:
    """Images/s of the prediction pipeline's reading side alone, in one thread: the
    predictor's own ``FileDataset`` + DataLoader (decode, transform, collate), no model."""
    from torch.utils.data import DataLoader

    from babyemo.data.loading.dataset import FileDataset, collate_files

    files = list_files(folder)
    dataset = FileDataset(files, predictor.model.input_spec, predictor.model.transform,
                          predictor.face_detection)
    loader = DataLoader(dataset, batch_size=predictor.model.runtime.batch_size,
                        collate_fn=collate_files)
    t0 = time.perf_counter()
    for _ in loader:
        pass
    return len(files) / (time.perf_counter() - t0)


def child(args: argparse.Namespace) -> None:
    """Subprocess: build a Predictor, predict ``args.child`` to a CSV, print JSON figures.

    The peak is the kernel's RSS high-water mark ``VmHWM``, reset just before prediction
    by writing 5 to ``/proc/self/clear_refs`` (Linux >= 4.0), so it measures prediction
    alone; ``ru_maxrss`` would not do: it keeps the parent's peak across fork + exec.
    tracemalloc adds the peak of Python-level allocations (rows, paths; not tensors).
    """
    import tracemalloc

    from babyemo.prediction import Predictor, predict_to_files
    from babyemo.runtime import Runtime

    predictor = Predictor(
        args.checkpoint,
        runtime=Runtime(
            device="cpu",
            batch_size=args.batch_size,
            workers=args.workers,
            backend=args.backend,
            onnx=args.onnx,
        ),
    )
    before = proc_status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    tracemalloc.start()
    summary = predict_to_files([args.child], predictor, csv_out=args.csv)
    py_peak = tracemalloc.get_traced_memory()[1] / 2**20
    print(
        json.dumps(
            {
                "files": summary.n_files,
                "failed": summary.n_failed,
                "rss_before_mb": before,
                "peak_mb": proc_status_mb("VmHWM"),
                "py_peak_mb": py_peak,
            }
        )
    )


def run_child(
    checkpoint: Path,
    folder: Path,
    batch_size: int,
    workers: int | None,
    out_csv: Path,
    backend: str,
    onnx: Path | None,
) -> dict:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        str(folder),
        "--checkpoint",
        str(checkpoint),
        "--batch-size",
        str(batch_size),
        "--csv",
        str(out_csv),
        "--backend",
        backend,
    ]
    if onnx is not None:
        cmd += ["--onnx", str(onnx)]
    if workers is not None:
        cmd += ["--workers", str(workers)]
    done = subprocess.run(cmd, capture_output=True, text=True, env=os.environ, check=True)
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=None)
    p.add_argument("--photos", type=Path, default=DATA / "baby-photos")
    p.add_argument("--infant", type=Path, default=DATA / "infant-emotions")
    p.add_argument("--batch-size", type=int, default=32, help="as `babyemo predict`")
    p.add_argument(
        "--workers",
        type=int,
        default=None,
        help="Predictor DataLoader workers (default: babyemo's choice)",
    )
    p.add_argument(
        "--rounds", type=int, default=3, help="runs of each of the four, alternated (medians)"
    )
    p.add_argument(
        "--repeat",
        type=int,
        default=10,
        help="memory run: each photo linked this many times (300 -> 3,000)",
    )
    p.add_argument(
        "--backend",
        default="torch",
        choices=["torch", "onnxruntime"],
        help="predict's engine; onnxruntime exports the checkpoint first",
    )
    p.add_argument(
        "--int8",
        action="store_true",
        help="with onnxruntime: the int8 export (calibrated on the training split)",
    )
    p.add_argument("--onnx", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--child", type=Path, default=None, help=argparse.SUPPRESS)
    p.add_argument("--csv", type=Path, default=None, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child is not None:
        child(args)
        return

    home = temp_home()
    tmp = Path(home.name)
    import torch

    from babyemo.prediction import Predictor, predict_to_files
    from babyemo.runtime import Runtime

    print_machine()
    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = quick_checkpoint(args.infant, tmp / "run", epochs=1)

    if args.backend == "onnxruntime":
        from babyemo.export import export_onnx

        t0 = time.perf_counter()
        exported = export_onnx(checkpoint, int8=args.int8)
        args.onnx = exported.int8 if args.int8 else exported.onnx
        figure(f"setup: export onnx{' + int8' if args.int8 else ''}", time.perf_counter() - t0, "s")
    runtime = Runtime(device="cpu", batch_size=args.batch_size, workers=args.workers,
                      backend=args.backend, onnx=args.onnx)
    predictor = Predictor(checkpoint, runtime=runtime)
    single = Predictor(checkpoint, runtime=runtime.replace(readers=1))
    size = predictor.model.input_spec.size
    print(
        f"setup: {predictor.checkpoint.arch} at {size} px, batch {args.batch_size}, "
        f"engine {predictor.model.engine.describe()}, workers {predictor.model.workers}, "
        f"streams {predictor.model.readers}"
    )
    predictor.predict_tensor(torch.zeros(args.batch_size, 3, size, size))  # warm-up

    cores = os.cpu_count() or 1
    for name, folder in (("baby-photos", args.photos), ("infant-emotions", args.infant)):
        images = torch.stack([predictor.model.transform(decode(p, size))
                              for p in list_files(folder)])
        runs: dict[str, list[float]] = {
            k: [] for k in ("e2e", "e2e1", "model", "model_streams", "reading", "naive")
        }
        for _ in range(args.rounds):  # alternated, so drifts of the machine hit all alike
            summary = predict_to_files([folder], predictor, csv_out=tmp / f"{name}.csv")
            runs["e2e"].append(summary.images_per_s)
            runs["e2e1"].append(
                predict_to_files([folder], single, csv_out=tmp / "1.csv").images_per_s
            )
            runs["model"].append(model_only_rate(predictor, images))
            runs["model_streams"].append(model_streams_rate(predictor, images))
            runs["reading"].append(decode_only_rate(predictor, folder))
            runs["naive"].append(naive_rate(checkpoint, folder, tmp / f"{name}-naive.csv"))
        med = {k: statistics.median(v) for k, v in runs.items()}
        n = summary.n_files
        e2e = figure(
            f"{name} ({n} files) predict_to_files end to end, {predictor.model.readers} "
            f"streams (median of {args.rounds})",
            med["e2e"],
            "images/s",
        )
        figure(f"{name} predict_to_files end to end, 1 stream (median)", med["e2e1"], "images/s")
        figure(
            f"{name} model only, one call on {torch.get_num_threads()} threads "
            f"(pre-decoded, batch {args.batch_size}, median)",
            med["model"],
            "images/s",
        )
        figure(
            f"{name} model only, {predictor.model.readers} streams of 1 thread (median)",
            med["model_streams"],
            "images/s",
        )
        reading = figure(
            f"{name} reading only (decode + transform + collate, one thread, median)",
            med["reading"],
            "images/s",
        )
        naive = figure(f"{name} naive per-image fp32 loop (median)", med["naive"], "images/s")
        ratio(f"{name} predict {predictor.model.readers} streams", "1 stream", e2e, med["e2e1"])
        ratio(f"{name} predict", "model-only one call", e2e, med["model"])
        ratio(
            f"{name} predict", f"model-only {predictor.model.readers} streams", e2e,
            med["model_streams"]
        )
        # The target is judged against the faster way of running the model alone.
        model = max(med["model"], med["model_streams"])
        r_model = e2e / model
        # Both stages need CPU time: the model cores/model core-seconds per image (it keeps
        # every core busy), reading 1/reading. With every core busy, end to end cannot
        # beat cores / (cores/model + 1/reading) images/s.
        ceiling = cores / (cores / model + 1 / reading) / model
        print(
            f"{name} ceiling of predict/model-only with {cores} cores shared by reading "
            f"and the model: {ceiling:.2f}x"
        )
        r_naive = ratio(f"{name} predict", "naive", e2e, naive)
        target(f"{name} predict/model-only (the faster of the two)", r_model, 0.8)
        target(f"{name} predict/naive", r_naive, 4.0)

    many = tmp / "many"
    photos = list_files(args.photos)
    for k in range(args.repeat):
        (many / f"copy{k}").mkdir(parents=True)
        for src in photos:
            (many / f"copy{k}" / src.name).symlink_to(src.resolve())
    small = run_child(
        checkpoint,
        args.photos,
        args.batch_size,
        args.workers,
        tmp / "small.csv",
        args.backend,
        args.onnx,
    )
    large = run_child(
        checkpoint, many, args.batch_size, args.workers, tmp / "large.csv", args.backend, args.onnx
    )
    for r in (small, large):
        figure(f"memory run {r['files']} files: RSS before predict", r["rss_before_mb"], "MiB")
        figure(f"memory run {r['files']} files: peak RSS during predict", r["peak_mb"], "MiB")
        figure(
            f"memory run {r['files']} files: peak RSS - RSS before",
            r["peak_mb"] - r["rss_before_mb"],
            "MiB",
        )
        figure(
            f"memory run {r['files']} files: peak Python allocations",
            r["py_peak_mb"],
            "MiB",
            digits=2,
        )
    growth = ratio(
        f"peak RSS {large['files']} files",
        f"{small['files']} files",
        large["peak_mb"],
        small["peak_mb"],
    )
    figure("peak RSS growth", large["peak_mb"] - small["peak_mb"], "MiB")
    target("peak RSS 3,000/300 files (flat)", growth, 1.1, at_most=True)
    home.cleanup()


if __name__ == "__main__":
    main()
