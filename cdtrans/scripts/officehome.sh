#!/usr/bin/env bash
# CDTrans, Office-Home (12 tasks):  DATA_ROOT=/data/OfficeHomeDataset WEIGHTS=/w/deit.pth [BACKBONE=base GPUS=2] bash cdtrans/scripts/officehome.sh
source "$(dirname "$0")/_common.sh" "$@"
run_cdtrans officehome 10 Art Clipart Product Real_World
