#!/usr/bin/env bash
# Domain-adaptive fine-tuning (README "UDA" rows): cluster contrast on the target, started from the
# source-supervised model (classifier and BN-neck dropped), then evaluation on the target.
#   DATA_ROOT=/data SOURCE_CHECKPOINT=runs/transreid_ssl/msmt17_vit-small/last.pt [TARGET=market1501|msmt17] [STEM=ics] \
#     [GPUS=n] bash transreid_ssl/scripts/uda.sh
# SOURCE_CHECKPOINT: the official transformer_120.pth of the *other* dataset, or our reid last.pt (scripts/msmt17.sh or
# scripts/market1501.sh). Extra arguments: dotted overrides.
source "$(dirname "$0")/../../shared/scripts/launch.sh"
TARGET="${TARGET:-market1501}"
case "$TARGET" in
  market1501) PAIR="msmt17-market1501" ;;
  msmt17) PAIR="market1501-msmt17" ;;
  *) echo "uda.sh: error: TARGET must be market1501 or msmt17, got '$TARGET'" >&2; exit 2 ;;
esac
require_env SOURCE_CHECKPOINT "the source-supervised checkpoint: transformer_120.pth or our reid last.pt"
ARCH="vit-small"; [ "${STEM:-patchify}" = ics ] && ARCH="${ARCH}-ics"
CFG="transreid_ssl/configs/uda_${ARCH}_1xb256-50e_${PAIR}.yaml"
OUT="${OUT:-runs/transreid_ssl/uda_${PAIR}_${ARCH}}"
echo "UDA ${PAIR/-/ -> } (${CFG}) -> ${OUT}"
run_train transreid_ssl.train --config "$CFG" --run-dir "$OUT" --resume auto \
  data.root="$DATA_ROOT" usl.init_checkpoint="$SOURCE_CHECKPOINT" "$@"
run_once "$PYTHON" -m transreid_ssl.evaluate --config "$CFG" --checkpoint "$OUT/last.pt" data.root="$DATA_ROOT" \
  --out "$OUT/eval.json" "$@"
