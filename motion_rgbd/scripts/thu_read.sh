#!/usr/bin/env bash
# THU-READ (README rows "THU-READ"): per cross-subject split, RGB net, depth net, then CAPF.
#   DATA_ROOT=/data/THU-READ [THU_SPLITS="1 2 3 4"] [GPUS=8] [OUT=runs/motion_rgbd] [WEIGHTS=/w/nv_depth.pth] \
#       bash motion_rgbd/scripts/thu_read.sh [key.sub=value ...]
# DATA_ROOT   <root>/{RGB_,D_}<action>_<subj>_<rep>/%06d.jpg + <root>/dataset_splits/@CS<k>/{train,valid}.txt
# THU_SPLITS  which of @CS1..@CS4 to run (default "1"; the paper averages all four)
# GPUS        torchrun processes (the paper: 8); OUT: run folders (<OUT>/thu-read-cs<k>-{rgb,depth,capf})
# WEIGHTS     optional official unimodal checkpoint for both nets (shipped THU configs: an NvGesture-depth one)
source "$(dirname "$0")/_common.sh"
for k in ${THU_SPLITS:-1}; do
  case "$k" in 1|2|3|4) ;; *) echo "thu_read.sh: error: THU_SPLITS has '$k'; use numbers 1-4" >&2; exit 2 ;; esac
  run_motion motionrgbd_i3d-dsn_8xb6-100e_thu-read capf_i3d-dsn_8xb6-100e_thu-read "thu-read-cs$k" \
    data.train_list="dataset_splits/@CS$k/train.txt" data.valid_list="dataset_splits/@CS$k/valid.txt" "$@"
done
