#!/usr/bin/env bash
# ICNet Performance: a short run without evaluation; ActualFPS counts images/s after warm-up.
# RANK_SIZE processes per node (default 8; torchrun, hccl/nccl/gloo). Usage: bash test/train_performance_8p.sh [--data_path=/data/cityscapes] [--help]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../common/modelzoo.sh"
zoo_main perf 8p "$@"
