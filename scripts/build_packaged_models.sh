#!/usr/bin/env bash
# Rebuild the models packaged in babyemo/models/weights/ (see docs/recipes.md):
#   1. babyemo-fer2013: custom_resnet pretrained on FER-2013's training images (80 px,
#      60 epochs; best epoch by val macro-F1);
#   2. the default recipe cross-validated on infant-emotions' train+val images (`--folds 5`:
#      out-of-fold predictions for all 866 of them);
#   3. babyemo-infant: the same recipe on train+val, its temperature fitted on step 2's
#      out-of-fold logits (`calibrate --oof`), evaluated once on the held-out test split
#      (recorded in the file, with the stock/other slices).
# Usage, offline with local copies of the datasets:
#   BABYEMO_DATASETS=../shared/data BABYEMO_MODELS=../shared/models \
#     bash scripts/build_packaged_models.sh
# Takes about 75 minutes on a 2-core CPU with AVX-512 bf16 (60 of them the FER-2013
# pretraining, 10 the five folds); about three times that on an AVX2-only CPU.
# WORK=DIR keeps the runs (default: out/packaged); FER_EPOCHS, FER_SIZE, EPOCHS override the
# recipe. A FER-2013 run cut short continues with its train command, --resume in place of
# --overwrite.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$PWD/.venv/bin:$PATH"
WORK="${WORK:-out/packaged}"
FER_EPOCHS="${FER_EPOCHS:-60}"
FER_SIZE="${FER_SIZE:-80}"
EPOCHS="${EPOCHS:-30}"
WEIGHTS=src/babyemo/models/weights
export BABYEMO_HOME="$WORK/home"
mkdir -p "$WORK" "$WEIGHTS"

babyemo data download fer2013 >/dev/null
babyemo data prepare fer2013 --out "$WORK/fer2013"
babyemo train --data "$WORK/fer2013" --arch custom_resnet --image-size "$FER_SIZE" \
  --epochs "$FER_EPOCHS" --init none --batch-size 64 --out "$WORK/fer" --overwrite --name fer
babyemo data metadata "$WORK/fer2013" --out "$WORK/fer2013/fer-meta.csv" >/dev/null
babyemo evaluate --model fer --data "$WORK/fer2013" --split test --metadata "$WORK/fer2013/fer-meta.csv" \
  --where fer_subset=PrivateTest --bootstrap 1000 --record --out "$WORK/fer-privatetest"
babyemo evaluate --model fer --data "$WORK/fer2013" --split test --metadata "$WORK/fer2013/fer-meta.csv" \
  --where fer_subset=PrivateTest --where train_duplicate=no --bootstrap 1000 --record \
  --out "$WORK/fer-privatetest-dedup"

babyemo data download infant-emotions >/dev/null
babyemo data prepare infant-emotions --faces yunet --out "$WORK/infant"
babyemo data metadata "$WORK/infant" --out "$WORK/infant/stock.csv" >/dev/null
# cross-dataset (crying ~ sad), recorded in the FER-2013 file (the infant model records its
# donor as the run `fer`; its card names babyemo-fer2013 by the digest of the donor's weights,
# which recording an evaluation does not change)
babyemo evaluate --model fer --data "$WORK/infant" --split test --label-map crying=sad \
  --bootstrap 1000 --record
# the default recipe (docs/recipes.md), fine-tuned from step 1's model
RECIPE=(--arch custom_resnet --image-size 112 --faces auto --epochs "$EPOCHS" --init "$WORK/fer/best.pt")
babyemo train --data "$WORK/infant" "${RECIPE[@]}" --folds 5 --out "$WORK/infant-cv5" --overwrite
babyemo train --data "$WORK/infant" "${RECIPE[@]}" --train-on train,val --out "$WORK/infant-final" \
  --overwrite --name infant-final
babyemo calibrate --checkpoint "$WORK/infant-final/best.pt" --oof "$WORK/infant-cv5"
babyemo evaluate --checkpoint "$WORK/infant-final/best.pt" --data "$WORK/infant" --split test \
  --bootstrap 1000 --slice-by source --metadata "$WORK/infant/stock.csv" --record \
  --out "$WORK/infant-test"
# cross-dataset: the infant model on FER-2013 (crying ~ sad)
babyemo evaluate --checkpoint "$WORK/infant-final/best.pt" --data "$WORK/fer2013" --split test \
  --label-map crying=sad --faces none --bootstrap 1000 --record

cp "$WORK/fer/best.pt" "$WEIGHTS/babyemo-fer2013.pt"
cp "$WORK/infant-final/best.pt" "$WEIGHTS/babyemo-infant.pt"
babyemo models card babyemo-infant --out docs/model-card.md
babyemo models card babyemo-fer2013 --out docs/model-card-fer2013.md
ls -l "$WEIGHTS"
