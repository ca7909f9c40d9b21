#!/usr/bin/env bash
# The main job on the embedded default: demo data, then the paper's two-step search at the 0.5 GF budget
# (basic-block demo spaces: search_spaces/demo_0.5gf_step*.yaml say why),
# small enough for a 2-core CPU (a handful of trials, 192 px images, a few epochs each).
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data/demo}
NAME=${2:-demo}
BIN=.venv/bin
STEP1_TRIALS=${STEP1_TRIALS:-6}
STEP2_TRIALS=${STEP2_TRIALS:-4}
EPOCHS=${EPOCHS:-20}
# --lr is for a total batch of 32 and is scaled to --batch-size: 0.08 gives SCRFD's 0.01 at batch 4.
COMMON=(--data "$DATA" --epochs "$EPOCHS" --img-size 192 --batch-size 4 --lr 0.08 --cpus-per-trial 1 --seed 0)

if [ ! -f "$DATA/wider_face_split/wider_face_val_bbx_gt.txt" ]; then
  # images about as wide as the 192 px training size, faces from 20 px: learnable in minutes on a CPU
  echo "[demo] generating demo data in $DATA (200 train + 50 val images)"
  "$BIN/scrfd-search" demo-data --out "$DATA" --train 200 --val 50 --seed 0 --min-width 192 --max-width 256 --min-face 20
fi

run_step() {  # name, space, extra flags...: launch, or resume an interrupted run, or skip a finished one
  local name=$1 space=$2; shift 2
  if [ -f "results/$name/experiment.json" ]; then
    echo "[demo] results/$name exists: resuming it (finished trials are kept)"
    "$BIN/scrfd-search" resume "$name"
  else
    "$BIN/scrfd-search" launch --space "$space" --name "$name" "${COMMON[@]}" "$@"
  fi
}

echo "[demo] step 1: $STEP1_TRIALS backbones at 0.5 GF (neck and head fixed), $EPOCHS epochs each"
run_step "$NAME-step1" search_spaces/demo_0.5gf_step1.yaml --trials "$STEP1_TRIALS"
echo "[demo] step 2: $STEP2_TRIALS whole detectors under step 1's stage-share ranges"
run_step "$NAME-step2" search_spaces/demo_0.5gf_step2.yaml --trials "$STEP2_TRIALS" --from "$NAME-step1" --top-k 3

"$BIN/scrfd-search" status "$NAME-step1"
"$BIN/scrfd-search" status "$NAME-step2"
"$BIN/scrfd-search" plot "$NAME-step1" "$NAME-step2"
echo "[demo] done: results/$NAME-step1, results/$NAME-step2 (leaderboards, Ray experiments, figures in plots/);"
echo "[demo] next: scrfd-search export $NAME-step2 --top 3 --onnx"
