#!/usr/bin/env bash
# NTU RGB+D 60 (README rows "NTU-RGBD CS / CV"): per protocol, RGB net, depth net, then CAPF.
#   DATA_ROOT=/data/NTU-RGBD [NTU_PROTOCOLS="cs cv"] [GPUS=8] [OUT=runs/motion_rgbd] [WEIGHTS=/w/ckpt.pth] \
#       bash motion_rgbd/scripts/ntu.sh [key.sub=value ...]
# DATA_ROOT      <root>/Images/<S..C..P..R..A.._rgb>/%06d.jpg (1-indexed, 320x240 ROI frames),
#                <root>/nturgb+d_depth_masked/<S..A..>/MDepth-%08d.png (raw 16-bit),
#                <root>/dataset_splits/{@CS,@CV}/{train,valid}.txt; check with python -m shared.data.verify ntu_rgbd
# NTU_PROTOCOLS  cross-subject "cs", cross-view "cv" or both (default "cs cv")
# GPUS           torchrun processes (the paper: 8); OUT: run folders (<OUT>/ntu-<p>-{rgb,depth,capf})
# WEIGHTS        optional official unimodal checkpoint for both nets (the paper trains NTU from scratch)
source "$(dirname "$0")/_common.sh"
for p in ${NTU_PROTOCOLS:-cs cv}; do
  case "$p" in cs|cv) ;; *) echo "ntu.sh: error: NTU_PROTOCOLS has '$p'; use cs and/or cv" >&2; exit 2 ;; esac
  run_motion "motionrgbd_i3d-dsn_8xb4-100e_ntu-$p" "capf_i3d-dsn_8xb4-100e_ntu-$p" "ntu-$p" "$@"
done
