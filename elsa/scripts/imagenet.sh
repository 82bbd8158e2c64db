#!/usr/bin/env bash
# ImageNet-1k training: ELSA-Swin with the official recipe (elsa/configs/elsa_swin-*_8xb128-310e_in1k.yaml) or
# ELSA-VOLO with VOLO's recipe without token labelling (elsa/configs/elsa_volo-d*_8xb128-310e_in1k.yaml; a
# reconstruction, ELSA-VOLO was never released). Both 8 GPUs x 128.
# Env: DATA_ROOT (ImageNet folder: train/<wnid>/*.JPEG, val/<wnid>/*.JPEG), SIZE tiny|small|base (ELSA-Swin) or
#      d1|d2|d3 (ELSA-VOLO) (default tiny), GPUS (default 1; the paper used 8 -> torchrun), OUT (default runs/elsa),
#      extra arguments: dotted overrides (e.g. model.lam=0 model.elsa_kernel=7 for ELSA-VOLO with the Swin ghost setting).
# With fewer GPUs the global batch stays 1024 (engine.batch_size is global); lower it (engine.batch_size=...) as an extra argument if memory is short.
# Evaluate a released checkpoint instead: python -m elsa.evaluate --config <cfg> --checkpoint <file> data.root=...
source "$(dirname "${BASH_SOURCE[0]}")/../../shared/scripts/launch.sh"
: "${DATA_ROOT:?set DATA_ROOT to the ImageNet-1k folder, e.g. DATA_ROOT=/data/imagenet}"
SIZE="${SIZE:-tiny}"
OUT="${OUT:-runs/elsa}"
case "$SIZE" in
  tiny|small|base) NAME="elsa_swin-${SIZE}" ;;
  d1|d2|d3) NAME="elsa_volo-${SIZE}" ;;
  *) echo "imagenet.sh: SIZE must be tiny|small|base|d1|d2|d3, got '$SIZE'" >&2; exit 2 ;;
esac
run_train elsa.train --config "elsa/configs/${NAME}_8xb128-310e_in1k.yaml" --run-dir "$OUT/${NAME}_in1k" \
  --resume auto data.root="$DATA_ROOT" "$@"
