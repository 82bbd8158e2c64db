#!/usr/bin/env bash
# Supervised fine-tuning on Market-1501 (README "Market sup" rows; DATASET=msmt17 for MSMT17, which
# scripts/msmt17.sh sets) from LUPerson DINO weights, then evaluation.
#   DATA_ROOT=/data WEIGHTS=/w/vit_small_cfs_lup.pth [STEM=ics] [GPUS=1] bash transreid_ssl/scripts/market1501.sh
# DATA_ROOT holds market1501/{bounding_box_train,query,bounding_box_test} (MSMT17: MSMT17/). Extra arguments: dotted overrides.
source "$(dirname "$0")/../../shared/scripts/launch.sh"
DATASET="${DATASET:-market1501}"
case "$DATASET" in market1501) NAME="Market-1501"; DIR="market1501/" ;; msmt17) NAME="MSMT17"; DIR="MSMT17/" ;;
  *) echo "$(basename "$0"): DATASET must be market1501 or msmt17, got '$DATASET'" >&2; exit 2 ;; esac
: "${DATA_ROOT:?set DATA_ROOT, e.g. DATA_ROOT=/data (with ${DIR} inside)}"
: "${WEIGHTS:?set WEIGHTS to the DINO weights, e.g. WEIGHTS=/w/vit_small_cfs_lup.pth}"
ARCH="${ARCH:-vit-small}"; [ "${STEM:-patchify}" = ics ] && ARCH="${ARCH}-ics"
CFG="transreid_ssl/configs/transreid_${ARCH}_1xb64-120e_${DATASET}.yaml"
OUT="${OUT:-runs/transreid_ssl/${DATASET}_${ARCH}}"
echo "supervised fine-tuning on ${NAME} (${CFG}) -> ${OUT}"
run_train transreid_ssl.train --config "$CFG" --run-dir "$OUT" --resume auto \
  data.root="$DATA_ROOT" model.pretrained="$WEIGHTS" "$@"
run_once "$PYTHON" -m transreid_ssl.evaluate --config "$CFG" --checkpoint "$OUT/last.pt" data.root="$DATA_ROOT" \
  --out "$OUT/eval.json" "$@"
