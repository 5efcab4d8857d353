#!/usr/bin/env bash
# ICNet Full training: the recipe on real data (resumes from its work dir), the short smoke schedule on synthetic data.
# RANK_SIZE processes per node (default 8; torchrun, hccl/nccl/gloo). Usage: bash test/train_full_8p.sh [--data_path=/data/cityscapes] [--help]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../common/modelzoo.sh"
zoo_main full 8p "$@"
