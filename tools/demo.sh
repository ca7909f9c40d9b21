#!/usr/bin/env bash
# The main job on the embedded default: demo data, then a small two-step search at 0.5 GF on the CPU.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${1:-data/demo}
NAME=${2:-demo}
BIN=.venv/bin
if [ ! -f "$DATA/wider_face_split/wider_face_val_bbx_gt.txt" ]; then
  echo "[demo] generating demo data in $DATA"
  "$BIN/scrfd-search" demo-data --out "$DATA" --train 200 --val 50 --seed 0
fi
echo "[demo] sampling the 2.5 GF step-1 space (closed form + fvcore)"
"$BIN/scrfd-search" sample --space search_spaces/scrfd_2.5gf_step1.yaml --n 8 --seed 0
