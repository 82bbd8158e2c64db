#!/usr/bin/env bash
# Shared by cdtrans/scripts/<benchmark>.sh: Stage A once per source domain, the baseline (Stage A's last
# checkpoint evaluated on every target, official issue #2), then Stage B for every source->target task.
# Env: DATA_ROOT (benchmark folder), WEIGHTS (DeiT/ViT ImageNet weights, a local file), BACKBONE small|base,
#      GPUS (torchrun when > 1; the paper ran DeiT-B UDA on 2 GPUs), OUT (default runs/cdtrans),
#      TASKS ("amazon:webcam ..." to run a subset), extra arguments: dotted overrides for every run.
source "$(dirname "${BASH_SOURCE[0]}")/../../shared/scripts/launch.sh"
: "${DATA_ROOT:?set DATA_ROOT to the benchmark folder, e.g. DATA_ROOT=/data/office31}"
: "${WEIGHTS:?set WEIGHTS to the ImageNet weights, e.g. WEIGHTS=/weights/deit_small_distilled_patch16_224-649709d9.pth}"
BACKBONE="${BACKBONE:-small}"
OUT="${OUT:-runs/cdtrans}"
OVERRIDES=("$@")  # the calling script's arguments (a sourced file sees them): overrides for every run

run_cdtrans() {  # run_cdtrans <dataset> <pretrain epochs> <domain>... ; TASKS="s:t ..." optionally restricts Stage B
  local ds="$1" pe="$2"; shift 2
  local domains=("$@")
  local pre="cdtrans/configs/pretrain_deit-${BACKBONE}_1xb64-${pe}e_${ds}.yaml"
  local uda="cdtrans/configs/cdtrans_deit-${BACKBONE}_1xb64-40e_${ds}.yaml"
  [ "$BACKBONE" = base ] && uda="cdtrans/configs/cdtrans_deit-base_2xb32-40e_${ds}.yaml"
  local root="$OUT/$ds/deit-$BACKBONE"
  local tasks="${TASKS:-}"
  if [ -z "$tasks" ]; then
    for s in "${domains[@]}"; do for t in "${domains[@]}"; do [ "$s" != "$t" ] && tasks="$tasks $s:$t"; done; done
  fi
  for s in "${domains[@]}"; do
    case " $tasks" in *" $s:"*) ;; *) continue ;; esac
    local first_t; first_t=$(tr ' ' '\n' <<<"$tasks" | grep -m1 "^$s:" | cut -d: -f2)
    run_train cdtrans.train --config "$pre" --run-dir "$root/pretrain_$s" --resume auto \
      data.root="$DATA_ROOT" data.source="$s" data.target="$first_t" model.imagenet_init="$WEIGHTS" "${OVERRIDES[@]}"
  done
  for st in $tasks; do
    local s="${st%%:*}" t="${st##*:}"
    run_once "$PYTHON" -m cdtrans.evaluate --config "$pre" --checkpoint "$root/pretrain_$s/last.pt" \
      data.root="$DATA_ROOT" data.source="$s" data.target="$t" --out "$root/baseline_${s}2${t}.json" "${OVERRIDES[@]}"
    run_train cdtrans.train --config "$uda" --run-dir "$root/${s}2${t}" --resume auto \
      data.root="$DATA_ROOT" data.source="$s" data.target="$t" model.init_checkpoint="$root/pretrain_$s/last.pt" "${OVERRIDES[@]}"
  done
}
