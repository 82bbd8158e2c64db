#!/usr/bin/env bash
# KVT ImageNet-1k: DeiT-{tiny,small,base}, dense baseline then k-NN attention (k = 100 of 197), 300 epochs,
# DeiT recipe (configs/_base_deit_in1k.yaml). Paper: DeiT-Tiny 72.2 -> 73.0, DeiT-Small 79.8 -> 80.1.
#   DATA_ROOT=/data/imagenet GPUS=4 DEIT_SIZE=tiny bash knn_attention/scripts/in1k_deit.sh [key=value ...]
# engine.batch_size is the global batch (1024 = 4 x 256); with another batch also set optim.lr
# (DeiT: 5e-4 * batch / 512). Re-running resumes each run from its last.pt.
source "$(dirname "$0")/../../shared/scripts/launch.sh"
SIZE="${DEIT_SIZE:-tiny}"
METHODS="${METHODS:-dense knn}"
: "${DATA_ROOT:?set DATA_ROOT to the ImageNet folder (<root>/{train,val}/<wnid>/*.JPEG)}"
# (called through main(): `python -m shared.data.verify` runs the module as __main__, whose registry is empty)
"$PYTHON" -c 'import sys; from shared.data.verify import main; sys.exit(main(sys.argv[1:]))' imagenet "$DATA_ROOT"
for method in $METHODS; do
  run_train knn_attention.train --config "knn_attention/configs/${method}_deit-${SIZE}_4xb256-300e_in1k.yaml" \
    --run-dir "runs/knn_attention/${method}_deit-${SIZE}_4xb256-300e_in1k" --resume auto \
    data.root="$DATA_ROOT" "$@"
done
