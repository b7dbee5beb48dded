"""Training speed: `babyemo train` vs a minimal hand-written PyTorch loop, and the fast path
(bf16 autocast + channels_last when the CPU has native bf16) vs plain fp32, for training
and for inference (babyemo's engine, which also folds batch norms into convolutions, on
the checkpoint just trained, vs that checkpoint's plain fp32 model).

    .venv/bin/python benchmarks/bench_train.py [--epochs 6] [--arch custom_resnet] [--data DIR]

Both loops train on the same decoded images (the train split of a fresh `babyemo data
prepare` of ``--data``), with the same arch, input size, batch size, train transform,
optimizer (AdamW), precision, and DataLoader with 0 workers. babyemo's figure is
``TrainResult.history[e]["images_per_s"]`` (the train pass of epoch ``e``, without
validation and checkpoint writing), the median over epochs 2..E: epoch 1 decodes the
JPEGs and fills the RAM cache. The hand loop preloads the images before timing, runs
3 warm-up batches, then E-1 timed epochs (median). Both train from scratch.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from _common import DATA, decode, figure, print_machine, ratio, target, temp_home


def hand_loop(images, labels, spec, augment, arch, num_classes, *, batch_size, epochs,
              autocast_dtype, channels_last, warmup_batches=3) -> list[float]:
    """Train ``arch`` from scratch with a plain PyTorch loop; images/s of each epoch."""
    import torch
    from torch.utils.data import DataLoader, Dataset

    from babyemo.models.registry import create_model
    from babyemo.transforms import normalize, train_transform

    class Preloaded(Dataset):
        def __init__(self, transform):
            self.transform = transform

        def __len__(self):
            return len(images)

        def __getitem__(self, i):
            return self.transform(images[i]), labels[i]

    torch.manual_seed(0)
    model = create_model(arch, num_classes=num_classes)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=0.05)
    criterion = torch.nn.CrossEntropyLoss(label_smoothing=0.1)
    loader = DataLoader(Preloaded(train_transform(spec, augment)), batch_size=batch_size,
                        shuffle=True, drop_last=True, num_workers=0)
    model.train()

    def step(x, y):
        x = normalize(x, spec)  # uint8 batch -> float input, as babyemo's loop does
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        optimizer.zero_grad(set_to_none=True)
        with torch.autocast("cpu", dtype=autocast_dtype or torch.bfloat16,
                            enabled=autocast_dtype is not None):
            loss = criterion(model(x).float(), y)
        loss.backward()
        optimizer.step()

    for i, (x, y) in enumerate(loader):  # warm-up: oneDNN picks and caches its kernels
        if i == warmup_batches:
            break
        step(x, y)
    rates = []
    for _ in range(epochs):
        t0, n = time.perf_counter(), 0
        for x, y in loader:
            step(x, y)
            n += len(y)
        rates.append(n / (time.perf_counter() - t0))
    return rates


def inference_rates(checkpoint: Path, images, *, batch_size: int,
                    batches: int) -> tuple[float, float]:
    """Images/s of the forward pass, ``(fast, fp32)``: babyemo's inference engine
    (``TorchEngine(precision="auto")``: batch norms folded, channels_last, bf16 autocast
    where the CPU has native bf16, ``inference_mode``) vs the checkpoint's plain model
    (NCHW fp32, ``no_grad``). Both get the same uint8 batches and normalise them; median
    batch time, the two timed alternately so that drift hits both."""
    import torch

    from babyemo.checkpoint import load_checkpoint
    from babyemo.engines import TorchEngine
    from babyemo.transforms import eval_transform, normalize

    ckpt = load_checkpoint(checkpoint)
    spec = ckpt.input_spec
    transform = eval_transform(spec)
    x_all = torch.stack([transform(images[i % len(images)]) for i in range(batch_size * batches)])
    engine = TorchEngine(ckpt, device="cpu", precision="auto")
    plain = ckpt.build_model("cpu")

    def run_plain(x):
        with torch.no_grad():
            plain(normalize(x, spec))

    times: dict = {engine.logits: [], run_plain: []}
    for b in range(-1, batches):  # batch -1 is a warm-up
        x = x_all[max(b, 0) * batch_size:(max(b, 0) + 1) * batch_size]
        for fn, ts in times.items():
            t0 = time.perf_counter()
            fn(x)
            if b >= 0:
                ts.append(time.perf_counter() - t0)
    return (batch_size / statistics.median(times[engine.logits]),
            batch_size / statistics.median(times[run_plain]))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DATA / "infant-emotions")
    p.add_argument("--arch", default="custom_resnet")
    p.add_argument("--image-size", type=int, default=None, help="default: the arch's own")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--epochs", type=int, default=6, help="babyemo epochs (>= 2; 1 is skipped)")
    p.add_argument("--fp32-epochs", type=int, default=2, help="timed epochs of the fp32 loop")
    p.add_argument("--infer-batch-size", type=int, default=64)
    p.add_argument("--infer-batches", type=int, default=12)
    args = p.parse_args()
    if args.epochs < 2:
        p.error("--epochs must be >= 2 (epoch 1 fills the cache and is not counted)")

    home = temp_home()

    from babyemo.config import TrainConfig
    from babyemo.data.preparation.prepare import prepare
    from babyemo.devices import resolve_device, resolve_precision
    from babyemo.models.registry import get_arch
    from babyemo.training import train

    print_machine()
    prepared = prepare(args.data)
    manifest = prepared.manifest
    class_names = list(manifest.class_names)
    rows = manifest.rows_for("train")
    spec = get_arch(args.arch).default_input.with_size(args.image_size)
    plan = resolve_precision("auto", resolve_device("cpu"))
    print(f"setup: {args.arch} at {spec.size} px, batch {args.batch_size}, "
          f"{len(rows)} train images, precision auto -> {plan.name}, channels_last")

    # (a) babyemo train
    config = TrainConfig(data=str(prepared.manifest_path), arch=args.arch,
                         image_size=args.image_size, epochs=args.epochs,
                         batch_size=args.batch_size, device="cpu",
                         out=str(Path(home.name) / "run"))
    result = train(config)
    for row in result.history:
        figure(f"babyemo train epoch {row['epoch']}", row["images_per_s"], "images/s")
    babyemo_rate = statistics.median(r["images_per_s"] for r in result.history[1:])
    figure("babyemo train (median of epochs 2+)", babyemo_rate, "images/s")
    figure("babyemo epoch wall incl. val + checkpoints (epochs 2+)",
           statistics.median(r["seconds"] for r in result.history[1:]), "s")

    # (b) hand loop, same images/arch/batch/precision/transform
    t0 = time.perf_counter()
    images = [decode(manifest.resolve(r), spec.size) for r in rows]
    labels = [class_names.index(r.label) for r in rows]
    figure("hand loop preload (decode once)", time.perf_counter() - t0, "s")
    common = dict(spec=spec, augment=config.augment, arch=args.arch,
                  num_classes=len(class_names), batch_size=args.batch_size)
    fast = hand_loop(images, labels, **common, epochs=args.epochs - 1,
                     autocast_dtype=plan.autocast_dtype, channels_last=True)
    for e, rate in enumerate(fast, 1):
        figure(f"hand loop {plan.name} + channels_last epoch {e}", rate, "images/s")
    fast_rate = figure(f"hand loop {plan.name} + channels_last (median)",
                       statistics.median(fast), "images/s")
    overhead = ratio("babyemo", "hand-loop", babyemo_rate, fast_rate)

    # (c) hand loop in plain fp32, no channels_last
    fp32 = hand_loop(images, labels, **common, epochs=args.fp32_epochs,
                     autocast_dtype=None, channels_last=False)
    fp32_rate = figure("hand loop fp32 (median)", statistics.median(fp32), "images/s")
    train_speedup = ratio(f"fast ({plan.name}+channels_last)", "fp32", fast_rate, fp32_rate)

    # (d) inference
    fast_inf, fp32_inf = inference_rates(result.best_checkpoint, images,
                                         batch_size=args.infer_batch_size,
                                         batches=args.infer_batches)
    figure(f"inference babyemo engine ({plan.name} + channels_last + folded batch norms + "
           f"inference_mode), batch {args.infer_batch_size}", fast_inf, "images/s")
    figure(f"inference fp32, batch {args.infer_batch_size}", fp32_inf, "images/s")
    infer_speedup = ratio("fast inference (babyemo engine)", "fp32",
                          fast_inf, fp32_inf)

    target("babyemo/hand-loop (overhead)", overhead, 0.9)
    target("training speed-up fast/fp32", train_speedup, 2.0)
    target("inference speed-up fast/fp32", infer_speedup, 2.5)
    home.cleanup()


if __name__ == "__main__":
    main()
