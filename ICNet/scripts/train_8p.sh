#!/usr/bin/env bash
# The seed's ICNet helper: test/train_full_8p.sh with configs/icnet.yaml (arguments pass through,
# e.g. --data_path=/data/cityscapes).
set -euo pipefail
exec bash "$(dirname "${BASH_SOURCE[0]}")/../test/train_full_8p.sh" --config="$(dirname "${BASH_SOURCE[0]}")/../configs/icnet.yaml" "$@"
