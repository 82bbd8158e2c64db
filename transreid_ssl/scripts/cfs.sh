#!/usr/bin/env bash
# The CFS pipeline (reconstruction, spec section 1): theta_0 = 20-epoch DINO on the full LUPerson, theta_1 =
# theta_0 fine-tuned on "mm" (MSMT17 + Market), score every LUPerson image, rank, then the 100-epoch DINO on
# the top 60%.
#   LUP=/data/LUP DATA_ROOT=/data GPUS=8 bash transreid_ssl/scripts/cfs.sh
if [ -n "${LUP:-}" ] && [[ "$LUP" != /* ]]; then LUP="$PWD/$LUP"; fi  # launch.sh cds to the repository root
source "$(dirname "$0")/../../shared/scripts/launch.sh"
require_env LUP "the LUPerson folder holding images/*.jpg"
OUT="${OUT:-runs/transreid_ssl/cfs}"
run_train transreid_ssl.train --config transreid_ssl/configs/dino_vit-small_8xb64-100e_luperson.yaml \
  --run-dir "$OUT/theta0" --resume auto data.root="$LUP" engine.epochs=20
# the supervised recipe is single-GPU (batch 64 = 16 ids x 4): one process, on node 0 of a multi-node job
NNODES=1 GPUS=1 run_once run_train transreid_ssl.train --config transreid_ssl/configs/transreid_vit-small_1xb64-120e_mm.yaml \
  --run-dir "$OUT/theta1" --resume auto data.root="$DATA_ROOT" model.pretrained="$OUT/theta0/last.pt"
run_once "$PYTHON" -m transreid_ssl.cfs --config transreid_ssl/configs/transreid_vit-small_1xb64-120e_mm.yaml \
  --dino "$OUT/theta0/last.pt" --reid "$OUT/theta1/last.pt" --lup "$LUP" --out "$OUT/CFS_list.txt"
DATA_ROOT="$LUP" CFS_LIST="$OUT/CFS_list.txt" OUT="$OUT/dino_cfs60" bash "$(dirname "$0")/dino_luperson.sh"
