#!/usr/bin/env bash
# Quick start on a fresh machine: install what is missing, then BiSeNetV1 (R50-D32) on the
# built-in synthetic Cityscapes: short training + evaluation (aAcc / mIoU / mAcc, per-class
# table), ONNX export verified with onnxruntime, and a demo picture.
set -euo pipefail
cd "$(dirname "$0")"
bash install.sh
data_root=$(python3 -m common.tools.synthetic_cityscapes)
cd BiSeNetV1
work=work_dirs/quickstart
bash test/train_full_1p.sh --work_dir="$work"
log=test/output/${ASCEND_DEVICE_ID:-0}/train_${ASCEND_DEVICE_ID:-0}_rank0.log
grep -A 24 "Iter(val)" "$log" | tail -n 25 | cut -d' ' -f4-
checkpoint="$work/$(cat "$work/latest")"
python3 pth2onnx.py --checkpoint "$checkpoint" --output "$work/BiSeNetV1.onnx"
val_image=$(ls "$data_root"/leftImg8bit/val/frankfurt/*_leftImg8bit.png | head -n 1)
python3 demo.py "$val_image" --checkpoint "$checkpoint" --out-dir "$work/demo"
echo "Quick start done: checkpoint, BiSeNetV1.onnx and demo/ are in BiSeNetV1/$work"
