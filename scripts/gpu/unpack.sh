#!/usr/bin/env bash
# On the device machine: unpack part K of .gpu/ (made by scripts/gpu/pack.py) into
# $GPU_WORK (default /tmp/babyemo-gpu), and install the carried wheels with part 1.
#   bash scripts/gpu/unpack.sh K
set -euo pipefail
cd "$(dirname "$0")/../.."
K="$1"
W="${GPU_WORK:-/tmp/babyemo-gpu}"
mkdir -p "$W"
"${PYTHON:-python3}" - "$K" "$W" <<'PY'
import sys, zipfile
k, work = sys.argv[1], sys.argv[2]
with zipfile.ZipFile(f".gpu/part-{k}/data.zip") as zf:
    zf.extractall(work)
    n = len(zf.namelist())
open(f"{work}/.part-{k}", "w").write(f"{n}\n")  # check.sh looks for every part's marker
print(f"part {k}: {n} files into {work}")
PY
if [ -d .gpu/wheels ]; then
  "${PYTHON:-python3}" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
    --target "$W/site" .gpu/wheels/*.whl
fi
