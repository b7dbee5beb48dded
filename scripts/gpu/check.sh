#!/usr/bin/env bash
# The GPU check of issue #16, run on the device machine after scripts/gpu/unpack.sh has
# unpacked the parts of a stage (see .gpu/PLAN.txt, written by scripts/gpu/pack.py):
#   bash scripts/gpu/check.sh main   # the main job on --device cuda: prepare (faces), train,
#                                    # evaluate, predict, export, timed
#   bash scripts/gpu/check.sh fer    # FER-2013 pretraining at full speed + PrivateTest
# Results (logs, metrics.csv, eval JSON, timings) go into $OUT/STAGE.tar.gz and
# $OUT/STAGE-summary.txt ($OUT: the device tool's return folder; ./gpu-out elsewhere).
# Uses the image's python3 (torch, torchvision, typer, rich, scikit-learn, OpenCV...)
# with babyemo from src/ and the carried wheels; nothing is installed system-wide.
# DEVICE=cpu EPOCHS=1 FER_EPOCHS=1 runs the same steps on a CPU (to check the script).
set -euo pipefail
cd "$(dirname "$0")/../.."
STAGE="${1:?usage: check.sh main|fer}"
W="${GPU_WORK:-/tmp/babyemo-gpu}"
OUT="${OUT:-$PWD/gpu-out}"
DEVICE="${DEVICE:-cuda}"
EPOCHS="${EPOCHS:-30}"
FER_EPOCHS="${FER_EPOCHS:-30}"
PY="${PYTHON:-python3}"
mkdir -p "$OUT"
R="$W/results/$STAGE"
rm -rf "$R" && mkdir -p "$R"
export PYTHONPATH="$PWD/src:$W/site${PYTHONPATH:+:$PYTHONPATH}"
export BABYEMO_HOME="$W/home" BABYEMO_DATASETS="$W/data" BABYEMO_MODELS="$W/models"
export PYTHONUNBUFFERED=1
SUMMARY="$OUT/$STAGE-summary.txt"
: > "$SUMMARY"
say() { echo "$*" | tee -a "$SUMMARY" >&2; }
bem() { "$PY" -m babyemo "$@"; }
timed() {  # timed NAME CMD...: run, log to $R/NAME.log, record seconds
  local name="$1"; shift
  local t0=$SECONDS rc=0
  "$@" >"$R/$name.log" 2>&1 || rc=$?
  say "$name: rc=$rc, $((SECONDS - t0)) s"
  if [ "$rc" != 0 ]; then tail -n 30 "$R/$name.log" >&2; fi
  return "$rc"
}
finish() {
  tar -czf "$OUT/$STAGE.tar.gz" --exclude="*.pt" --exclude="*.onnx" -C "$W/results" "$STAGE" 2>/dev/null || true
}
trap finish EXIT

# every part of this stage must have been unpacked (a part missing: a call was skipped)
"$PY" - "$STAGE" "$W" <<'PY'
import json, sys
from pathlib import Path
stage, work = sys.argv[1], Path(sys.argv[2])
index = json.load(open(".gpu/index.json"))
parts = [k for k, s in index["stages"].items() if s == stage]
missing = [k for k in parts if not (work / f".part-{k}").is_file()]
if missing:
    sys.exit(f"parts {missing} of stage {stage} not unpacked: run scripts/gpu/unpack.sh first")
print(f"stage {stage}: parts {parts} unpacked")
PY
say "machine: $(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null || echo no nvidia-smi); $(nproc) CPUs"
say "$("$PY" -c 'import torch, torchvision; print("torch", torch.__version__, "torchvision", torchvision.__version__, "cuda", torch.cuda.is_available())')"
say "device: $DEVICE"

median_ips() {  # median images/s of epochs 2.. of a run's metrics.csv
  "$PY" - "$1" <<'PY'
import csv, statistics, sys
rows = list(csv.DictReader(open(sys.argv[1])))
v = [float(r["images_per_s"]) for r in rows[1:]] or [float(r["images_per_s"]) for r in rows]
print(f"{statistics.median(v):.0f} images/s (median of epochs 2..{len(rows)}, train pass)")
PY
}

if [ "$STAGE" = main ]; then
  D="$R/data"; RUN="$R/run"
  timed prepare bem data prepare infant-emotions --faces yunet --out "$D"
  timed train bem train --data "$D/manifest.csv" --out "$RUN" --overwrite --name gpu-main \
    --device "$DEVICE" --epochs "$EPOCHS"
  say "train: $(median_ips "$RUN/metrics.csv")"
  timed evaluate bem evaluate --checkpoint "$RUN/best.pt" --data "$D/manifest.csv" \
    --split test --bootstrap 1000 --device "$DEVICE" --out "$R/eval"
  grep -E "macro|accuracy" "$R/evaluate.log" | head -n 6 | tee -a "$SUMMARY" >&2 || true
  timed predict bem predict "$W/data/baby-photos" --checkpoint "$RUN/best.pt" \
    --csv "$R/predictions.csv" --device "$DEVICE"
  say "predict: $(($(wc -l < "$R/predictions.csv") - 1)) rows"
  timed export bem export "$RUN/best.pt" --out "$R/model.onnx"
elif [ "$STAGE" = fer ]; then
  D="$R/fer2013"; RUN="$R/fer"
  timed prepare bem data prepare fer2013 --out "$D"
  timed metadata bem data metadata "$D" --out "$D/fer-meta.csv"
  # the FER pretraining recipe of scripts/build_packaged_models.sh, at full speed
  timed train bem train --data "$D" --arch custom_resnet --image-size 64 \
    --epochs "$FER_EPOCHS" --batch-size 64 --init none --out "$RUN" --overwrite --name gpu-fer \
    --device "$DEVICE"
  say "train: $(median_ips "$RUN/metrics.csv")"
  timed privatetest bem evaluate --checkpoint "$RUN/best.pt" --data "$D" --split test \
    --metadata "$D/fer-meta.csv" --where fer_subset=PrivateTest --bootstrap 1000 \
    --device "$DEVICE" --out "$R/privatetest"
  grep -E "macro|accuracy" "$R/privatetest.log" | head -n 6 | tee -a "$SUMMARY" >&2 || true
else
  echo "unknown stage $STAGE (main|fer)" >&2; exit 2
fi
say "stage $STAGE done"
