#!/usr/bin/env bash
# BiSeNetV2 full training on RANK_SIZE devices per node (torchrun; hccl / nccl / gloo).
# The recipe on --data_path (resumes from its work dir), the 300-iteration
# smoke recipe on synthetic data without it; evaluates at the end.
# Usage: bash test/train_full_8p.sh [--data_path=/data/cityscapes] [--key=value ...] [--help]
set -euo pipefail
Network="BiSeNetV2"
batch_size=4              # images per device (mmseg's bisenetv2_fcn 160k Cityscapes recipe)
RANK_SIZE="${RANK_SIZE:-8}"     # processes per node (set it lower on smaller machines)
recipe=configs/bisenetv2_fcn_cityscapes-1024x1024_160k.yaml
smoke_recipe=configs/bisenetv2_fcn_synthetic-smoke.yaml   # without --data_path
seed_data=data/cityscapes   # used when present and no --data_path
dataset=Cityscapes
synthetic=common/tools/synthetic_cityscapes.py   # generates it once, prints its root
source "$(dirname "${BASH_SOURCE[0]}")/../../common/zoo.sh"
zoo_parse "$@"
source ../env_npu.sh

zoo_train_args full
zoo_run python3 -m torch.distributed.run --nproc_per_node="$RANK_SIZE" --nnodes="$nnodes" \
  --node_rank="$node_rank" --master_addr="$master_addr" --master_port="$master_port" \
  train.py "${train_args[@]}"

# result log: test/output/$ASCEND_DEVICE_ID/BiSeNetV2_bs<batch>_<ranks>p_acc.log, then "Final ..." lines
zoo_curves
zoo_result_log acc TrainAccuracy   # key 8: the contract's name (the seed is PaddleSeg's, no ModelZoo script)
