"""Training and inference images/s of registry architectures, side by side, and their size.

    .venv/bin/python benchmarks/bench_archs.py [--archs custom_resnet,resnet18,...]
        [--sizes 64,112] [--batch-size 64]

For each arch and input side: parameters, fp32 checkpoint size (MB), training images/s (one
AdamW step per batch of random images, fp32 + channels_last, the path ``babyemo train``
takes on a CPU without bf16) and inference images/s (``torch.inference_mode``), then each
arch's ratio to the first. Used to choose the packaged model's arch (docs/recipes.md).
"""

from __future__ import annotations

import argparse

from _common import figure, median_seconds, print_machine, ratio


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--archs", default="custom_resnet,resnet18,mobilenet_v3_large,"
                                      "efficientnet_b0")
    p.add_argument("--sizes", default="64,112")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--repeat", type=int, default=4)
    args = p.parse_args()

    import torch

    from babyemo.models.registry import create_model

    print_machine()
    n = args.batch_size
    results: dict[tuple[str, int], tuple[float, float]] = {}
    for arch in args.archs.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            model = create_model(arch, num_classes=3).to(memory_format=torch.channels_last)
            params = sum(t.numel() for t in model.parameters())
            mb = sum(t.numel() * t.element_size() for t in model.state_dict().values()) / 1e6
            opt = torch.optim.AdamW(model.parameters())
            x = torch.randn(n, 3, size, size).contiguous(memory_format=torch.channels_last)
            y = torch.randint(0, 3, (n,))

            def step(model=model, opt=opt, x=x, y=y) -> None:
                loss = torch.nn.functional.cross_entropy(model(x), y)
                opt.zero_grad()
                loss.backward()
                opt.step()

            model.train()
            train_s = median_seconds(step, args.repeat)
            model.eval()

            def infer(model=model, x=x) -> None:
                with torch.inference_mode():
                    model(x)

            infer_s = median_seconds(infer, args.repeat)
            print(f"{arch} {size}px: {params / 1e6:.2f}M parameters, {mb:.1f} MB fp32")
            results[(arch, size)] = (figure(f"{arch} {size}px train", n / train_s, "img/s"),
                                     figure(f"{arch} {size}px inference", n / infer_s, "img/s"))
    first = args.archs.split(",")[0]
    for (arch, size), (tr, inf) in results.items():
        if arch != first:
            base_tr, base_inf = results[(first, size)]
            ratio(f"{first} train {size}px", f"{arch}", base_tr, tr)
            ratio(f"{first} inference {size}px", f"{arch}", base_inf, inf)


if __name__ == "__main__":
    main()
