#!/usr/bin/env bash
# The seed's ICNet helper: test/train_eval_1p.sh with configs/icnet_eval.yaml (arguments pass through,
# e.g. --data_path=/data/cityscapes).
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/../test/train_eval_1p.sh" --config="$(dirname "${BASH_SOURCE[0]}")/../configs/icnet_eval.yaml" "$@"
