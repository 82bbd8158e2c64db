#!/usr/bin/env bash
# Train MHFormer on Human3.6M (CPN 2D) with the official recipe.
#   DATA_ROOT=/data/h36m FRAMES=351 bash mhformer/scripts/train_h36m.sh [key=value ...]
#   GPUS=4 ... for torchrun (engine.batch_size stays the global batch)
source "$(dirname "$0")/../../shared/scripts/launch.sh"
FRAMES="${FRAMES:-351}"
case "$FRAMES" in
  351) CONFIG=mhformer/configs/mhformer_351f_1xb128-19e_h36m-cpn.yaml ;;
  27|81|243) CONFIG="mhformer/configs/mhformer_${FRAMES}f_1xb256-19e_h36m-cpn.yaml" ;;
  *) echo "FRAMES must be one of 27, 81, 243, 351 (got $FRAMES)" >&2; exit 2 ;;
esac
run_train mhformer.train --config "$CONFIG" --run-dir "runs/mhformer_${FRAMES}f_h36m" --resume auto \
  data.root="${DATA_ROOT:?set DATA_ROOT to the folder with data_3d_h36m.npz}" "$@"
