#!/usr/bin/env bash
# The paper's dense rows on an ELSA-Swin backbone, without mmdet/mmseg:
#   TASK=coco    Mask R-CNN (FPN), torchvision's detector, COCO 2017, 1x (paper, ELSA-Swin-T: 45.7 box / 41.1 mask AP)
#                elsa/configs/maskrcnn_elsa-swin-tiny-fpn_8xb2-1x_coco.yaml
#   TASK=ade20k  UperNet (plain PyTorch), ADE20K, 160k iterations (paper, ELSA-Swin-T: 47.9 mIoU multi-scale + flip:
#                add data.ms_flip=true) elsa/configs/upernet_elsa-swin-tiny_8xb2-160k_ade20k.yaml
# Env: DATA_ROOT (COCO: train2017/, val2017/, annotations/instances_{train,val}2017.json; ADE20K: the
#      ADEChallengeData2016 folder, images/ and annotations/ with training/ and validation/), WEIGHTS (released
#      ELSA-Swin ImageNet checkpoint; without it the backbone starts from scratch), GPUS (default 1; the paper
#      used 8), OUT (default runs/elsa), extra arguments: dotted overrides (model.backbone=elsa_swin_small ...).
source "$(dirname "${BASH_SOURCE[0]}")/../../shared/scripts/launch.sh"
: "${DATA_ROOT:?set DATA_ROOT to the COCO 2017 or ADEChallengeData2016 folder}"
OUT="${OUT:-runs/elsa}"
case "${TASK:-}" in
  coco) MODULE=elsa.detection; NAME=maskrcnn_elsa-swin-tiny-fpn_8xb2-1x_coco ;;
  ade20k) MODULE=elsa.segmentation; NAME=upernet_elsa-swin-tiny_8xb2-160k_ade20k ;;
  *) echo "dense.sh: set TASK=coco or TASK=ade20k" >&2; exit 2 ;;
esac
run_train "$MODULE" --config "elsa/configs/${NAME}.yaml" --run-dir "$OUT/$NAME" --resume auto \
  data.root="$DATA_ROOT" ${WEIGHTS:+model.init_checkpoint="$WEIGHTS"} "$@"
