#!/usr/bin/env bash
# NvGesture (README rows "NvGesture"): RGB net, depth net, then CAPF from their best checkpoints.
#   DATA_ROOT=/data/NvGesture [GPUS=8] [OUT=runs/motion_rgbd] [WEIGHTS=/w/jester_depth.pth] \
#       bash motion_rgbd/scripts/nvgesture.sh [key.sub=value ...]
# DATA_ROOT  <root>/{rgb,depth}/train/class_XX/subjectY_rZ/%06d.jpg + <root>/dataset_splits/{train,valid}.txt
# GPUS       torchrun processes (the paper: 8); OUT: run folders (<OUT>/nvgesture-{rgb,depth,capf})
# WEIGHTS    optional official unimodal checkpoint to start both nets from (the paper: Jester), heads skipped
source "$(dirname "$0")/_common.sh"
run_motion motionrgbd_i3d-dsn_8xb4-100e_nvgesture capf_i3d-dsn_8xb4-100e_nvgesture nvgesture "$@"
