#!/usr/bin/env bash
# run_motion <config stem without -rgb/-depth>: RGB net, depth net, then CAPF from their best checkpoints.
# Env: DATA_ROOT, GPUS (torchrun when > 1; the paper used 8), OUT (default runs/motion_rgbd), EXTRA overrides.
source "$(dirname "${BASH_SOURCE[0]}")/../../shared/scripts/launch.sh"
: "${DATA_ROOT:?set DATA_ROOT to the dataset folder, e.g. DATA_ROOT=/data/NvGesture}"
OUT="${OUT:-runs/motion_rgbd}"
run_motion() {
  local stem="$1" fusion="$2"
  for mod in rgb depth; do
    run_train motion_rgbd.train --config "motion_rgbd/configs/${stem}-${mod}.yaml" --run-dir "$OUT/${stem}-${mod}" \
      data.root="$DATA_ROOT" ${EXTRA:-}
  done
  run_train motion_rgbd.train --config "motion_rgbd/configs/${fusion}.yaml" --run-dir "$OUT/${fusion}" \
    data.root="$DATA_ROOT" model.rgb_checkpoint="$OUT/${stem}-rgb/best.pt" \
    model.depth_checkpoint="$OUT/${stem}-depth/best.pt" ${EXTRA:-}
}
