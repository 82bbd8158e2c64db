#!/usr/bin/env bash
# Cityscapes-27: stages 1-2 (crops, k-means, CAMs), then the decoder. DATA_ROOT=<root with leftImg8bit/ and
# gtFine/>, WEIGHTS=<dino_deitsmall8_pretrain.pth>, GPUS=n for DDP (torchrun) in the decoder stage.
source "$(dirname "$0")/../../shared/scripts/launch.sh"
: "${WEIGHTS:?set WEIGHTS to a local dino_deitsmall8_pretrain.pth}"
PL="${PSEUDO_LABELS:-runs/transfgu/cityscapes_pseudo_labels}"
if [ ! -f "$PL/centroids.pt" ]; then
  run_once "$PYTHON" -m transfgu.generate --dataset cityscapes --classes 27 --data-root "$DATA_ROOT" --dino "$WEIGHTS" --out "$PL"
fi
run_train transfgu.train --config transfgu/configs/transfgu_vit-s8_1xb256-50e_cityscapes.yaml \
  data.root="$DATA_ROOT" data.pseudo_labels="$PL" model.dino="$WEIGHTS" "$@"
