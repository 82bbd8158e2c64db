#!/usr/bin/env bash
# DINO pre-training on LUPerson (dino/script/vit-s_*_lup.sh): full, or CFS-60% when CFS_LIST is set.
#   DATA_ROOT=/data/LUP [CFS_LIST=/data/CFS_list.pkl] [STEM=ics] GPUS=8 bash transreid_ssl/scripts/dino_luperson.sh [key=value ...]
if [ -n "${CFS_LIST:-}" ] && [[ "$CFS_LIST" != /* ]]; then CFS_LIST="$PWD/$CFS_LIST"; fi  # launch.sh cds to the repository root
source "$(dirname "$0")/../../shared/scripts/launch.sh"
: "${DATA_ROOT:?set DATA_ROOT to the LUPerson folder holding images/*.jpg (decoded from the lmdb)}"
ARCH="${ARCH:-vit-small}"; [ "${STEM:-patchify}" = ics ] && ARCH="${ARCH}-ics"
if [ -n "${CFS_LIST:-}" ]; then
  CFG="transreid_ssl/configs/dino_${ARCH}_8xb64-100e_luperson-cfs60.yaml"; FILTER="data.filter_list=$CFS_LIST"
else
  CFG="transreid_ssl/configs/dino_vit-small_8xb64-100e_luperson.yaml"; FILTER=""
  [ "$ARCH" != vit-small ] && set -- model.stem=ics "$@"
fi
run_train transreid_ssl.train --config "$CFG" --run-dir "${OUT:-runs/transreid_ssl/dino_${ARCH}}" --resume auto \
  data.root="$DATA_ROOT" $FILTER "$@"
