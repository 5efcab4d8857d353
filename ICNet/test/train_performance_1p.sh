#!/usr/bin/env bash
# ICNet Performance: a short run without evaluation; ActualFPS counts images/s after warm-up.
# 1 device. Usage: bash test/train_performance_1p.sh [--data_path=/data/cityscapes] [--help]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../common/modelzoo.sh"
zoo_main perf 1p "$@"
