#!/usr/bin/env bash
# ICNet Evaluation of a checkpoint (--checkpoint=, default the full run's latest).
# 1 device. Usage: bash test/train_eval_1p.sh [--data_path=/data/cityscapes] [--help]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../common/modelzoo.sh"
zoo_main eval 1p "$@"
