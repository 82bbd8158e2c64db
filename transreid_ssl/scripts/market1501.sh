#!/usr/bin/env bash
# Supervised fine-tuning on Market-1501 (README "Market sup" rows) from LUPerson DINO weights, then evaluation.
#   DATA_ROOT=/data PRETRAINED=/w/vit_small_cfs_lup.pth [STEM=ics] [GPUS=1] bash transreid_ssl/scripts/market1501.sh
# DATA_ROOT holds market1501/{bounding_box_train,query,bounding_box_test}. EXTRA: more dotted overrides.
source "$(dirname "$0")/../../shared/scripts/launch.sh"
: "${DATA_ROOT:?set DATA_ROOT, e.g. DATA_ROOT=/data (with market1501/ inside)}"
: "${PRETRAINED:?set PRETRAINED to the DINO weights, e.g. PRETRAINED=/w/vit_small_cfs_lup.pth}"
DATASET="${DATASET:-market1501}"
ARCH="${ARCH:-vit-small}"; [ "${STEM:-patchify}" = ics ] && ARCH="${ARCH}-ics"
CFG="transreid_ssl/configs/transreid_${ARCH}_1xb64-120e_${DATASET}.yaml"
OUT="${OUT:-runs/transreid_ssl/${DATASET}_${ARCH}}"
run_train transreid_ssl.train --config "$CFG" --run-dir "$OUT" --resume auto \
  data.root="$DATA_ROOT" model.pretrained="$PRETRAINED" ${EXTRA:-}
"$PYTHON" -m transreid_ssl.evaluate --config "$CFG" --weights "$OUT/last.pt" data.root="$DATA_ROOT" \
  --out "$OUT/eval.json" ${EXTRA:-}
