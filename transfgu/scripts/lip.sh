#!/usr/bin/env bash
# LIP-5 / LIP-16 / LIP-19: stages 1-2 (crops, k-means, CAMs), then the decoder. DATA_ROOT=<root with
# {train,val}_id.txt, {train,val}_images/, {train,val}_segmentations/>, WEIGHTS=<dino_deitsmall8_pretrain.pth>,
# CLASSES=19 (default) | 16 | 5, GPUS=n for DDP (torchrun) in the decoder stage.
source "$(dirname "$0")/../../shared/scripts/launch.sh"
: "${WEIGHTS:?set WEIGHTS to a local dino_deitsmall8_pretrain.pth}"
CLASSES="${CLASSES:-19}"
case "$CLASSES" in
  5) CFG=transfgu/configs/transfgu_vit-s8_1xb512-100e_lip5.yaml ;;
  16) CFG=transfgu/configs/transfgu_vit-s8_1xb512-100e_lip16.yaml ;;
  19) CFG=transfgu/configs/transfgu_vit-s8_1xb256-100e_lip19.yaml ;;
  *) echo "lip.sh: CLASSES must be 5, 16 or 19, got $CLASSES" >&2; exit 2 ;;
esac
PL="${PSEUDO_LABELS:-runs/transfgu/lip${CLASSES}_pseudo_labels}"
if [ ! -f "$PL/centroids.pt" ]; then
  run_once "$PYTHON" -m transfgu.generate --dataset lip --classes "$CLASSES" --data-root "$DATA_ROOT" --dino "$WEIGHTS" --out "$PL"
fi
run_train transfgu.train --config "$CFG" data.root="$DATA_ROOT" data.pseudo_labels="$PL" model.dino="$WEIGHTS" "$@"
