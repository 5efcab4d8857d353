#!/usr/bin/env bash
# Quick start on a fresh machine, about 3 minutes on 2 CPU cores: install what is missing, then
# BiSeNetV1 R18-D32 (mmseg's R18 recipe, scaled to the synthetic data) through the same
# scripts as on real data: training with evaluation (test/train_full_1p.sh), ONNX export
# checked with onnxruntime (pth2onnx.py) and a demo picture (demo.py).
set -euo pipefail
cd "$(dirname "$0")"
repo="$PWD"
step() { printf '\n== [%s/5] %s\n' "$1" "$2"; }

step 1 "Installing what is missing"
bash install.sh

step 2 "Synthetic Cityscapes (generated once into \$SEGZOO_CACHE, default ~/.cache/segzoo)"
data_root=$(python3 -m common.tools.synthetic_cityscapes)
echo "synthetic Cityscapes: $data_root (real data: pass --data_path=/path/to/cityscapes to the scripts)"

cd BiSeNetV1
work=work_dirs/quickstart
config=configs/bisenetv1_r18-d32_synthetic-smoke.yaml
step 3 "Training BiSeNetV1 R18-D32 for 300 iterations, then evaluation (about 1-2 min)"
bash test/train_full_1p.sh --config="$config" --work_dir="$work"
out=test/output/${ASCEND_DEVICE_ID:-0}
grep -A 24 "Iter(val)" "$out/train_${ASCEND_DEVICE_ID:-0}_rank0.log" | tail -n 25 | cut -d' ' -f4-
checkpoint="$work/$(cat "$work/latest")"

step 4 "ONNX export (1x3x1024x2048, opset 11), checked with onnxruntime"
python3 pth2onnx.py --checkpoint "$checkpoint" --output "$work/BiSeNetV1.onnx"

step 5 "Demo on a validation image"
val_image=$(ls "$data_root"/leftImg8bit/val/frankfurt/*_leftImg8bit.png | head -n 1)
python3 demo.py "$val_image" --checkpoint "$checkpoint" --out-dir "$work/demo"

cd "$repo"
cat <<SUMMARY

Quick start done. In BiSeNetV1/:
  checkpoint   $work/$(basename "$checkpoint")   (and eval_iter_300_whole.{json,csv} beside it)
  ONNX         $work/BiSeNetV1.onnx
  pictures     $work/demo/
  curves       $out/curves.png
  result log   $out/BiSeNetV1_bs4_1p_acc.log   (training log: $out/train_${ASCEND_DEVICE_ID:-0}.log)
Next, from BiSeNetV1/:
  evaluate     bash test/train_eval_1p.sh --config=$config --work_dir=$work
  export       python3 pth2onnx.py --checkpoint $checkpoint --output my.onnx
  your image   python3 demo.py path/to/photo.jpg --checkpoint $checkpoint --out-dir my_demo
  real data    bash test/train_full_1p.sh --data_path=/path/to/cityscapes   (see README.md)
SUMMARY
