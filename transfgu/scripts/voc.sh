#!/usr/bin/env bash
# PASCAL VOC 2012: stages 1-2 (crops, k-means, CAMs), then the decoder. DATA_ROOT=<VOC2012 root>,
# WEIGHTS=<dino_deitsmall8_pretrain.pth>, GPUS=n for DDP (torchrun) in the decoder stage.
source "$(dirname "$0")/../../shared/scripts/launch.sh"
: "${WEIGHTS:?set WEIGHTS to a local dino_deitsmall8_pretrain.pth}"
PL="${PSEUDO_LABELS:-runs/transfgu/voc_pseudo_labels}"
run_once "$PYTHON" -m transfgu.generate --data-root "$DATA_ROOT" --dino "$WEIGHTS" --out "$PL"
run_train transfgu.train --config transfgu/configs/transfgu_vit-s8_1xb512-100e_voc.yaml \
  data.root="$DATA_ROOT" data.pseudo_labels="$PL" model.dino="$WEIGHTS" "$@"
