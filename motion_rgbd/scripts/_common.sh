#!/usr/bin/env bash
# Sourced by the motion_rgbd scripts (not run directly): the shared launcher, then run_motion.
source "$(dirname "${BASH_SOURCE[0]}")/../../shared/scripts/launch.sh"
OUT="${OUT:-runs/motion_rgbd}"

# run_motion <config stem without -rgb/-depth> <fusion config stem> <run tag> [key=value ...]:
# RGB net, depth net (each from $WEIGHTS when set), then CAPF from their best.pt; run dirs $OUT/<tag>-{rgb,depth,capf}.
run_motion() {
  local stem="$1" fusion="$2" tag="$3"; shift 3
  local init=()
  if [ -n "${WEIGHTS:-}" ]; then init=(model.init_checkpoint="$WEIGHTS"); fi
  for mod in rgb depth; do
    run_train motion_rgbd.train --config "motion_rgbd/configs/${stem}-${mod}.yaml" --run-dir "$OUT/${tag}-${mod}" \
      data.root="$DATA_ROOT" "${init[@]}" "$@"
  done
  run_train motion_rgbd.train --config "motion_rgbd/configs/${fusion}.yaml" --run-dir "$OUT/${tag}-capf" \
    data.root="$DATA_ROOT" model.rgb_checkpoint="$OUT/${tag}-rgb/best.pt" \
    model.depth_checkpoint="$OUT/${tag}-depth/best.pt" "$@"
}
