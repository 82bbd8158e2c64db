#!/usr/bin/env bash
# MPI-INF-3DHP (reconstruction: no official MHFormer code), P-STMO's data_{train,test}_3dhp.npz, N = 9.
#   DATA_ROOT=/data/mpi_inf_3dhp bash mhformer/scripts/train_3dhp.sh
source "$(dirname "$0")/../../shared/scripts/launch.sh"
run_train mhformer.train --config mhformer/configs/mhformer_9f_1xb256-19e_3dhp.yaml --run-dir runs/mhformer_9f_3dhp \
  --resume auto data.root="${DATA_ROOT:?set DATA_ROOT to the folder with data_train_3dhp.npz}" "$@"
