#!/usr/bin/env bash
# Rebuild the models packaged in babyemo/models/weights/ (see docs/recipes.md):
#   1. babyemo-fer2013: custom_resnet pretrained on FER-2013's training images (64 px);
#   2. the default recipe on infant-emotions' train split (its temperature is fitted on val);
#   3. babyemo-infant: the same recipe on train+val, given step 2's temperature, evaluated
#      once on the held-out test split (recorded in the file, with the stock/other slices).
# Usage, offline with local copies of the datasets:
#   BABYEMO_DATASETS=../shared/data BABYEMO_MODELS=../shared/models \
#     bash scripts/build_packaged_models.sh
# Takes about 35 minutes on a 2-core CPU (most of it the FER-2013 pretraining).
# WORK=DIR keeps the runs (default: out/packaged); FER_EPOCHS, EPOCHS override the recipe.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
WORK="${WORK:-out/packaged}"
FER_EPOCHS="${FER_EPOCHS:-12}"
EPOCHS="${EPOCHS:-30}"
WEIGHTS=src/babyemo/models/weights
export BABYEMO_HOME="$WORK/home"
mkdir -p "$WORK" "$WEIGHTS"

babyemo data download fer2013 >/dev/null
babyemo data prepare fer2013 --out "$WORK/fer2013"
babyemo train --data "$WORK/fer2013" --arch custom_resnet --image-size 64 \
  --epochs "$FER_EPOCHS" --batch-size 64 --out "$WORK/fer" --overwrite --name fer
babyemo data metadata "$WORK/fer2013" --out "$WORK/fer2013/fer-meta.csv" >/dev/null
babyemo evaluate --model fer --data "$WORK/fer2013" --split test --metadata "$WORK/fer2013/fer-meta.csv" \
  --where fer_subset=PrivateTest --bootstrap 1000 --record --out "$WORK/fer-privatetest"
babyemo evaluate --model fer --data "$WORK/fer2013" --split test --metadata "$WORK/fer2013/fer-meta.csv" \
  --where fer_subset=PrivateTest --where train_duplicate=no --bootstrap 1000 --record \
  --out "$WORK/fer-privatetest-dedup"

babyemo data download infant-emotions >/dev/null
babyemo data prepare infant-emotions --faces yunet --out "$WORK/infant"
babyemo data metadata "$WORK/infant" --out "$WORK/infant/stock.csv" >/dev/null
# the default recipe (docs/recipes.md), fine-tuned from step 1's model
RECIPE=(--arch custom_resnet --image-size 112 --faces auto --epochs "$EPOCHS" --init "$WORK/fer/best.pt")
babyemo train --data "$WORK/infant" "${RECIPE[@]}" --out "$WORK/infant-train" --overwrite --name infant-train
babyemo train --data "$WORK/infant" "${RECIPE[@]}" --train-on train,val --out "$WORK/infant-final" \
  --overwrite --name infant-final
babyemo calibrate --checkpoint "$WORK/infant-final/best.pt" --copy-from "$WORK/infant-train/best.pt"
babyemo evaluate --checkpoint "$WORK/infant-final/best.pt" --data "$WORK/infant" --split test \
  --bootstrap 1000 --slice-by source --metadata "$WORK/infant/stock.csv" --record \
  --out "$WORK/infant-test"
# cross-dataset: each model on the other's data (crying ~ sad)
babyemo evaluate --checkpoint "$WORK/infant-final/best.pt" --data "$WORK/fer2013" --split test \
  --label-map crying=sad --faces none --bootstrap 1000 --record
babyemo evaluate --model fer --data "$WORK/infant" --split test --label-map crying=sad \
  --bootstrap 1000 --record

cp "$WORK/fer/best.pt" "$WEIGHTS/babyemo-fer2013.pt"
cp "$WORK/infant-final/best.pt" "$WEIGHTS/babyemo-infant.pt"
babyemo models card babyemo-infant --out docs/model-card.md
babyemo models card babyemo-fer2013 --out docs/model-card-fer2013.md
ls -l "$WEIGHTS"
