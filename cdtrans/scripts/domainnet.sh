#!/usr/bin/env bash
# CDTrans, DomainNet (30 tasks, full target domain for training and testing, official issue #6):
#   DATA_ROOT=/data/domainnet WEIGHTS=/w/deit.pth [BACKBONE=base GPUS=2] bash cdtrans/scripts/domainnet.sh
source "$(dirname "$0")/_common.sh" "$@"
run_cdtrans domainnet 10 clipart infograph painting quickdraw real sketch
