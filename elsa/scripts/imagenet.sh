#!/usr/bin/env bash
# ImageNet-1k training: ELSA-Swin with the official recipe (elsa/configs/elsa_swin-*_8xb128-310e_in1k.yaml) or
# ELSA-VOLO with VOLO's recipe, token labelling included (elsa/configs/elsa_volo-d*_8xb128-310e_in1k.yaml; a
# reconstruction, ELSA-VOLO was never released). Both 8 GPUs x 128.
# Env: DATA_ROOT (ImageNet folder: train/<wnid>/*.JPEG, val/<wnid>/*.JPEG), SIZE tiny|small|base (ELSA-Swin) or
#      d1|d2|d3|d4|d5 (ELSA-VOLO, 224 px) or d1-384|d2-384|d3-448|d4-448|d5-448|d5-512 (VOLO's fine-tuning step;
#      WEIGHTS = the 224 px run's best.pt) (default tiny), WEIGHTS (ELSA-Swin: a released file to start from),
#      TOKEN_LABEL_ROOT (ELSA-VOLO: TokenLabeling's NFNet-F6 label maps, <root>/<wnid>/<stem>.pt; or pass
#      train.token_label=false to train without token labelling), GPUS (default 1; the paper used 8 -> torchrun),
#      OUT (default runs/elsa),
#      extra arguments: dotted overrides (e.g. model.lam=0 model.elsa_kernel=7 for ELSA-VOLO with the Swin ghost setting).
# With fewer GPUs the global batch stays 1024 (engine.batch_size is global); lower it (engine.batch_size=...) as an extra argument if memory is short.
# Evaluate a released checkpoint instead: python -m elsa.evaluate --config <cfg> --checkpoint <file> data.root=...
source "$(dirname "${BASH_SOURCE[0]}")/../../shared/scripts/launch.sh"
: "${DATA_ROOT:?set DATA_ROOT to the ImageNet-1k folder, e.g. DATA_ROOT=/data/imagenet}"
SIZE="${SIZE:-tiny}"
OUT="${OUT:-runs/elsa}"
case "$SIZE" in
  tiny|small|base) CFG="elsa_swin-${SIZE}_8xb128-310e_in1k" ;;
  d1|d2|d3|d4|d5) CFG="elsa_volo-${SIZE}_8xb128-310e_in1k" ;;
  d1-384) CFG="elsa_volo-d1-384px-ft_8xb64-40e_in1k" ;;
  d2-384) CFG="elsa_volo-d2-384px-ft_8xb48-40e_in1k" ;;
  d3-448|d4-448|d5-448|d5-512) CFG="elsa_volo-${SIZE%-*}-${SIZE#*-}px-ft_8xb30-40e_in1k" ;;
  *) echo "imagenet.sh: SIZE must be tiny|small|base|d1..d5|d1-384|d2-384|d3-448|d4-448|d5-448|d5-512, got '$SIZE'" >&2
     exit 2 ;;
esac
case "$SIZE" in *-*) : "${WEIGHTS:?set WEIGHTS to best.pt of the 224 px run to fine-tune from}" ;; esac
run_train elsa.train --config "elsa/configs/${CFG}.yaml" --run-dir "$OUT/${CFG%%_8xb*}_in1k" \
  --resume auto data.root="$DATA_ROOT" ${WEIGHTS:+model.init_checkpoint="$WEIGHTS"} \
  ${TOKEN_LABEL_ROOT:+train.token_label_root="$TOKEN_LABEL_ROOT"} "$@"
