#!/usr/bin/env bash
# Mask R-CNN (FPN) with an ELSA-Swin backbone on COCO 2017, torchvision's detector (no mmdet): the paper's
# detection row (ELSA-Swin-T 1x: 45.7 box AP / 41.1 mask AP). elsa/configs/maskrcnn_elsa-swin-tiny-fpn_8xb2-1x_coco.yaml
# Env: DATA_ROOT (COCO: train2017/, val2017/, annotations/instances_{train,val}2017.json), WEIGHTS (released
#      ELSA-Swin-T ImageNet checkpoint; without it the backbone starts from scratch), GPUS (default 1; the
#      paper used 8), OUT (default runs/elsa), extra arguments: dotted overrides.
source "$(dirname "${BASH_SOURCE[0]}")/../../shared/scripts/launch.sh"
: "${DATA_ROOT:?set DATA_ROOT to the COCO 2017 folder, e.g. DATA_ROOT=/data/coco}"
OUT="${OUT:-runs/elsa}"
CFG="elsa/configs/maskrcnn_elsa-swin-tiny-fpn_8xb2-1x_coco.yaml"
run_train elsa.detection --config "$CFG" --run-dir "$OUT/maskrcnn_elsa-swin-tiny_coco" --resume auto \
  data.root="$DATA_ROOT" ${WEIGHTS:+model.init_checkpoint="$WEIGHTS"} "$@"
