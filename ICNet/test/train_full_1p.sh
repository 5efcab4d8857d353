#!/usr/bin/env bash
# ICNet full training on 1 device.
# The recipe on --data_path (resumes from its work dir), the 300-iteration
# smoke recipe on synthetic data without it; evaluates at the end.
# Usage: bash test/train_full_1p.sh [--data_path=/data/cityscapes] [--key=value ...] [--help]
set -euo pipefail
Network="ICNet"
batch_size=2              # images per device (R50-D8, mmseg's 80k Cityscapes 832x832 recipe)
RANK_SIZE=1
recipe=configs/icnet_r50-d8_cityscapes-832x832_80k.yaml
smoke_recipe=configs/icnet_r50-d8_synthetic-smoke.yaml   # without --data_path
seed_data=data/cityscapes   # used when present and no --data_path
dataset=Cityscapes
synthetic=common/tools/synthetic_cityscapes.py   # generates it once, prints its root
source "$(dirname "${BASH_SOURCE[0]}")/../../common/zoo.sh"
zoo_parse "$@"
source ../env_npu.sh

zoo_train_args full
zoo_run python3 train.py "${train_args[@]}"

# result log: test/output/$ASCEND_DEVICE_ID/ICNet_bs<batch>_<ranks>p_acc.log, then "Final ..." lines
zoo_curves
zoo_result_log acc TrainAccuracy   # key 8 as in the real ModelZoo script
