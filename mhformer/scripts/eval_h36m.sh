#!/usr/bin/env bash
# Evaluate a released checkpoint (checkpoint/pretrained/<N>/model_XXXX.pth) on Human3.6M S9/S11.
#   DATA_ROOT=/data/h36m FRAMES=351 CHECKPOINT=/path/model_4294.pth bash mhformer/scripts/eval_h36m.sh
source "$(dirname "$0")/../../shared/scripts/launch.sh"
FRAMES="${FRAMES:-351}"
BATCH=256; [ "$FRAMES" = 351 ] && BATCH=128
run_once "$PYTHON" -m mhformer.evaluate --config "mhformer/configs/mhformer_${FRAMES}f_1xb${BATCH}-19e_h36m-cpn.yaml" \
  --checkpoint "${CHECKPOINT:?set CHECKPOINT to a released model_XXXX.pth}" \
  data.root="${DATA_ROOT:?set DATA_ROOT to the folder with data_3d_h36m.npz}" "$@"
