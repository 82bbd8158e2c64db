#!/usr/bin/env bash
# MARS: stage 1 (V2V teacher), then the image students: image-only, VKD, TKP, TCL, TCL + ML.
# DATA_ROOT=<mars root with bbox_train/ bbox_test/ info/> (check: python -m shared.data.verify mars $DATA_ROOT)
# WEIGHTS=<torchvision resnet50 ImageNet state dict> (default $DATA_ROOT/resnet50-0676ba61.pth); GPUS=n -> torchrun.
source "$(dirname "$0")/../../shared/scripts/launch.sh"
WEIGHTS="${WEIGHTS:-$DATA_ROOT/resnet50-0676ba61.pth}"
C=tcl_i2v/configs
OUT=runs/tcl_i2v/mars
run_train tcl_i2v.train --config $C/v2v_resnet50_1xb32-300e_mars.yaml --run-dir $OUT/v2v --resume auto \
  data.root="$DATA_ROOT" model.weights="$WEIGHTS" "$@"
for arm in image vkd tkp tcl tcl-ml; do
  run_train tcl_i2v.train --config $C/${arm}_resnet50_1xb48-500e_mars.yaml --run-dir $OUT/$arm --resume auto \
    data.root="$DATA_ROOT" model.weights="$WEIGHTS" kd.teacher_ckpt=$OUT/v2v/last.pt "$@"
done
