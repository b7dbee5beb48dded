#!/usr/bin/env bash
# The main job end to end: install, download + prepare infant-emotions, train the default
# recipe, evaluate on the held-out test split, predict over a folder of photos.
#   bash scripts/main_job.sh
# Offline, with local copies of the datasets:  BABYEMO_DATASETS=../shared/data bash scripts/main_job.sh
# PHOTOS=DIR chooses the folder to predict on (default: $BABYEMO_DATASETS/baby-photos when
# present, else the downloaded infant-emotions images). OUT=DIR chooses where results go.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
OUT="${OUT:-out/main-job}"
mkdir -p "$OUT"
babyemo data download infant-emotions
babyemo data prepare infant-emotions
babyemo data inspect > "$OUT/inspect.txt"
babyemo train --arch resnet18 --out "$OUT/run" --overwrite --name main-job-resnet18
babyemo evaluate --model main-job-resnet18 --split test --out "$OUT/eval"
if [ -z "${PHOTOS:-}" ]; then
  if [ -n "${BABYEMO_DATASETS:-}" ] && [ -d "$BABYEMO_DATASETS/baby-photos" ]; then
    PHOTOS="$BABYEMO_DATASETS/baby-photos"
  else
    PHOTOS="$(babyemo data download infant-emotions)"
  fi
fi
babyemo predict "$PHOTOS" --model main-job-resnet18 --csv "$OUT/predictions.csv"
echo "results in $OUT"
