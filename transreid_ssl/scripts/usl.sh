#!/usr/bin/env bash
# Unsupervised fine-tuning by cluster contrast (README "USL" rows), then evaluation of the last epoch.
#   DATA_ROOT=/data WEIGHTS=/w/vit_small_cfs_lup.pth [DATASET=market1501|msmt17] [STEM=ics] [GPUS=n] \
#     bash transreid_ssl/scripts/usl.sh
# DATA_ROOT holds market1501/ or MSMT17/; WEIGHTS is the LUPerson DINO file. Extra arguments: dotted overrides.
source "$(dirname "$0")/../../shared/scripts/launch.sh"
DATASET="${DATASET:-market1501}"
case "$DATASET" in market1501|msmt17) ;;
  *) echo "usl.sh: error: DATASET must be market1501 or msmt17, got '$DATASET'" >&2; exit 2 ;; esac
require_env WEIGHTS "the DINO weights file, e.g. /w/vit_small_cfs_lup.pth"
ARCH="vit-small"; [ "${STEM:-patchify}" = ics ] && ARCH="${ARCH}-ics"
CFG="transreid_ssl/configs/usl_${ARCH}_1xb256-50e_${DATASET}.yaml"
OUT="${OUT:-runs/transreid_ssl/usl_${DATASET}_${ARCH}}"
echo "USL on ${DATASET} (${CFG}) -> ${OUT}"
run_train transreid_ssl.train --config "$CFG" --run-dir "$OUT" --resume auto \
  data.root="$DATA_ROOT" model.pretrained="$WEIGHTS" "$@"
run_once "$PYTHON" -m transreid_ssl.evaluate --config "$CFG" --checkpoint "$OUT/last.pt" data.root="$DATA_ROOT" \
  --out "$OUT/eval.json" "$@"
