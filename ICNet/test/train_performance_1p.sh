#!/usr/bin/env bash
# ICNet performance run on 1 device.
# A short training (200 iterations on --data_path, 30 on synthetic
# data) without evaluation; images/s after the warm-up iterations.
# Usage: bash test/train_performance_1p.sh [--data_path=/data/cityscapes] [--key=value ...] [--help]
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

zoo_train_args perf
zoo_run python3 train.py "${train_args[@]}"

# result log: test/output/$ASCEND_DEVICE_ID/ICNet_bs<batch>_<ranks>p_perf.log, then "Final ..." lines
zoo_result_log perf TrainAccuracy   # key 8 as in the real ModelZoo script
