#!/usr/bin/env bash
# ICNet Evaluation of a checkpoint (--checkpoint=, default the full run's latest).
# RANK_SIZE processes per node (default 8; torchrun, hccl/nccl/gloo). Usage: bash test/train_eval_8p.sh [--data_path=/data/cityscapes] [--help]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../common/modelzoo.sh"
zoo_main eval 8p "$@"
