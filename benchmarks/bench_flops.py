"""Achieved GFLOP/s of the default model's forward pass vs a square matmul, in bf16 and
fp32, measured in the same run.

    .venv/bin/python benchmarks/bench_flops.py [--arch custom_resnet] [--batch-size 64] [--n 2048]

FLOPs of the forward are counted once with ``torch.utils.flop_counter.FlopCounterMode``
(convolutions and matmuls, 2 FLOPs per multiply-add); a ``n x n x n`` matmul is
``2 n^3`` FLOPs. The fast-path forward is babyemo's inference path: batch norms folded
into the convolutions (``babyemo.engines.fold_batchnorm``), channels_last, bf16 autocast
where the CPU has native bf16, under ``torch.inference_mode``; the fp32 forward is the plain
model (contiguous, no autocast). Both are credited with the plain model's FLOPs.
"""

from __future__ import annotations

import argparse
import copy

from _common import figure, median_seconds, print_machine, ratio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--arch", default="custom_resnet")
    p.add_argument("--image-size", type=int, default=None, help="default: the arch's own")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--n", type=int, default=2048, help="matmul side")
    p.add_argument("--repeat", type=int, default=10)
    args = p.parse_args()

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from babyemo.models.registry import create_model, get_arch

    print_machine()
    spec = get_arch(args.arch).default_input.with_size(args.image_size)
    torch.manual_seed(0)
    model = create_model(args.arch, num_classes=3).eval()
    x = torch.randn(args.batch_size, spec.channels, spec.size, spec.size)
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(x)
    flops = counter.get_total_flops()
    print(f"setup: {args.arch} at {spec.size} px, batch {args.batch_size}, "
          f"matmul {args.n}x{args.n}x{args.n}")
    figure("forward FLOPs per image", flops / args.batch_size / 1e9, "GFLOP", digits=3)

    from babyemo.devices import cpu_has_native_bf16

    native_bf16 = cpu_has_native_bf16()
    from babyemo.engines import fold_batchnorm

    fast_model = fold_batchnorm(copy.deepcopy(model)).to(memory_format=torch.channels_last)
    with torch.inference_mode():
        fp32_s = median_seconds(lambda: model(x), args.repeat)
        x_cl = x.contiguous(memory_format=torch.channels_last)

        def fast() -> None:  # what precision=auto runs: bf16 only where the CPU has it
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=native_bf16):
                fast_model(x_cl)

        fast_s = median_seconds(fast, args.repeat)
        a32, b32 = torch.randn(args.n, args.n), torch.randn(args.n, args.n)
        mm_flops = 2 * args.n ** 3
        mm32_s = median_seconds(lambda: a32 @ b32, args.repeat)
        if native_bf16:
            a16, b16 = a32.bfloat16(), b32.bfloat16()
            mm16_s = median_seconds(lambda: a16 @ b16, args.repeat)

    fast_name = ("forward " + ("bf16" if native_bf16 else "fp32")
                 + " + channels_last + folded batch norms")
    fwd_fast = figure(fast_name, flops / fast_s / 1e9, "GFLOP/s")
    fwd32 = figure("forward fp32", flops / fp32_s / 1e9, "GFLOP/s")
    mm32 = figure("matmul fp32", mm_flops / mm32_s / 1e9, "GFLOP/s")
    figure(fast_name, args.batch_size / fast_s, "images/s")
    figure("forward fp32", args.batch_size / fp32_s, "images/s")
    ratio("forward fp32", "matmul fp32", fwd32, mm32)
    ratio(fast_name, "forward fp32", fwd_fast, fwd32)
    if native_bf16:
        mm16 = figure("matmul bf16", mm_flops / mm16_s / 1e9, "GFLOP/s")
        ratio(fast_name, "matmul bf16", fwd_fast, mm16)
        ratio("matmul bf16", "matmul fp32", mm16, mm32)
    else:
        print("bf16: skipped (this CPU has no native bf16; emulated bf16 is not a fast path)")
        ratio(fast_name, "matmul fp32", fwd_fast, mm32)

if __name__ == "__main__":
    main()
