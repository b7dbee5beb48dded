"""Face recall and detection time of ``yunet`` alone vs ``yunet`` with its second pass
(turned, padded copies where the first pass finds no face), and a contact sheet of every
face only the second pass finds, to look at for false faces and upside-down crops.

    .venv/bin/python benchmarks/bench_faces.py [FOLDER] [--sheet faces.png]

``FOLDER`` (default: ``../shared/data/infant-emotions``) is searched recursively; with one
sub-folder per class, recall is given per class. Each photo is decoded once and given to
both detectors one after the other (alternated, so that a busy machine slows both alike);
wall time and process CPU time per photo are summed over the photos. The sheet shows each
second-pass face as ``babyemo.faces.crop_face`` cuts it (eyes levelled, margin 0.25), with
its file name, score and the angle of the copy it was found on. Needs the YuNet model file
(``BABYEMO_MODELS=../shared/models``, or a download).
"""

from __future__ import annotations

import argparse
import time
from collections import defaultdict
from pathlib import Path

from _common import DATA


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", nargs="?", type=Path, default=DATA / "infant-emotions")
    parser.add_argument("--sheet", type=Path, default=None,
                        help="PNG contact sheet of the faces only the second pass finds")
    args = parser.parse_args()

    from babyemo.data.loading.images import is_candidate, load_image
    from babyemo.faces import get_detector

    folder = args.folder
    files = sorted(p for p in folder.rglob("*") if p.is_file() and is_candidate(p))
    plain, second = get_detector("yunet", second_pass=False), get_detector("yunet")
    warm = load_image(files[0], 3)
    plain.detect(warm)
    second.detect(warm)
    second.reset_timing()
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # photos, before, after
    wall = {"yunet alone": 0.0, "with second pass": 0.0}
    cpu = dict.fromkeys(wall, 0.0)
    gained = []
    for path in files:
        image = load_image(path, 3)
        found = {}
        for name, det in (("yunet alone", plain), ("with second pass", second)):
            t0, c0 = time.perf_counter(), time.process_time()
            found[name] = det.detect(image)
            wall[name] += time.perf_counter() - t0
            cpu[name] += time.process_time() - c0
        group = path.parent.name if path.parent != folder else folder.name
        c = counts[group]
        c[0] += 1
        c[1] += bool(found["yunet alone"])
        c[2] += bool(found["with second pass"])
        if found["with second pass"] and not found["yunet alone"]:
            gained.append((path, found["with second pass"][0]))

    n = len(files)
    print(f"{folder}: {n} photos")
    total = [sum(c[i] for c in counts.values()) for i in range(3)]
    for group, (k, before, after) in [*sorted(counts.items()), ("all", total)]:
        print(f"  faces {group}: {before}/{k} ({before / k:.1%}) yunet alone, "
              f"{after}/{k} ({after / k:.1%}) with second pass")
    for name in wall:
        print(f"  detection time {name}: {1000 * wall[name] / n:.1f} ms/photo wall, "
              f"{1000 * cpu[name] / n:.1f} ms/photo CPU")
    runs = max(1, second.second_pass_calls)
    extra = wall["with second pass"] - wall["yunet alone"]
    print(f"  second pass: ran on {second.second_pass_calls} photos, found a face in "
          f"{second.second_pass_found}; {1000 * extra / runs:.0f} ms wall more per photo it "
          "ran on")
    if args.sheet is not None:
        write_sheet(gained, args.sheet)
        print(f"  sheet: {args.sheet} ({len(gained)} faces found only by the second pass)")


def write_sheet(faces: list, out: Path, side: int = 160, cols: int = 6) -> None:
    """A grid of the aligned crops of ``faces`` (``(path, Face)`` pairs), captioned."""
    from PIL import Image, ImageDraw

    from babyemo.data.loading.images import load_image
    from babyemo.faces import CropSpec, crop_face

    rows = max(1, (len(faces) + cols - 1) // cols)
    sheet = Image.new("RGB", (cols * side, rows * (side + 26)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (path, face) in enumerate(faces):
        x, y = (i % cols) * side, (i // cols) * (side + 26)
        sheet.paste(crop_face(load_image(path, 3), face, CropSpec(), out_size=side), (x, y))
        draw.text((x + 2, y + side + 1), f"{i} {path.name[:24]}", fill="black")
        draw.text((x + 2, y + side + 13), f"score {face.score:.2f}, turned {face.rotation:.0f}",
                  fill="black")
    sheet.save(out)


if __name__ == "__main__":
    main()
