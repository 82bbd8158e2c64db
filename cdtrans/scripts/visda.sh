#!/usr/bin/env bash
# CDTrans, VisDA-2017 synthetic -> real (validation), mean per-class accuracy:
#   DATA_ROOT=/data/visda WEIGHTS=/w/deit_base.pth BACKBONE=base GPUS=2 bash cdtrans/scripts/visda.sh
source "$(dirname "$0")/_common.sh" "$@"
TASKS="train:validation" run_cdtrans visda 20 train validation
