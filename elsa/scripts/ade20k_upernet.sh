#!/usr/bin/env bash
# UperNet (plain PyTorch, no mmseg) with an ELSA-Swin backbone on ADE20K: the paper's segmentation row
# (ELSA-Swin-T 160k: 47.9 mIoU multi-scale + flip). elsa/configs/upernet_elsa-swin-tiny_8xb2-160k_ade20k.yaml
# Env: DATA_ROOT (ADEChallengeData2016: images/{training,validation}/*.jpg, annotations/{training,validation}/*.png),
#      WEIGHTS (released ELSA-Swin-T ImageNet checkpoint), GPUS (default 1; the paper used 8), OUT (default
#      runs/elsa), extra arguments: dotted overrides (data.ms_flip=true for the paper's test).
source "$(dirname "${BASH_SOURCE[0]}")/../../shared/scripts/launch.sh"
: "${DATA_ROOT:?set DATA_ROOT to the ADEChallengeData2016 folder, e.g. DATA_ROOT=/data/ADEChallengeData2016}"
OUT="${OUT:-runs/elsa}"
CFG="elsa/configs/upernet_elsa-swin-tiny_8xb2-160k_ade20k.yaml"
run_train elsa.segmentation --config "$CFG" --run-dir "$OUT/upernet_elsa-swin-tiny_ade20k" --resume auto \
  data.root="$DATA_ROOT" ${WEIGHTS:+model.init_checkpoint="$WEIGHTS"} "$@"
