#!/usr/bin/env bash
# VisDA-2017 synthetic -> real. DATA_ROOT=<root with image_list/{train,validation}.txt>,
# WEIGHTS=<torchvision resnet101 ImageNet file> (default $DATA_ROOT/resnet101-5d3b4d8f.pth).
source "$(dirname "$0")/../../shared/scripts/launch.sh"
WEIGHTS="${WEIGHTS:-$DATA_ROOT/resnet101-5d3b4d8f.pth}"
run_train bp_triplet.train --config bp_triplet/configs/bp-triplet_resnet101_1xb36-20k_visda.yaml \
  --run-dir runs/bp_triplet/visda/Synthetic2Real --resume auto \
  data.root="$DATA_ROOT" model.weights="$WEIGHTS" "$@"
