#!/usr/bin/env bash
# CDTrans, Office-31 (6 tasks, paper table 1):  DATA_ROOT=/data/office31 WEIGHTS=/w/deit.pth [BACKBONE=base GPUS=2] bash cdtrans/scripts/office31.sh
source "$(dirname "$0")/_common.sh" "$@"
run_cdtrans office31 10 amazon dslr webcam
