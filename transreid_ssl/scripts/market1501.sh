#!/usr/bin/env bash
# Supervised fine-tuning on Market-1501 (README "Market sup" rows) from LUPerson DINO weights, then evaluation.
#   DATA_ROOT=/data WEIGHTS=/w/vit_small_cfs_lup.pth [STEM=ics] [GPUS=1] bash transreid_ssl/scripts/market1501.sh
# DATA_ROOT holds market1501/{bounding_box_train,query,bounding_box_test}. Extra arguments: dotted overrides.
# MSMT17: scripts/msmt17.sh (it sources this file with DATASET=msmt17, so its help and errors are its own).
source "$(dirname "${BASH_SOURCE[0]}")/../../shared/scripts/launch.sh"
DATASET="${DATASET:-market1501}"
case "$DATASET" in market1501) NAME="Market-1501" ;; msmt17) NAME="MSMT17" ;;
  *) echo "$(basename "$0"): error: DATASET must be market1501 or msmt17, got '$DATASET'" >&2; exit 2 ;; esac
require_env WEIGHTS "the DINO weights file, e.g. /w/vit_small_cfs_lup.pth"
ARCH="${ARCH:-vit-small}"; [ "${STEM:-patchify}" = ics ] && ARCH="${ARCH}-ics"
CFG="transreid_ssl/configs/transreid_${ARCH}_1xb64-120e_${DATASET}.yaml"
OUT="${OUT:-runs/transreid_ssl/${DATASET}_${ARCH}}"
echo "supervised fine-tuning on ${NAME} (${CFG}) -> ${OUT}"
run_train transreid_ssl.train --config "$CFG" --run-dir "$OUT" --resume auto \
  data.root="$DATA_ROOT" model.pretrained="$WEIGHTS" "$@"
run_once "$PYTHON" -m transreid_ssl.evaluate --config "$CFG" --checkpoint "$OUT/last.pt" data.root="$DATA_ROOT" \
  --out "$OUT/eval.json" "$@"
