#!/usr/bin/env bash
# ELSA-VOLO on ImageNet-1k with VOLO's recipe, without token labelling (8 GPUs x 128;
# elsa/configs/elsa_volo-d{1,2,3}_8xb128-310e_in1k.yaml). A reconstruction: ELSA-VOLO was never released.
# Env: DATA_ROOT (ImageNet folder: train/<wnid>/*.JPEG, val/<wnid>/*.JPEG), SIZE d1|d2|d3 (default d1),
#      GPUS (default 1; VOLO used 8 -> torchrun), OUT (default runs/elsa), extra arguments: dotted overrides
#      (e.g. model.lam=0 model.elsa_kernel=7 to try the ELSA-Swin ghost setting).
source "$(dirname "${BASH_SOURCE[0]}")/../../shared/scripts/launch.sh"
: "${DATA_ROOT:?set DATA_ROOT to the ImageNet-1k folder, e.g. DATA_ROOT=/data/imagenet}"
SIZE="${SIZE:-d1}"
OUT="${OUT:-runs/elsa}"
CFG="elsa/configs/elsa_volo-${SIZE}_8xb128-310e_in1k.yaml"
run_train elsa.train --config "$CFG" --run-dir "$OUT/elsa_volo-${SIZE}_in1k" --resume auto \
  data.root="$DATA_ROOT" "$@"
