#!/usr/bin/env bash
# Install what a fresh machine lacks. torch first, pinned to the CPU build, when torch is
# missing (a bare 'torch' requirement would pull the multi-GB CUDA build); then the rest.
set -euo pipefail
cd "$(dirname "$0")"
if ! python3 -c "import torch" >/dev/null 2>&1; then
  python3 -m pip install -q torch==2.13.0
fi
python3 -m pip install -q -r requirements.txt
