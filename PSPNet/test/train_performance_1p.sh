#!/usr/bin/env bash
# PSPNet performance run on 1 device.
# A short training (200 iterations on --data_path, 30 on synthetic
# data) without evaluation; images/s after the warm-up iterations.
# Usage: bash test/train_performance_1p.sh [--data_path=/data/VOCdevkit] [--key=value ...] [--help]
set -euo pipefail
Network="PSPNet"
batch_size=4              # images per device (R50-D8, mmseg's 20k VOC-aug recipe)
RANK_SIZE=1
recipe=configs/pspnet_r50-d8_voc12aug-512x512_20k.yaml
smoke_recipe=configs/pspnet_r50-d8_synthetic-voc-smoke.yaml   # without --data_path
seed_data=data/VOCdevkit   # used when present and no --data_path
dataset=VOCdevkit
synthetic=PSPNet/tools/synthetic_voc.py       # generates it once, prints its root
source "$(dirname "${BASH_SOURCE[0]}")/../../common/zoo.sh"
zoo_parse "$@"
source ../env_npu.sh

zoo_train_args perf
zoo_run python3 train.py "${train_args[@]}"

# result log: test/output/$ASCEND_DEVICE_ID/PSPNet_bs<batch>_<ranks>p_perf.log, then "Final ..." lines
zoo_result_log perf mIoU   # key 8 as in the real ModelZoo script
