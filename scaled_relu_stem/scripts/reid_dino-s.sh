#!/usr/bin/env bash
# Scaled ReLU paper, re-ID: DINO-S/16 without and with the scaled-ReLU stem, fine-tuned on Market-1501 and
# MSMT17 with TransReID-SSL's supervised recipe THROUGH python -m transreid_ssl.train (configs in
# scaled_relu_stem/configs/reid/; transreid_ssl's stem "ics_bn" is this folder's stem), then evaluated
# with python -m transreid_ssl.evaluate (mAP, rank-1 -> <run>/eval.json).
#   DATA_ROOT=/data WEIGHTS=/w/dino_deitsmall16_pretrain.pth WEIGHTS_STEM=/w/dino_s16_srstem.pth [GPUS=1] \
#       bash scaled_relu_stem/scripts/reid_dino-s.sh [key.sub=value ...]
# Env:
#   DATA_ROOT  required: holds market1501/{bounding_box_train,query,bounding_box_test} and/or MSMT17/
#   WEIGHTS    DINO-S/16 weights, patchify stem (needed when STEMS has "patchify"), e.g. the official
#              ImageNet dino_deitsmall16_pretrain.pth (square grid: the configs' pretrain_hw_ratio 1)
#   WEIGHTS_STEM  DINO-S/16 weights with the scaled-ReLU stem in transreid_ssl's key layout (patch_embed.conv.*;
#              needed when STEMS has "srstem"). None are published: pre-train one with
#              python -m transreid_ssl.train --config scaled_relu_stem/configs/reid/dino_vit-small-srstem_8xb64-100e_luperson.yaml
#              (LUPerson: then add model.pretrain_hw_ratio=2), or convert a scaled_relu_stem checkpoint with
#              python -m scaled_relu_stem.reid SRC DST
#   DATASETS   default "market1501 msmt17";  STEMS  default "patchify srstem"
#   GPUS       default 1 (torchrun when > 1);  OUT  runs folder, default runs/scaled_relu_stem/reid
# Extra arguments are config overrides for every run. Re-running resumes each run from its last.pt.
source "$(dirname "$0")/../../shared/scripts/launch.sh"
STEMS="${STEMS:-patchify srstem}"
DATASETS="${DATASETS:-market1501 msmt17}"
OUT="${OUT:-runs/scaled_relu_stem/reid}"
for stem in $STEMS; do  # every input checked before the first run starts
  case "$stem" in
    patchify) require_env WEIGHTS "DINO-S/16 weights, patchify stem" ;;
    srstem) require_env WEIGHTS_STEM "DINO-S/16 weights with the scaled-ReLU stem" ;;
    *) echo "$(basename "$0"): error: STEMS holds '$stem'; use patchify and/or srstem" >&2; exit 2 ;;
  esac
done
for dataset in $DATASETS; do
  for stem in $STEMS; do
    if [ "$stem" = patchify ]; then ARCH=vit-small; INIT_FILE="$WEIGHTS"; else ARCH=vit-small-srstem; INIT_FILE="$WEIGHTS_STEM"; fi
    CFG="scaled_relu_stem/configs/reid/reid-dino_${ARCH}_1xb64-120e_${dataset}.yaml"
    RUN="$OUT/reid-dino_${ARCH}_${dataset}"
    echo "re-ID fine-tuning: $CFG from $INIT_FILE -> $RUN"
    run_train transreid_ssl.train --config "$CFG" --run-dir "$RUN" --resume auto \
      data.root="$DATA_ROOT" model.pretrained="$INIT_FILE" "$@"
    run_once "$PYTHON" -m transreid_ssl.evaluate --config "$CFG" --checkpoint "$RUN/last.pt" --out "$RUN/eval.json" \
      data.root="$DATA_ROOT" "$@"
  done
done
