#!/usr/bin/env bash
# Stage 1 (V2V teacher), then the image students: image-only, VKD, TKP, TCL, TCL + ML, on MARS (default),
# DukeMTMC-VideoReID (DATASET=duke, or scripts/duke.sh) or VeRi-776 (DATASET=veri, or scripts/veri.sh).
#   DATA_ROOT=<dataset root> [WEIGHTS=<torchvision resnet50 state dict>] [GPUS=n] bash tcl_i2v/scripts/mars.sh [overrides]
# Check the tree first: python -m shared.data.verify {mars|duke_video|veri} $DATA_ROOT
# WEIGHTS defaults to $DATA_ROOT/resnet50-0676ba61.pth; GPUS=n -> torchrun. Extra arguments are dotted overrides.
source "$(dirname "$0")/../../shared/scripts/launch.sh"
DATASET="${DATASET:-mars}"
case "$DATASET" in mars) NAME=MARS ;; duke) NAME=DukeMTMC-VideoReID ;; veri) NAME=VeRi-776 ;;
  *) echo "$(basename "$0"): DATASET must be mars, duke or veri, got '$DATASET'" >&2; exit 2 ;; esac
: "${DATA_ROOT:?set DATA_ROOT to the ${NAME} root (python -m shared.data.verify lists the layouts)}"
WEIGHTS="${WEIGHTS:-$DATA_ROOT/resnet50-0676ba61.pth}"
C=tcl_i2v/configs
OUT="${OUT:-runs/tcl_i2v/$DATASET}"
V2V=$(ls $C/v2v_resnet50_*_"$DATASET".yaml)
echo "${NAME}: teacher ${V2V} -> ${OUT}/v2v, then the students"
run_train tcl_i2v.train --config "$V2V" --run-dir "$OUT/v2v" --resume auto \
  data.root="$DATA_ROOT" model.weights="$WEIGHTS" "$@"
for arm in image vkd tkp tcl tcl-ml; do
  run_train tcl_i2v.train --config "$C/${arm}_resnet50_1xb48-500e_${DATASET}.yaml" --run-dir "$OUT/$arm" \
    --resume auto data.root="$DATA_ROOT" model.weights="$WEIGHTS" kd.teacher_ckpt="$OUT/v2v/last.pt" "$@"
done
