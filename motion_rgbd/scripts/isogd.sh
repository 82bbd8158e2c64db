#!/usr/bin/env bash
# Chalearn IsoGD: DATA_ROOT=/data/IsoGD [GPUS=8] bash motion_rgbd/scripts/isogd.sh
source "$(dirname "$0")/_common.sh"
run_motion motionrgbd_i3d-dsn_8xb6-300e_isogd capf_i3d-dsn_8xb6-300e_isogd
