"""Pack what the GPU check (scripts/gpu/check.sh) needs into parts that each fit one call of
the workplace's device tool, which sends the working tree plus at most 64 MiB in all.

    .venv/bin/python scripts/gpu/pack.py [--data ../shared/data] [--models ../shared/models]

Writes ``.gpu/`` (ignored by git; never commit it: it holds copies of the datasets):
``part-K/data.zip`` (stored, not recompressed), ``wheels/`` (packages the device image
lacks, see ``--wheel``), ``index.json`` (the stage of each part, for the check to verify
that all parts of its stage were unpacked) and ``PLAN.txt`` (the device calls to make, in
order). Stage ``main`` (infant-emotions, baby-photos, the face detector) comes first, then
stage ``fer`` (FER-2013), so the main job can run as soon as its parts are there.

Infant and baby photos are shrunk to at most ``--max-side`` pixels (JPEG quality 90; the
original bytes when those are smaller), so that stage ``main`` fits one call; the GPU check
measures the CUDA path and images/s, while accuracy figures come from the full-size CPU
runs. FER-2013 files are copied byte for byte. Standard library plus Pillow only.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LIMIT_MIB = 64  # the device tool's limit on what one call sends


def tree_bytes() -> int:
    """Bytes of the tracked files (they travel with every call)."""
    out = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, check=True,
                         capture_output=True).stdout.split(b"\0")
    return sum((ROOT / p.decode()).stat().st_size for p in out if p)


def shrunk(path: Path, max_side: int) -> bytes:
    """The JPEG bytes of ``path`` at most ``max_side`` pixels on its longer side (the
    original bytes when they are smaller, or the file is not decodable)."""
    from PIL import Image, ImageOps

    data = path.read_bytes()
    try:
        with Image.open(io.BytesIO(data)) as im:
            if max(im.size) <= max_side:
                return data
            im = ImageOps.exif_transpose(im).convert("RGB")
            im.thumbnail((max_side, max_side))
            buf = io.BytesIO()
            im.save(buf, "JPEG", quality=90)
            return min(buf.getvalue(), data, key=len)
    except Exception:  # a corrupt file travels as it is: the check must see it too
        return data


def entries(data: Path, models: Path, max_side: int) -> list[tuple[str, str, bytes | Path]]:
    """``(stage, archive name, bytes or source path)`` in packing order."""
    out: list[tuple[str, str, bytes | Path]] = []
    for f in sorted(models.iterdir()):
        if f.is_file():
            out.append(("main", f"models/{f.name}", f))
    for name, shrink in (("infant-emotions", True), ("baby-photos", True)):
        for f in sorted((data / name).rglob("*")):
            if f.is_file():
                rel = f"data/{f.relative_to(data).as_posix()}"
                out.append(("main", rel, shrunk(f, max_side) if shrink else f))
    for f in sorted((data / "fer2013").rglob("*")):
        if f.is_file():
            out.append(("fer", f"data/{f.relative_to(data).as_posix()}", f))
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT.parent / "shared" / "data")
    p.add_argument("--models", type=Path, default=ROOT.parent / "shared" / "models")
    p.add_argument("--out", type=Path, default=ROOT / ".gpu")
    p.add_argument("--max-side", type=int, default=384, help="pixels (infant photos)")
    p.add_argument("--margin-mib", type=float, default=3.0,
                   help="room kept for untracked files and zip overhead")
    p.add_argument("--wheel", action="append", default=["platformdirs"],
                   help="pure-Python packages the device image lacks (repeatable)")
    args = p.parse_args()

    cap = int((LIMIT_MIB - args.margin_mib) * 2**20) - tree_bytes()
    if cap < 8 * 2**20:
        print(f"only {cap / 2**20:.1f} MiB per part left beside the tree", file=sys.stderr)
        return 1
    if args.out.exists():
        shutil.rmtree(args.out)
    args.out.mkdir(parents=True)
    wheels = args.out / "wheels"
    subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--no-deps",
                    "--only-binary=:all:", "-d", str(wheels), *args.wheel], check=True)
    cap -= sum(f.stat().st_size for f in wheels.iterdir())  # wheels travel with part 1 too

    parts: list[tuple[str, list[tuple[str, bytes | Path]]]] = []
    size = cap + 1
    for stage, name, src in entries(args.data, args.models, args.max_side):
        n = len(src) if isinstance(src, bytes) else src.stat().st_size
        n += 100 + len(name)  # local header + central directory entry, roughly
        if size + n > cap or parts[-1][0] != stage:
            parts.append((stage, []))
            size = 0
        parts[-1][1].append((name, src))
        size += n
    for k, (_, files) in enumerate(parts, 1):
        folder = args.out / f"part-{k}"
        folder.mkdir()
        with zipfile.ZipFile(folder / "data.zip", "w", zipfile.ZIP_STORED) as zf:
            for name, src in files:
                if isinstance(src, bytes):
                    zf.writestr(name, src)
                else:
                    zf.write(src, name)
    stages = {k: stage for k, (stage, _) in enumerate(parts, 1)}
    (args.out / "index.json").write_text(json.dumps(
        {"parts": len(parts), "stages": stages,
         "files": {k: len(files) for k, (_, files) in enumerate(parts, 1)}}, indent=1))
    last_main = max(k for k, s in stages.items() if s == "main")
    lines = ["Device calls, back to back (the machine goes back after 30 s idle and /tmp "
             "with it):"]
    for k in range(1, len(parts) + 1):
        carry = [".gpu/index.json", f".gpu/part-{k}"] + ([".gpu/wheels"] if k == 1 else [])
        cmd = f"bash scripts/gpu/unpack.sh {k}"
        if k == last_main:
            cmd += " && bash scripts/gpu/check.sh main"
        if k == len(parts):
            cmd += " && bash scripts/gpu/check.sh fer"
        lines.append(f"  carry={json.dumps(carry)}  command: {cmd}")
    (args.out / "PLAN.txt").write_text("\n".join(lines) + "\n")
    for k, (stage, files) in enumerate(parts, 1):
        mib = (args.out / f"part-{k}" / "data.zip").stat().st_size / 2**20
        print(f"part-{k} ({stage}): {len(files)} files, {mib:.1f} MiB")
    print((args.out / "PLAN.txt").read_text(), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
