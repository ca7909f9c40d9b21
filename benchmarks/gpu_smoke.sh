#!/usr/bin/env bash
# What a machine with a GPU runs first (under 5 minutes on one GPU): the GPU path end to end.
#   1. `doctor` on demo data (GPU, cuDNN, torchvision NMS on every GPU, a 20-iteration probe)
#   2. one training epoch of the published 2.5 GF model on demo data, without and with --amp:
#      images/s and peak GPU memory of each
#   3. a 2-trial search with --gpus-per-trial 0.5 (both trials share GPU 0), then its status
#   4. `latency --device cuda` of the four released architectures, with torch and with onnxruntime
#      (onnxruntime's only where its CUDAExecutionProvider is installed: onnxruntime-gpu)
# Usage: bash benchmarks/gpu_smoke.sh [WORK_DIR]   (default: a new temporary folder, kept for inspection)
# Every step must pass; the script stops at the first failure. Needs `make setup` first.
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-$REPO/.venv/bin/python}"
WORK="${1:-$(mktemp -d -t scrfd_gpu_smoke.XXXXXX)}"
CLI=("$PY" -m scrfd_search.cli)
say() { printf '\n[gpu_smoke %s] %s\n' "$(date +%H:%M:%S)" "$*"; }
START=$SECONDS

"$PY" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 'gpu_smoke: torch sees no GPU')"
nvidia-smi --query-gpu=index,name,memory.total,driver_version --format=csv || true

say "demo data (64 training, 16 validation images, 640 px wide) in $WORK/demo"
"${CLI[@]}" demo-data --out "$WORK/demo" --train 64 --val 16 --min-width 640 --max-width 640 --force

say "doctor"
"${CLI[@]}" doctor --data "$WORK/demo" --results-dir "$WORK/results" --trials 320 --epochs 80

for amp in "" "--amp"; do
  say "one epoch of scrfd_2.5g ${amp:-(fp32)}"
  "${CLI[@]}" train --arch "$REPO/configs/scrfd/scrfd_2.5g.json" --data "$WORK/demo" --epochs 1 \
    --batch-size 8 --workers 4 --device cuda --work-dir "$WORK/train${amp:+_amp}" $amp
done

say "2-trial search, 0.5 GPU per trial"
"${CLI[@]}" launch --space "$REPO/search_spaces/demo_0.5gf_step1.yaml" --data "$WORK/demo" --name smoke \
  --results-dir "$WORK/results" --trials 2 --epochs 1 --gpus-per-trial 0.5 --cpus-per-trial 2 --img-size 320
"${CLI[@]}" status smoke --results-dir "$WORK/results"

RELEASED=("$REPO"/configs/scrfd/scrfd_{500m,2.5g,10g,34g}.json)
say "latency on GPU 0: the four released architectures, torch backend (network alone and end to end)"
"${CLI[@]}" latency "${RELEASED[@]}" --device cuda --backend torch --runs 20 --warmup 5
if "$PY" -c "import onnxruntime as o, sys; sys.exit('CUDAExecutionProvider' not in o.get_available_providers())"; then
  say "latency on GPU 0: the four released architectures, onnxruntime backend"
  "${CLI[@]}" latency "${RELEASED[@]}" --device cuda --backend onnxruntime --runs 20 --warmup 5
else
  say "onnxruntime here has no CUDAExecutionProvider (install onnxruntime-gpu to time it on the GPU): skipped"
fi

say "summary"
"$PY" - "$WORK" <<'EOF'
import json, sys
from pathlib import Path
work = Path(sys.argv[1])
for name in ("train", "train_amp"):
    r = json.loads((work / name / "result.json").read_text())
    print(f"{name:<10} amp={r.get('amp')}  {r['images_per_s']} images/s  peak GPU memory {r['peak_memory_mib']} MiB")
EOF
say "done in $((SECONDS - START)) s; everything is in $WORK"
