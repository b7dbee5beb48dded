#!/usr/bin/env bash
# The main job end to end: install, download + prepare infant-emotions (with face boxes),
# train the default recipe, evaluate on the held-out test split (bootstrap CIs, stock vs
# other photos, recorded in the checkpoint for its model card), predict over a folder of
# photos.
#   bash scripts/main_job.sh
# Offline, with local copies of the datasets and the face-detector model:
#   BABYEMO_DATASETS=../shared/data BABYEMO_MODELS=../shared/models bash scripts/main_job.sh
# PHOTOS=DIR chooses the folder to predict on (default: $BABYEMO_DATASETS/baby-photos when
# present, else the downloaded infant-emotions images). OUT=DIR chooses where results go.
#
# Every step is given its paths explicitly (no "last prepared" state, no default model),
# and the job runs in its own babyemo home, $OUT/home (downloads, model store), unless
# BABYEMO_HOME is set: other babyemo processes on the machine cannot change what it reads.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
export PATH="$PWD/.venv/bin:$PATH"
OUT="${OUT:-out/main-job}"
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"
export BABYEMO_HOME="${BABYEMO_HOME:-$OUT/home}"
DATA="$OUT/data"                # the prepared dataset: manifest.csv + dataset.json
RUN="$OUT/run"                  # the training run: best.pt, last.pt, metrics, curves
echo "main job: results in $OUT, babyemo home $BABYEMO_HOME" >&2
START=$SECONDS

babyemo data download infant-emotions
babyemo data prepare infant-emotions --faces yunet --out "$DATA"   # face boxes, detected once
babyemo data inspect "$DATA/manifest.csv" > "$OUT/inspect.txt"
babyemo data metadata "$DATA/manifest.csv" --out "$OUT/stock.csv" > /dev/null
# the default recipe (docs/recipes.md): custom_resnet fine-tuned from the packaged FER-2013
# model (--init auto) on face crops (--faces auto), 112 px, 30 epochs
babyemo train --data "$DATA/manifest.csv" --out "$RUN" --overwrite --name main-job
babyemo evaluate --checkpoint "$RUN/best.pt" --data "$DATA/manifest.csv" --split test \
  --bootstrap 1000 --slice-by source --metadata "$OUT/stock.csv" --out "$OUT/eval" --record
babyemo models card "$RUN/best.pt" --out "$OUT/model-card.md"
if [ -z "${PHOTOS:-}" ]; then
  if [ -n "${BABYEMO_DATASETS:-}" ] && [ -d "$BABYEMO_DATASETS/baby-photos" ]; then
    PHOTOS="$BABYEMO_DATASETS/baby-photos"
  else
    PHOTOS="$(babyemo data download infant-emotions)"
  fi
fi
babyemo predict "$PHOTOS" --checkpoint "$RUN/best.pt" --csv "$OUT/predictions.csv"
echo "main job done in $(( (SECONDS - START) / 60 ))m$(( (SECONDS - START) % 60 ))s after install; results in $OUT" >&2
