#!/usr/bin/env bash
# PSPNet evaluation on RANK_SIZE devices per node: the seed's name for train_eval_8p.sh (same
# arguments, same outputs). Usage: bash test/train_val_8p.sh [--data_path=/data/VOCdevkit] [--help]
exec bash "$(dirname "${BASH_SOURCE[0]}")/train_eval_8p.sh" "$@"
