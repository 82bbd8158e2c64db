#!/usr/bin/env bash
# ImageCLEF-DA, all six tasks. DATA_ROOT=<root with list/{i,p,c}List.txt>, WEIGHTS, GPUS as office31.sh.
source "$(dirname "$0")/../../shared/scripts/launch.sh"
WEIGHTS="${WEIGHTS:-$DATA_ROOT/resnet50-19c8e357.pth}"
CFG=bp_triplet/configs/bp-triplet_resnet50_1xb36-20k_imageclef.yaml
for task in I:P P:I I:C C:I C:P P:C; do
  s="${task%%:*}"; t="${task##*:}"
  run_train bp_triplet.train --config "$CFG" --run-dir "runs/bp_triplet/imageclef/${s}2${t}" --resume auto \
    data.root="$DATA_ROOT" data.source="$s" data.target="$t" model.weights="$WEIGHTS" "$@"
done
