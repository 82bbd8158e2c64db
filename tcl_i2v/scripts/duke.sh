#!/usr/bin/env bash
# DukeMTMC-VideoReID: the MARS pipeline (scripts/mars.sh) on <DATA_ROOT>/{train,query,gallery}.
#   DATA_ROOT=/data/DukeMTMC-VideoReID [WEIGHTS=...] [GPUS=n] bash tcl_i2v/scripts/duke.sh [overrides]
DATASET=duke exec bash "$(dirname "$0")/mars.sh" "$@"
