#!/usr/bin/env bash
# Digits: MNIST->USPS, USPS->MNIST (LeNet), SVHN->MNIST (DTN).
# DATA_ROOT=<root with mnist/, usps/, svhn/> (layout in bp_triplet/data.py; check it with
# python -m shared.data.verify bp_triplet.mnist $DATA_ROOT).
source "$(dirname "$0")/../../shared/scripts/launch.sh"
LENET=bp_triplet/configs/bp-triplet_lenet_1xb64-50e_digits-mnist-usps.yaml
run_train bp_triplet.train --config "$LENET" --run-dir runs/bp_triplet/digits/mnist2usps --resume auto \
  data.root="$DATA_ROOT" "$@"
run_train bp_triplet.train --config "$LENET" --run-dir runs/bp_triplet/digits/usps2mnist --resume auto \
  data.root="$DATA_ROOT" data.source=usps data.target=mnist data.pairs_per_epoch=7291 adv.start_step=113 \
  pseudo.warmup_steps=113 pseudo.every_steps=113 sched.decay_epochs=6 "$@"
run_train bp_triplet.train --config bp_triplet/configs/bp-triplet_dtn_1xb64-50e_digits-svhn-mnist.yaml \
  --run-dir runs/bp_triplet/digits/svhn2mnist --resume auto data.root="$DATA_ROOT" "$@"
