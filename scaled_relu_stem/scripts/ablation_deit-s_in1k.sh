#!/usr/bin/env bash
# ImageNet-1k, DeiT-S/16: every stem variant (BN / ReLU removed, both removed, Xiao et al.'s stem).
# Usage: DATA_ROOT=/data/imagenet GPUS=8 bash this.sh
source "$(dirname "$0")/../../shared/scripts/launch.sh"
: "${DATA_ROOT:?set DATA_ROOT to the ImageNet-1k folder}"
"$PYTHON" -c 'import sys; from shared.data.verify import main; sys.exit(main(["imagenet", sys.argv[1]]))' "$DATA_ROOT"
for method in patchify scaled_relu_stem conv_stem_no_relu conv_stem_no_bn conv_stem_linear xiao_stem; do
  run_train scaled_relu_stem.train --config "scaled_relu_stem/configs/${method}_deit-s_8xb128-300e_in1k.yaml" \
    --run-dir "runs/scaled_relu_stem/in1k/${method}_deit-s" --resume auto data.root="$DATA_ROOT" ${ARGS:-}
done
