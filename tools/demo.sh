#!/usr/bin/env bash
# `make demo`, the main job: on a machine with no GPU, no internet and no downloaded data,
# generate the synthetic dataset, train PVT-v2-b0 Mask R-CNN from scratch on the CPU, evaluate
# it (COCO AP tables), and write prediction pictures and a plot of the losses into $OUT.
#
#   PY      the interpreter (default .venv/bin/python)
#   OUT     output folder (default output/demo); an existing one is moved aside, not deleted
#   CONFIG  the config (default configs/synthetic/mask_rcnn_pvt_v2_b0_fpn_synthetic.py)
#   ARGS    extra train_net.py overrides, e.g. ARGS="train.max_iter=100"
#   DATA    where the synthetic dataset is written (default datasets/synthetic)
#   SYNTHETIC_ARGS  extra datasets/prepare_synthetic.py options, e.g. "--num-train 8"
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PY:-.venv/bin/python}
OUT=${OUT:-output/demo}
ARGS=${ARGS:-}
DATA=${DATA:-datasets/synthetic}
SYNTHETIC_ARGS=${SYNTHETIC_ARGS:-}
CONFIG=${CONFIG:-configs/synthetic/mask_rcnn_pvt_v2_b0_fpn_synthetic.py}
DATASET="dataset.train_json=$DATA/train/annotations.json dataset.train_images=$DATA/train/images"
DATASET="$DATASET dataset.val_json=$DATA/val/annotations.json dataset.val_images=$DATA/val/images"

start=$(date +%s)
if [ -e "$OUT" ]; then
    old="$OUT.$(date -r "$OUT" +%Y%m%d-%H%M%S)"
    echo "moving the previous $OUT to $old"
    mv "$OUT" "$old"
fi

# shellcheck disable=SC2086
"$PY" datasets/prepare_synthetic.py --out "$DATA" $SYNTHETIC_ARGS
# shellcheck disable=SC2086
"$PY" train_net.py --config-file "$CONFIG" train.output_dir="$OUT" $DATASET $ARGS
# shellcheck disable=SC2086
"$PY" tools/predict.py --config-file "$CONFIG" --checkpoint "$OUT/model_final.pth" \
    --input "$DATA/val/images" --max-images 8 --output "$OUT/predictions" $DATASET
"$PY" tools/plot_losses.py "$OUT/metrics.json" "$OUT/losses.png"

# the AP against the recipe's documented range
"$PY" tools/demo_summary.py "$OUT" --start "$start" --config "$CONFIG" --overrides="$ARGS"
