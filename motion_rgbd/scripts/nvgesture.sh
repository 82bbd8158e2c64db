#!/usr/bin/env bash
# NvGesture: DATA_ROOT=/data/NvGesture [GPUS=8] bash motion_rgbd/scripts/nvgesture.sh
source "$(dirname "$0")/_common.sh"
run_motion motionrgbd_i3d-dsn_8xb4-100e_nvgesture capf_i3d-dsn_8xb4-100e_nvgesture
