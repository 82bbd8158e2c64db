#!/usr/bin/env bash
# Office-Home, all twelve tasks. DATA_ROOT=<root with image_list/{Art,Clipart,Product,Real_World}.txt>.
source "$(dirname "$0")/../../shared/scripts/launch.sh"
WEIGHTS="${WEIGHTS:-$DATA_ROOT/resnet50-19c8e357.pth}"
CFG=bp_triplet/configs/bp-triplet_resnet50_1xb36-20k_officehome.yaml
for s in Ar Cl Pr Rw; do
  for t in Ar Cl Pr Rw; do
    [ "$s" = "$t" ] && continue
    run_train bp_triplet.train --config "$CFG" --run-dir "runs/bp_triplet/officehome/${s}2${t}" --resume auto \
      data.root="$DATA_ROOT" data.source="$s" data.target="$t" model.weights="$WEIGHTS" "$@"
  done
done
