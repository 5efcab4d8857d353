#!/usr/bin/env bash
# Install what a fresh machine lacks. torch first, pinned to the CPU build, when torch is
# missing (a bare 'torch' requirement would pull the multi-GB CUDA build); then the rest.
set -euo pipefail
cd "$(dirname "$0")"
if ! python3 -c "import torch" >/dev/null 2>&1; then
  echo "install.sh: torch==2.13.0, CPU build (about 30 s)..."
  python3 -m pip install -q torch==2.13.0
fi
echo "install.sh: requirements.txt (about 1 min on a fresh machine, seconds when present)..."
python3 -m pip install -q -r requirements.txt
echo "install.sh: done"
