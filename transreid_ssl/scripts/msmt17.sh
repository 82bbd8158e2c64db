#!/usr/bin/env bash
# Supervised fine-tuning on MSMT17 V1 (README "MSMT sup" rows) from LUPerson DINO weights, then evaluation.
#   DATA_ROOT=/data WEIGHTS=/w/vit_small_cfs_lup.pth [STEM=ics] [GPUS=1] bash transreid_ssl/scripts/msmt17.sh
# DATA_ROOT holds MSMT17/{train,test} and list_{train,val,query,gallery}.txt (V1; V2 costs 3-4 mAP, issue #13).
# Extra arguments: dotted overrides.
DATASET=msmt17
source "$(dirname "$0")/market1501.sh"
