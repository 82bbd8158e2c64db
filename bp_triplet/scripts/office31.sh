#!/usr/bin/env bash
# Office-31, all six tasks. DATA_ROOT=<root with image_list/{amazon,dslr,webcam}.txt>,
# WEIGHTS=<torchvision resnet50 ImageNet file> (default $DATA_ROOT/resnet50-19c8e357.pth), GPUS=n for DDP.
# Extra arguments are passed to every run as config overrides (e.g. adv.variant=cdan).
source "$(dirname "$0")/../../shared/scripts/launch.sh"
WEIGHTS="${WEIGHTS:-$DATA_ROOT/resnet50-19c8e357.pth}"
CFG=bp_triplet/configs/bp-triplet_resnet50_1xb36-20k_office31.yaml
for task in A:W D:W W:D A:D D:A W:A; do
  s="${task%%:*}"; t="${task##*:}"
  lr=0.001
  if [ "$task" = "A:D" ] || [ "$task" = "D:W" ]; then lr=0.0003; fi  # thuml/CDAN's per-task lr
  run_train bp_triplet.train --config "$CFG" --run-dir "runs/bp_triplet/office31/${s}2${t}" --resume auto \
    data.root="$DATA_ROOT" data.source="$s" data.target="$t" model.weights="$WEIGHTS" optim.lr=$lr "$@"
done
