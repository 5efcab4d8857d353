#!/usr/bin/env bash
# ICNet Full training: the recipe on real data (resumes from its work dir), the short smoke schedule on synthetic data.
# 1 device. Usage: bash test/train_full_1p.sh [--data_path=/data/cityscapes] [--help]
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/../../common/modelzoo.sh"
zoo_main full 1p "$@"
