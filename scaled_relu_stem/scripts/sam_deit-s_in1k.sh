#!/usr/bin/env bash
# ImageNet-1k, DeiT-S/16, the paper's optimiser comparison: patchify vs scaled-ReLU stem, each trained
# with AdamW and with SAM around AdamW (optim.sam_rho=0.05, scaled_relu_stem/sam.py), DeiT recipe.
#   DATA_ROOT=/data/imagenet GPUS=8 bash scaled_relu_stem/scripts/sam_deit-s_in1k.sh [key=value ...]
# Env: DATA_ROOT (required: ImageNet-1k with train/ and val/ class folders), GPUS (default 1: torchrun
# when > 1), OUT (runs folder, default runs/scaled_relu_stem/in1k), METHODS (default: the four rows
# "patchify patchify-sam scaled_relu_stem scaled_relu_stem-sam"). Extra arguments are config overrides
# for every run (e.g. optim.sam_rho=0.1). Re-running resumes each run from its last.pt.
source "$(dirname "$0")/../../shared/scripts/launch.sh"
OUT="${OUT:-runs/scaled_relu_stem/in1k}"
"$PYTHON" -c 'import sys; from shared.data.verify import main; sys.exit(main(["imagenet", sys.argv[1]]))' "$DATA_ROOT"
for method in ${METHODS:-patchify patchify-sam scaled_relu_stem scaled_relu_stem-sam}; do
  run_train scaled_relu_stem.train --config "scaled_relu_stem/configs/${method}_deit-s_8xb128-300e_in1k.yaml" \
    --run-dir "$OUT/${method}_deit-s" --resume auto data.root="$DATA_ROOT" "$@"
done
