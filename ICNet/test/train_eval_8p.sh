#!/usr/bin/env bash
# ICNet evaluation on RANK_SIZE devices per node (torchrun; hccl / nccl / gloo).
# Evaluates --checkpoint (default: the full run's latest checkpoint in
# its work dir) on the validation split.
# Usage: bash test/train_eval_8p.sh [--data_path=/data/cityscapes] [--key=value ...] [--help]
set -euo pipefail
Network="ICNet"
batch_size=2              # images per device (R50-D8, mmseg's 80k Cityscapes 832x832 recipe)
RANK_SIZE="${RANK_SIZE:-8}"     # processes per node (set it lower on smaller machines)
recipe=configs/icnet_r50-d8_cityscapes-832x832_80k.yaml
smoke_recipe=configs/icnet_r50-d8_synthetic-smoke.yaml   # without --data_path
seed_data=data/cityscapes   # used when present and no --data_path
dataset=Cityscapes
synthetic=common/tools/synthetic_cityscapes.py   # generates it once, prints its root
source "$(dirname "${BASH_SOURCE[0]}")/../../common/zoo.sh"
zoo_parse "$@"
source ../env_npu.sh

zoo_train_args eval
zoo_run python3 -m torch.distributed.run --nproc_per_node="$RANK_SIZE" --nnodes="$nnodes" \
  --node_rank="$node_rank" --master_addr="$master_addr" --master_port="$master_port" \
  train.py "${train_args[@]}"

# result log: test/output/$ASCEND_DEVICE_ID/ICNet_bs<batch>_<ranks>p_eval.log, then "Final ..." lines
zoo_result_log eval
