#!/usr/bin/env bash
# Supervised fine-tuning on MSMT17 V1 (README "MSMT sup" rows); same variables as market1501.sh.
#   DATA_ROOT=/data WEIGHTS=/w/vit_small_cfs_lup.pth [STEM=ics] bash transreid_ssl/scripts/msmt17.sh
DATASET=msmt17 exec bash "$(dirname "$0")/market1501.sh" "$@"
