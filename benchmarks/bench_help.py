"""CLI start-up: wall time of `babyemo --help` vs `python -c "import torch"`.

    .venv/bin/python benchmarks/bench_help.py [--help-runs 5] [--torch-runs 3]

Each command runs in a fresh subprocess (the medians include interpreter start-up);
the first run of each is a warm-up for the file cache and is not counted.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from _common import median_seconds, print_machine, ratio, target


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--help-runs", type=int, default=5)
    p.add_argument("--torch-runs", type=int, default=3)
    args = p.parse_args()

    babyemo = Path(sys.executable).with_name("babyemo")
    if not babyemo.exists():
        p.error(f"{babyemo} not found: install babyemo in this venv (pip install -e .)")

    def run(cmd: list[str]) -> None:
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    print_machine()
    help_s = median_seconds(lambda: run([str(babyemo), "--help"]), args.help_runs)
    torch_s = median_seconds(lambda: run([sys.executable, "-c", "import torch"]),
                             args.torch_runs)
    python_s = median_seconds(lambda: run([sys.executable, "-c", "pass"]), args.help_runs)
    print(f"babyemo --help (median of {args.help_runs}): {help_s:.3f} s")
    print(f'python -c "import torch" (median of {args.torch_runs}): {torch_s:.3f} s')
    print(f'python -c "pass" (median of {args.help_runs}): {python_s:.3f} s')
    ratio("babyemo --help", "import torch", help_s, torch_s)
    target("babyemo --help", help_s, 0.5, at_most=True, unit=" s")


if __name__ == "__main__":
    main()
