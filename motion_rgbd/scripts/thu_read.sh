#!/usr/bin/env bash
# THU-READ @CS1: DATA_ROOT=/data/THU-READ [GPUS=8] bash motion_rgbd/scripts/thu_read.sh
source "$(dirname "$0")/_common.sh"
run_motion motionrgbd_i3d-dsn_8xb6-100e_thu-read capf_i3d-dsn_8xb6-100e_thu-read
