#!/usr/bin/env bash
# Chalearn IsoGD (README rows "IsoGD", evaluated on the valid list): RGB net, depth net, then CAPF.
#   DATA_ROOT=/data/IsoGD [GPUS=8] [OUT=runs/motion_rgbd] [WEIGHTS=/w/jester_rgb.pth] \
#       bash motion_rgbd/scripts/isogd.sh [key.sub=value ...]
# DATA_ROOT  <root>/<path with M_>/%06d.jpg, depth K_ + <root>/dataset_splits/{train,valid}.txt
# GPUS       torchrun processes (the paper: 8); OUT: run folders (<OUT>/isogd-{rgb,depth,capf})
# WEIGHTS    optional official unimodal checkpoint to start both nets from (the paper: Jester), heads skipped
source "$(dirname "$0")/_common.sh"
run_motion motionrgbd_i3d-dsn_8xb6-300e_isogd capf_i3d-dsn_8xb6-300e_isogd isogd "$@"
