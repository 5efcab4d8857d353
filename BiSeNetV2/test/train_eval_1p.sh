#!/usr/bin/env bash
# BiSeNetV2 evaluation on 1 device.
# Evaluates --checkpoint (default: the full run's latest checkpoint in
# its work dir) on the validation split.
# Usage: bash test/train_eval_1p.sh [--data_path=/data/cityscapes] [--key=value ...] [--help]
set -euo pipefail
Network="BiSeNetV2"
batch_size=4              # images per device (mmseg's bisenetv2_fcn 160k Cityscapes recipe)
RANK_SIZE=1
recipe=configs/bisenetv2_fcn_cityscapes-1024x1024_160k.yaml
smoke_recipe=configs/bisenetv2_fcn_synthetic-smoke.yaml   # without --data_path
seed_data=data/cityscapes   # used when present and no --data_path
dataset=Cityscapes
synthetic=common/tools/synthetic_cityscapes.py   # generates it once, prints its root
source "$(dirname "${BASH_SOURCE[0]}")/../../common/zoo.sh"
zoo_parse "$@"
source ../env_npu.sh

zoo_train_args eval
zoo_run python3 train.py "${train_args[@]}"

# result log: test/output/$ASCEND_DEVICE_ID/BiSeNetV2_bs<batch>_<ranks>p_eval.log, then "Final ..." lines
zoo_result_log eval
