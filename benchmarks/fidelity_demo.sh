#!/usr/bin/env bash
# How far a demo leaderboard can be trusted: a demo step-1 search, then `fidelity` on all its trials.
#   benchmarks/fidelity_demo.sh [NAME]   (defaults: the demo's step 1 as `make demo` runs it, 6 trials x 20
#   epochs at 192 px on 200 + 50 images, then 6 trials x 2 seeds at 20 and 80 epochs: hours on 2 cores).
# A smaller run sets EPOCHS, LONG_EPOCHS, IMG_SIZE, TRAIN_IMAGES, VAL_IMAGES, SEEDS, DATA and RESULTS_DIR, e.g.
#   EPOCHS=4 IMG_SIZE=128 TRAIN_IMAGES=60 VAL_IMAGES=20 benchmarks/fidelity_demo.sh fid-small
# A finished search or fidelity run is kept and reused (run it again after an interruption to continue).
set -euo pipefail
cd "$(dirname "$0")/.."
NAME=${1:-demo-step1}
BIN=${SCRFD_BIN:-.venv/bin}
EPOCHS=${EPOCHS:-20}
IMG_SIZE=${IMG_SIZE:-192}
TRAIN_IMAGES=${TRAIN_IMAGES:-200}
VAL_IMAGES=${VAL_IMAGES:-50}
SEEDS=${SEEDS:-2}
LONG_EPOCHS=${LONG_EPOCHS:-$((4 * EPOCHS))}
DATA=${DATA:-data/demo-${TRAIN_IMAGES}-${VAL_IMAGES}}
RESULTS=${RESULTS_DIR:-results}
if [ ! -f "$DATA/wider_face_split/wider_face_val_bbx_gt.txt" ]; then
  "$BIN/scrfd-search" demo-data --out "$DATA" --train "$TRAIN_IMAGES" --val "$VAL_IMAGES" --seed 0 \
    --min-width 192 --max-width 256 --min-face 20
fi
if [ ! -f "$RESULTS/$NAME/experiment.json" ]; then
  "$BIN/scrfd-search" launch --space search_spaces/demo_0.5gf_step1.yaml --name "$NAME" --data "$DATA" \
    --trials 6 --epochs "$EPOCHS" --img-size "$IMG_SIZE" --batch-size 4 --lr 0.01 --cpus-per-trial 1 --seed 0 \
    --results-dir "$RESULTS" --quiet
else
  "$BIN/scrfd-search" resume "$NAME" --results-dir "$RESULTS" --quiet || true  # finished: nothing to do
fi
start=$(date +%s)
"$BIN/scrfd-search" fidelity "$NAME" --sample 6 --seeds "$SEEDS" --epochs "$LONG_EPOCHS" --results-dir "$RESULTS"
echo "[fidelity_demo] fidelity took $(( $(date +%s) - start )) s; report in $RESULTS/$NAME/fidelity/fidelity.json"
"$BIN/scrfd-search" status "$NAME" --results-dir "$RESULTS" | head -12
