#!/usr/bin/env bash
# The main job end to end: install, download + prepare infant-emotions (with face boxes),
# train the default recipe, evaluate on the held-out test split (bootstrap CIs, stock vs
# other photos), predict over a folder of photos.
#   bash scripts/main_job.sh
# Offline, with local copies of the datasets and the face-detector model:
#   BABYEMO_DATASETS=../shared/data BABYEMO_MODELS=../shared/models bash scripts/main_job.sh
# PHOTOS=DIR chooses the folder to predict on (default: $BABYEMO_DATASETS/baby-photos when
# present, else the downloaded infant-emotions images). OUT=DIR chooses where results go.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
OUT="${OUT:-out/main-job}"
mkdir -p "$OUT"
babyemo data download infant-emotions
babyemo data prepare infant-emotions --faces yunet      # face boxes, detected once
babyemo data inspect > "$OUT/inspect.txt"
babyemo data metadata infant-emotions --out "$OUT/stock.csv" > /dev/null
# the default recipe (docs/recipes.md): custom_resnet fine-tuned from the packaged FER-2013
# model (--init auto) on face crops (--faces auto), 112 px, 30 epochs
babyemo train --out "$OUT/run" --overwrite --name main-job
babyemo evaluate --model main-job --split test --bootstrap 1000 --slice-by source \
  --metadata "$OUT/stock.csv" --out "$OUT/eval"
if [ -z "${PHOTOS:-}" ]; then
  if [ -n "${BABYEMO_DATASETS:-}" ] && [ -d "$BABYEMO_DATASETS/baby-photos" ]; then
    PHOTOS="$BABYEMO_DATASETS/baby-photos"
  else
    PHOTOS="$(babyemo data download infant-emotions)"
  fi
fi
babyemo predict "$PHOTOS" --model main-job --csv "$OUT/predictions.csv"
echo "results in $OUT"
