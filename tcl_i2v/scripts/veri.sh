#!/usr/bin/env bash
# VeRi-776: the MARS pipeline (scripts/mars.sh) with VeRi's recipe and protocol (224 x 224, 1-image teacher clips,
# query images against test tracks).
#   DATA_ROOT=/data/VeRi [WEIGHTS=...] [GPUS=n] bash tcl_i2v/scripts/veri.sh [overrides]
DATASET=veri exec bash "$(dirname "$0")/mars.sh" "$@"
