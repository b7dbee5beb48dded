"""Prediction speed: `predict_to_files` end to end (files -> CSV) vs the model alone on
pre-decoded tensors at the same batch size, vs a naive per-image loop; and the peak
memory of prediction over 300 vs 3,000 files.

    .venv/bin/python benchmarks/bench_predict.py [--checkpoint best.pt] [--batch-size 32]

Without ``--checkpoint`` a custom_resnet (the default arch) is trained for one epoch on
infant-emotions first
(the weights do not matter for speed). The model is warmed up with one batch before the
timed runs. The naive loop opens each file with Pillow (full decode), applies the eval
transform and runs the fp32 model on one image at a time under ``torch.no_grad``,
writing a CSV row per image. Peak memory is each run's own ``ru_maxrss`` in a fresh
subprocess (one per input size): the RSS high-water mark during prediction, and the
Python-level allocation peak (tracemalloc).
"""

from __future__ import annotations

import argparse
import csv
import json
import os
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

    from babyemo.checkpoint import load_checkpoint
    from babyemo.transforms import eval_transform, normalize

    ckpt = load_checkpoint(checkpoint)
    model = ckpt.build_model("cpu")
    transform = eval_transform(ckpt.input_spec)
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


def model_only_rate(predictor, folder: Path) -> float:
    """Images/s of ``predictor.predict_tensor`` on pre-decoded, pre-transformed batches."""
    import torch

    files = list_files(folder)
    x = torch.stack([predictor.transform(decode(p, predictor.input_spec.size)) for p in files])
    bs = predictor.batch_size
    t0 = time.perf_counter()
    for i in range(0, len(x), bs):
        predictor.predict_tensor(x[i:i + bs])
    return len(x) / (time.perf_counter() - t0)


def child(args: argparse.Namespace) -> None:
    """Subprocess: build a Predictor, predict ``args.child`` to a CSV, print JSON figures.

    The peak is the kernel's RSS high-water mark ``VmHWM``, reset just before prediction
    by writing 5 to ``/proc/self/clear_refs`` (Linux >= 4.0), so it measures prediction
    alone; ``ru_maxrss`` would not do: it keeps the parent's peak across fork + exec.
    tracemalloc adds the peak of Python-level allocations (rows, paths; not tensors).
    """
    import tracemalloc

    from babyemo.prediction import Predictor, predict_to_files

    predictor = Predictor(args.checkpoint, device="cpu", batch_size=args.batch_size,
                          num_workers=args.workers, backend=args.backend, onnx=args.onnx)
    before = proc_status_mb("VmRSS")
    Path("/proc/self/clear_refs").write_text("5")
    tracemalloc.start()
    summary = predict_to_files([args.child], predictor, csv_out=args.csv)
    py_peak = tracemalloc.get_traced_memory()[1] / 2**20
    print(json.dumps({"files": summary.n_files, "failed": summary.n_failed,
                      "rss_before_mb": before, "peak_mb": proc_status_mb("VmHWM"),
                      "py_peak_mb": py_peak}))


def run_child(checkpoint: Path, folder: Path, batch_size: int, workers: int | None,
              out_csv: Path, backend: str, onnx: Path | None) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", str(folder),
           "--checkpoint", str(checkpoint), "--batch-size", str(batch_size),
           "--csv", str(out_csv), "--backend", backend]
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
    p.add_argument("--workers", type=int, default=None,
                   help="Predictor DataLoader workers (default: babyemo's choice)")
    p.add_argument("--repeat", type=int, default=10,
                   help="memory run: each photo linked this many times (300 -> 3,000)")
    p.add_argument("--backend", default="torch", choices=["torch", "onnxruntime"],
                   help="predict's engine; onnxruntime exports the checkpoint first")
    p.add_argument("--int8", action="store_true",
                   help="with onnxruntime: the int8 export (calibrated on the training split)")
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

    print_machine()
    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = quick_checkpoint(args.infant, tmp / "run", epochs=1)

    if args.backend == "onnxruntime":
        from babyemo.export import export_onnx

        t0 = time.perf_counter()
        exported = export_onnx(checkpoint, int8=args.int8)
        args.onnx = exported.int8 if args.int8 else exported.onnx
        figure(f"setup: export onnx{' + int8' if args.int8 else ''}",
               time.perf_counter() - t0, "s")
    predictor = Predictor(checkpoint, device="cpu", batch_size=args.batch_size,
                          num_workers=args.workers, backend=args.backend, onnx=args.onnx)
    size = predictor.input_spec.size
    print(f"setup: {predictor.checkpoint.arch} at {size} px, batch {args.batch_size}, "
          f"engine {predictor.engine.describe()}, workers {predictor.num_workers}")
    predictor.predict_tensor(torch.zeros(args.batch_size, 3, size, size))  # warm-up

    for name, folder in (("baby-photos", args.photos), ("infant-emotions", args.infant)):
        summary = predict_to_files([folder], predictor, csv_out=tmp / f"{name}.csv")
        n = summary.n_files
        e2e = figure(f"{name} ({n} files) predict_to_files end to end", summary.images_per_s,
                     "images/s")
        model = figure(f"{name} model only (pre-decoded, batch {args.batch_size})",
                       model_only_rate(predictor, folder), "images/s")
        naive = figure(f"{name} naive per-image fp32 loop",
                       naive_rate(checkpoint, folder, tmp / f"{name}-naive.csv"), "images/s")
        r_model = ratio(f"{name} predict", "model-only", e2e, model)
        r_naive = ratio(f"{name} predict", "naive", e2e, naive)
        target(f"{name} predict/model-only", r_model, 0.8)
        target(f"{name} predict/naive", r_naive, 4.0)

    many = tmp / "many"
    photos = list_files(args.photos)
    for k in range(args.repeat):
        (many / f"copy{k}").mkdir(parents=True)
        for src in photos:
            (many / f"copy{k}" / src.name).symlink_to(src.resolve())
    small = run_child(checkpoint, args.photos, args.batch_size, args.workers, tmp / "small.csv",
                      args.backend, args.onnx)
    large = run_child(checkpoint, many, args.batch_size, args.workers, tmp / "large.csv",
                      args.backend, args.onnx)
    for r in (small, large):
        figure(f"memory run {r['files']} files: RSS before predict", r["rss_before_mb"], "MiB")
        figure(f"memory run {r['files']} files: peak RSS during predict", r["peak_mb"], "MiB")
        figure(f"memory run {r['files']} files: peak RSS - RSS before",
               r["peak_mb"] - r["rss_before_mb"], "MiB")
        figure(f"memory run {r['files']} files: peak Python allocations", r["py_peak_mb"],
               "MiB", digits=2)
    growth = ratio(f"peak RSS {large['files']} files", f"{small['files']} files",
                   large["peak_mb"], small["peak_mb"])
    figure("peak RSS growth", large["peak_mb"] - small["peak_mb"], "MiB")
    target("peak RSS 3,000/300 files (flat)", growth, 1.1, at_most=True)
    home.cleanup()


if __name__ == "__main__":
    main()
