#!/usr/bin/env bash
# COCO-Stuff-27 / COCO-Stuff-171 / COCO-80: stages 1-2 (crops, k-means, CAMs), then the decoder.
# DATA_ROOT=<MSCOCO root: images/, annotations/{train2017,val2017}/*.png, annotations/instances_*.json>,
# WEIGHTS=<dino_deitsmall8_pretrain.pth>, CLASSES=27 (default) | 171 | 80, CURATED=<dir with curated_{train,val}.txt>
# (COCO-Stuff-27 only: the curated IIC/PiCIE split and its recipe), GPUS=n for DDP (torchrun) in the decoder stage.
# COCO-80 trains on the thing CAMs of the COCO-Stuff-171 generation (official coco_trainval.py).
source "$(dirname "$0")/../../shared/scripts/launch.sh"
: "${WEIGHTS:?set WEIGHTS to a local dino_deitsmall8_pretrain.pth}"
CLASSES="${CLASSES:-27}"
CFG=transfgu/configs/transfgu_vit-s8_1xb256-200e_cocostuff${CLASSES}.yaml
GEN_CLASSES="$CLASSES"; EXTRA=()
case "$CLASSES" in
  27) if [ -n "${CURATED:-}" ]; then
        CFG=transfgu/configs/transfgu_vit-s8_1xb256-200e_cocostuff27-curated.yaml
        EXTRA=(data.curated="$CURATED/curated_{split}.txt"); fi ;;
  171) ;;
  80) CFG=transfgu/configs/transfgu_vit-s8_1xb256-200e_coco80.yaml; GEN_CLASSES=171 ;;
  *) echo "coco.sh: CLASSES must be 27, 171 or 80, got $CLASSES" >&2; exit 2 ;;
esac
# Stages 1-2 always run on the full train set (the official crop / pseudo-label scripts know no curated split);
# the curated run trains and evaluates on the listed subset of those CAMs.
PL="${PSEUDO_LABELS:-runs/transfgu/coco${GEN_CLASSES}_pseudo_labels}"
if [ ! -f "$PL/centroids.pt" ]; then
  run_once "$PYTHON" -m transfgu.generate --dataset coco --classes "$GEN_CLASSES" --data-root "$DATA_ROOT" --dino "$WEIGHTS" \
    --out "$PL"
fi
run_train transfgu.train --config "$CFG" \
  data.root="$DATA_ROOT" data.pseudo_labels="$PL" model.dino="$WEIGHTS" "${EXTRA[@]}" "$@"
