#!/usr/bin/env bash
# The paper's stability study (spec section 4): optimiser x learning rate x warmup x stem, DeiT-S/16 on
# ImageNet-1k (OPTIMS: adamw, and sam = SAM rho 0.05 around AdamW, sam.py). The paper's grid values are
# unverified (PDF not reachable): OPTIMS / LRS / WARMUPS / STEMS are env-overridable.
# Divergence shows as a non-finite loss: the run stops with a one-line error and its metrics.csv so far.
# Usage: DATA_ROOT=/data/imagenet GPUS=8 [EPOCHS=300] [LRS="5e-4 1e-3 2e-3 4e-3"] [OPTIMS="adamw sam"] bash this.sh
source "$(dirname "$0")/../../shared/scripts/launch.sh"
: "${DATA_ROOT:?set DATA_ROOT to the ImageNet-1k folder}"
# the layout check first: a wrong DATA_ROOT stops here with one line, not once per run of the grid
"$PYTHON" -c 'import sys; from shared.data.verify import main; sys.exit(main(["imagenet", sys.argv[1]]))' "$DATA_ROOT"
LRS="${LRS:-5e-4 1e-3 2e-3 4e-3}"
WARMUPS="${WARMUPS:-5 0}"
STEMS="${STEMS:-patchify conv_stem_no_relu conv_stem_no_bn scaled_relu_stem}"
EPOCHS="${EPOCHS:-300}"
OPTIMS="${OPTIMS:-adamw sam}"
for opt in $OPTIMS; do for stem in $STEMS; do for lr in $LRS; do for wu in $WARMUPS; do
  run_train scaled_relu_stem.train --config "scaled_relu_stem/configs/${stem}_deit-s_8xb128-300e_in1k.yaml" \
    --run-dir "runs/scaled_relu_stem/in1k_sweep/${opt}_${stem}_lr${lr}_wu${wu}" --resume auto \
    data.root="$DATA_ROOT" optim.name="$opt" optim.lr="$lr" sched.warmup_epochs="$wu" engine.epochs="$EPOCHS" ${ARGS:-} \
    || echo "${opt} ${stem} lr=${lr} warmup=${wu}: stopped (diverged or failed), see its run dir"
done; done; done; done
