
"""ONNX Runtime vs torch inference: images/s at batch 1 and batch 64 of torch eager fp32,
the torch fast path (babyemo's ``TorchEngine`` with ``precision=auto``: batch norms folded,
channels_last, bf16 autocast where the CPU has native bf16), onnxruntime fp32 and
onnxruntime static int8; and int8's accuracy / macro-F1 next to fp32 torch's on the val and
test splits.

    .venv/bin/python benchmarks/bench_onnx.py [--checkpoint best.pt] [--epochs 5] [--threads N]

Without ``--checkpoint`` a custom_resnet (the default arch) at 112 px is trained briefly on
a fresh prepare of
infant-emotions (``--epochs``, default recipe otherwise). ``babyemo.export.export_onnx``
then writes ``best.onnx`` and ``best.int8.onnx`` (calibrated on 200 images of the train
split; it compares int8 with fp32 on val itself). The timed inputs are eval-transformed
real val images (pre-decoded), the same for every engine. Timing: the four engines are
called in turn, call by call (so drifts of a shared machine hit them alike), ``--repeat``
calls each after 3 warm-up calls; the figure is the median call. "eager fp32" is the
plain model (NCHW, fp32) under ``torch.inference_mode``; the others are
``babyemo.engines`` engines.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _common import DATA, figure, print_machine, quick_checkpoint, ratio, temp_home


class Eager:
    """The plain fp32 model, NCHW, under ``torch.inference_mode`` (the baseline)."""

    def __init__(self, ckpt):
        self.model = ckpt.build_model("cpu")

    def logits(self, x):
        import torch

        with torch.inference_mode():
            return self.model(x)


def time_engines(engines: dict, x, batch: int, repeat: int) -> dict[str, float]:
    """Images/s (median call) of each engine on batches of ``batch`` images of ``x``."""
    n = len(x)
    times: dict[str, list[float]] = {name: [] for name in engines}
    for i in range(3 + repeat):
        start = (i * batch) % max(1, n - batch + 1)
        xb = x[start:start + batch].contiguous()
        for name, engine in engines.items():
            t0 = time.perf_counter()
            engine.logits(xb)
            if i >= 3:
                times[name].append(time.perf_counter() - t0)
    return {name: batch / statistics.median(t) for name, t in times.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--checkpoint", type=Path, default=None)
    p.add_argument("--data", type=Path, default=DATA / "infant-emotions")
    p.add_argument("--epochs", type=int, default=5, help="training epochs without --checkpoint")
    p.add_argument("--image-size", type=int, default=112)
    p.add_argument("--calibration-images", type=int, default=200)
    p.add_argument("--repeat-1", type=int, default=200, help="timed calls at batch 1")
    p.add_argument("--repeat-64", type=int, default=12, help="timed calls at batch 64")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op threads of torch and onnxruntime in the timed part "
                   "(default: torch's default and every core for onnxruntime)")
    args = p.parse_args()

    home = temp_home()
    tmp = Path(home.name)
    import torch

    from babyemo.checkpoint import load_checkpoint
    from babyemo.data.loading.dataset import ManifestDataset
    from babyemo.data.preparation.manifest import read_manifest
    from babyemo.engines import OnnxEngine, TorchEngine
    from babyemo.evaluation import evaluate
    from babyemo.export import export_onnx
    from babyemo.runtime import Runtime
    from babyemo.transforms import eval_transform, normalize

    print_machine()
    checkpoint = args.checkpoint
    if checkpoint is None:
        checkpoint = quick_checkpoint(args.data, tmp / "run", epochs=args.epochs,
                                      image_size=args.image_size)

    t0 = time.perf_counter()
    exported = export_onnx(checkpoint, out=tmp / "model.onnx", int8=True,
                           quantization_images=args.calibration_images)
    figure("export fp32 + int8 (calibration, val comparison)", time.perf_counter() - t0, "s")
    figure("export fp32 max |logit diff| onnxruntime vs torch", exported.max_abs_diff, "",
           digits=7)
    ckpt = load_checkpoint(checkpoint)
    spec = ckpt.input_spec
    manifest = read_manifest(exported.quantization["manifest"])
    val = ManifestDataset(manifest, "val", ckpt.class_names, spec, eval_transform(spec),
                          crop=ckpt.crop_spec)
    x = normalize(torch.stack([val[i][0] for i in range(min(len(val), 128))]), spec)
    if args.threads:
        torch.set_num_threads(args.threads)
    fast = TorchEngine(ckpt, device="cpu", precision="auto")
    engines = {"torch eager fp32": Eager(ckpt), f"torch fast path ({fast.precision} + "
               "channels_last + folded BN)": fast,
               "onnxruntime fp32": OnnxEngine(exported.onnx, threads=args.threads),
               "onnxruntime int8": OnnxEngine(exported.int8, threads=args.threads)}
    ort_threads = engines["onnxruntime int8"].session.get_session_options().intra_op_num_threads
    print(f"setup: {ckpt.arch} at {spec.size} px, {torch.get_num_threads()} torch threads, "
          f"onnxruntime {ort_threads} intra-op threads, inputs: {len(x)} val images")
    for batch, repeat in ((1, args.repeat_1), (64, args.repeat_64)):
        rates = time_engines(engines, x, batch, repeat)
        for name, rate in rates.items():
            figure(f"batch {batch} {name}", rate, "images/s")
        base = rates["torch eager fp32"]
        for name, rate in rates.items():
            if name != "torch eager fp32":
                ratio(f"batch {batch} {name}", "eager fp32", rate, base)

    ev = exported.int8_eval
    for key, label in (("fp32_torch", "fp32 torch"), ("int8_onnxruntime", "int8 onnxruntime")):
        figure(f"val (n={ev['n']}) accuracy {label}", ev[key]["accuracy"], "", digits=3)
        figure(f"val (n={ev['n']}) macro-F1 {label}", ev[key]["macro_f1"], "", digits=3)
    figure("val same label int8 vs fp32", ev["agreement"], "", digits=3)
    figure("val macro-F1 drop fp32 - int8", 100 * ev["macro_f1_drop"], "points", digits=1)
    reports = {"fp32 torch": evaluate(checkpoint, data=manifest.path, split="test",
                                      runtime=Runtime(device="cpu", precision="fp32")),
               "int8 onnxruntime": evaluate(
                   checkpoint, data=manifest.path, split="test",
                   runtime=Runtime(backend="onnxruntime", onnx=exported.int8))}
    for label, r in reports.items():
        figure(f"test (n={r.metrics['n']}) accuracy {label}", r.metrics["accuracy"], "", digits=3)
        figure(f"test (n={r.metrics['n']}) macro-F1 {label}", r.metrics["macro_f1"], "", digits=3)
    same = (reports["fp32 torch"].y_pred == reports["int8 onnxruntime"].y_pred).mean()
    figure("test same label int8 vs fp32", float(same), "", digits=3)
    home.cleanup()


if __name__ == "__main__":
    main()
