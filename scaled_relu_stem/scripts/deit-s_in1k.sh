#!/usr/bin/env bash
# ImageNet-1k, DeiT-S/16, DeiT recipe: patchify vs conv stem without ReLU vs scaled-ReLU stem (the rows
# of the embedded default, at full scale). Usage: DATA_ROOT=/data/imagenet GPUS=8 bash this.sh
# Extra dotted overrides go in ARGS, e.g. ARGS="engine.epochs=100".
source "$(dirname "$0")/../../shared/scripts/launch.sh"
: "${DATA_ROOT:?set DATA_ROOT to the ImageNet-1k folder (train/ and val/ class folders)}"
# (the layout check is called through an import: `python -m shared.data.verify` runs the module as
# __main__, whose registry the papers' data modules do not fill)
"$PYTHON" -c 'import sys; from shared.data.verify import main; sys.exit(main(["imagenet", sys.argv[1]]))' "$DATA_ROOT"
for method in patchify conv_stem_no_relu scaled_relu_stem; do
  cfg=scaled_relu_stem/configs/${method}_deit-s_8xb128-300e_in1k.yaml
  run_train scaled_relu_stem.train --config "$cfg" --run-dir "runs/scaled_relu_stem/in1k/${method}_deit-s" \
    --resume auto data.root="$DATA_ROOT" ${ARGS:-}
done
