#!/usr/bin/env bash
# PSPNet Evaluation on 8 devices (the seed's name for train_eval_8p.sh) of a checkpoint (--checkpoint=, default the full run's latest).
# RANK_SIZE processes per node (default 8; torchrun, hccl/nccl/gloo). Usage: bash test/train_val_8p.sh [--data_path=/data/VOCdevkit] [--help]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../common/modelzoo.sh"
zoo_main eval 8p "$@"
