#!/usr/bin/env bash
# Build .venv with the verified stack (../shared/ENVIRONMENT.md) and install the project into it.
# Idempotent: each step checks what is installed first, so a second run does no work.
set -euo pipefail
cd "$(dirname "$0")/.."

PY=${PYTHON:-python3}
VENV=${VENV:-.venv}
WHEEL_CACHE=${SCRFD_WHEEL_CACHE:-$HOME/.cache/scrfd-search/wheels}
# The machine's pip config also searches a folder holding a CPU-only torch whose torchvision ops do
# not load; pointing find-links at an empty folder makes pip take the regular registry build.
EMPTY_LINKS=$(mktemp -d)
trap 'rmdir "$EMPTY_LINKS" 2>/dev/null || true' EXIT
export PIP_FIND_LINKS="$EMPTY_LINKS" PIP_DISABLE_PIP_VERSION_CHECK=1

say() { printf '[setup] %s\n' "$*"; }
pip_() { "$VENV/bin/python" -m pip "$@"; }
has() { "$VENV/bin/python" - "$1" "$2" <<'PY'
import sys
from importlib.metadata import version, PackageNotFoundError
try:
    v = version(sys.argv[1])
except PackageNotFoundError:
    sys.exit(1)
sys.exit(0 if v.split("+")[0] == sys.argv[2] else 1)
PY
}

if [ ! -x "$VENV/bin/python" ]; then
  say "creating $VENV"
  "$PY" -m venv "$VENV"
fi

if ! has torch 2.13.0 || ! has torchvision 0.28.0; then
  say "installing torch 2.13.0 + torchvision 0.28.0 (regular build, about 5 GB)"
  pip_ install -q "torch==2.13.0" "torchvision==0.28.0"
fi
if "$VENV/bin/python" -c "import torch,sys; sys.exit(0 if '+cpu' in torch.__version__ else 1)"; then
  echo "[setup] error: the CPU-only torch wheel got installed; torchvision ops will not load" >&2
  exit 1
fi

# mmcv 2.1.0's setup.py imports pkg_resources (gone from setuptools 81) and torch 2.13 asks for
# setuptools>=77.0.3: 80.9.0 satisfies both.
if ! has setuptools 80.9.0; then
  say "installing build tools (setuptools 80.9.0, wheel, ninja)"
  pip_ install -q "setuptools==80.9.0" wheel ninja
fi

if ! has mmengine 0.10.7; then
  say "installing mmengine 0.10.7"
  pip_ install -q "mmengine==0.10.7"
fi

if ! has mmcv 2.1.0; then
  mkdir -p "$WHEEL_CACHE"
  if ! ls "$WHEEL_CACHE"/mmcv-2.1.0-*.whl >/dev/null 2>&1; then
    say "building mmcv 2.1.0 from source with its CPU ops only: this takes 6-30 minutes on 2 cores"
    say "(GPUs are hidden from the build, so no CUDA kernels and no nvcc are needed on any machine;"
    say " the GPU path uses torchvision's NMS instead; the wheel is cached in $WHEEL_CACHE)"
    CUDA_VISIBLE_DEVICES="" FORCE_CUDA=0 MMCV_WITH_OPS=1 MAX_JOBS=${MAX_JOBS:-2} \
      pip_ wheel --no-build-isolation --no-deps -w "$WHEEL_CACHE" "mmcv==2.1.0"
  fi
  say "installing mmcv 2.1.0 from the cached wheel"
  pip_ install -q --no-deps "$WHEEL_CACHE"/mmcv-2.1.0-*.whl
  pip_ install -q addict packaging Pillow pyyaml yapf opencv-python
fi

stamp="$VENV/.scrfd-search-installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ] || [ tools/setup.sh -nt "$stamp" ]; then
  say "installing scrfd-search and its remaining dependencies (pyproject.toml)"
  pip_ install -q -e ".[dev]"
  touch "$stamp"
fi
say "ready: $VENV ($("$VENV/bin/python" -c 'import torch,mmcv,mmdet;print("torch",torch.__version__,"mmcv",mmcv.__version__,"mmdet",mmdet.__version__)'))"
