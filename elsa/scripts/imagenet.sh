#!/usr/bin/env bash
# ELSA-Swin on ImageNet-1k with the official recipe (8 GPUs x 128; elsa/configs/elsa_swin-*_8xb128-310e_in1k.yaml).
# Env: DATA_ROOT (ImageNet folder: train/<wnid>/*.JPEG, val/<wnid>/*.JPEG), SIZE tiny|small|base (default tiny),
#      GPUS (default 1; the paper used 8 -> torchrun), OUT (default runs/elsa), extra arguments: dotted overrides.
# With fewer GPUs the global batch stays 1024 (engine.batch_size is global); lower it (engine.batch_size=...) as an extra argument if memory is short.
# Evaluate a released checkpoint instead: python -m elsa.evaluate --config <cfg> --checkpoint <file> data.root=...
source "$(dirname "${BASH_SOURCE[0]}")/../../shared/scripts/launch.sh"
: "${DATA_ROOT:?set DATA_ROOT to the ImageNet-1k folder, e.g. DATA_ROOT=/data/imagenet}"
SIZE="${SIZE:-tiny}"
OUT="${OUT:-runs/elsa}"
CFG="elsa/configs/elsa_swin-${SIZE}_8xb128-310e_in1k.yaml"
run_train elsa.train --config "$CFG" --run-dir "$OUT/elsa_swin-${SIZE}_in1k" --resume auto \
  data.root="$DATA_ROOT" "$@"
