#!/usr/bin/env bash
# Sourced by every paper's scripts/*.sh:   source "$(dirname "$0")/../../shared/scripts/launch.sh"
# run_train <python module> [args...]  -> python -m MODULE, or torchrun with GPUS>1 (DDP).
# The one launcher convention (every script):
#   DATA_ROOT=<dataset root> [GPUS=n] [OUT=<runs folder>] [WEIGHTS=<pre-trained init file>] \
#       [CHECKPOINT=<trained checkpoint to evaluate>] bash <paper>/scripts/<bench>.sh [key.sub=value ...]
#   - inputs and outputs are environment variables; extra arguments are config overrides passed to every
#     training command (``make reproduce PAPER=<p> DATA=<root> ARGS="--benchmark <b> --set k=v"`` runs the same);
#   - one name per role in every paper: WEIGHTS = the pre-trained weights a run starts from (ImageNet DeiT,
#     DINO ViT, ResNet, a released checkpoint to fine-tune), WEIGHTS_STEM a second such file,
#     CHECKPOINT = a trained model to evaluate, SOURCE_CHECKPOINT = the source model of a domain adaptation;
#   - ``bash <script> --help`` prints the script's header;
#   - a missing required variable stops with a line naming it (``require_env``);
#   - relative DATA_ROOT / OUT / weight paths (and ELSA's TOKEN_LABEL_ROOT) are resolved against the
#     caller's folder before the launcher changes to the repository root.
# Env: GPUS (processes per node, default 1), PYTHON (default .venv/bin/python when present).
# Several nodes (torchrun's own rendezvous; run the same script on every node, e.g. one srun task per node):
#   NNODES       number of nodes (default 1)
#   NODE_RANK    this node's index 0..NNODES-1 (static rendezvous: global rank = NODE_RANK * GPUS + local rank)
#   MASTER_ADDR  host of node 0, reachable from every node; MASTER_PORT a free port there (default 29511)
#   RDZV_ENDPOINT host:port instead: torchrun's c10d rendezvous assigns the node ranks (NODE_RANK unused);
#                RDZV_ID names the job (default: $SLURM_JOB_ID or visionrepro)
#   RDZV_TIMEOUT seconds a node waits for the others at each launch (default 1800: node 0 may still be
#                running a run_once step, e.g. an evaluation, while the others already wait for the next run)
# Under SLURM (SLURM_JOB_ID set) the unset ones come from SLURM (slurm_to_torchrun below):
#   NNODES <- SLURM_JOB_NUM_NODES / SLURM_NNODES, NODE_RANK <- SLURM_NODEID, MASTER_ADDR <- first host of
#   SLURM_JOB_NODELIST (scontrol show hostnames, or a pure-bash parser), MASTER_PORT <- 29500 + job id % 1000,
#   GPUS <- SLURM_GPUS_ON_NODE (else SLURM_GPUS_PER_NODE, e.g. a100:4 -> 4). Template: shared/scripts/slurm.sbatch.
# run_once <command...>: a step that must run once (evaluation, pseudo-label generation): on node 0 only.
set -euo pipefail
_LAUNCH_SCRIPT="$0"
_LAUNCH_CALLER_PWD="$PWD"

launch_help() {  # the script's leading comment block, without the '#'
  awk 'NR == 1 && /^#!/ { next } /^#/ { sub(/^# ?/, ""); print; next } { exit }' "$_LAUNCH_SCRIPT"
  echo
  echo "Convention: DATA_ROOT=<root> [GPUS=n] [OUT=<folder>] bash $_LAUNCH_SCRIPT [key.sub=value ...]"
}
case "${1:-}" in -h|--help) launch_help; exit 0 ;; esac

require_env() {  # require_env VAR "what it is": stop with one line naming the variable to set
  local name="$1"; shift
  if [ -z "${!name:-}" ]; then
    echo "$(basename "$_LAUNCH_SCRIPT"): error: set $name=<${*:-value}> (see: bash $_LAUNCH_SCRIPT --help)" >&2
    exit 2
  fi
}

# Paths given relative to where the user stands, resolved before the cd below.
for _v in DATA_ROOT OUT WEIGHTS WEIGHTS_STEM CHECKPOINT SOURCE_CHECKPOINT TEACHER TOKEN_LABEL_ROOT; do
  if [ -n "${!_v:-}" ] && [[ "${!_v}" != /* ]]; then
    export "$_v=$_LAUNCH_CALLER_PWD/${!_v}"
  fi
done
require_env DATA_ROOT "the dataset root"

REPO_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$REPO_ROOT"
if [ -z "${PYTHON:-}" ]; then
  if [ -x "$REPO_ROOT/.venv/bin/python" ]; then PYTHON="$REPO_ROOT/.venv/bin/python"; else PYTHON=python3; fi
fi
# slurm_first_host <nodelist>: the first host of a SLURM node list (node[01-04,07],gpu3 -> node01);
# `scontrol show hostnames` when SLURM's tools are installed, else a parser of the compact syntax.
slurm_first_host() {
  local list="$1" head prefix rest inside first
  if command -v scontrol >/dev/null 2>&1; then
    # Read all of scontrol's output (no `| head`: under pipefail, head closing the pipe early
    # kills scontrol with SIGPIPE and the job with it).
    local hosts
    hosts="$(scontrol show hostnames "$list")" || return
    echo "${hosts%%$'\n'*}"
    return
  fi
  head="${list%%,*}"
  if [[ "$head" != *"["* ]]; then echo "$head"; return; fi
  prefix="${list%%[*}"; rest="${list#*[}"
  inside="${rest%%]*}"; rest="${rest#*]}"
  first="${inside%%,*}"; first="${first%%-*}"
  echo "$prefix$first${rest%%[,[]*}"
}

# slurm_to_torchrun: fill NNODES / NODE_RANK / MASTER_ADDR / MASTER_PORT / GPUS from SLURM's variables,
# never overriding one the user set. Called below when SLURM_JOB_ID is set.
slurm_to_torchrun() {
  local nodes="${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}" gpus="${SLURM_GPUS_ON_NODE:-${SLURM_GPUS_PER_NODE:-}}"
  export NNODES="${NNODES:-$nodes}"
  export NODE_RANK="${NODE_RANK:-${SLURM_NODEID:-0}}"
  if [ -z "${MASTER_ADDR:-}" ] && [ -n "${SLURM_JOB_NODELIST:-${SLURM_NODELIST:-}}" ]; then
    MASTER_ADDR="$(slurm_first_host "${SLURM_JOB_NODELIST:-$SLURM_NODELIST}")"
    export MASTER_ADDR
  fi
  export MASTER_PORT="${MASTER_PORT:-$((29500 + ${SLURM_JOB_ID:-0} % 1000))}"
  if [ -z "${GPUS:-}" ] && [ -n "$gpus" ]; then
    gpus="${gpus%%(*}"; gpus="${gpus##*:}"   # a100:4 -> 4; 4(x2) -> 4
    export GPUS="$gpus"
  fi
  export RDZV_ID="${RDZV_ID:-$SLURM_JOB_ID}"
}
if [ -n "${SLURM_JOB_ID:-}" ]; then slurm_to_torchrun; fi

GPUS="${GPUS:-1}"
NNODES="${NNODES:-1}"
NODE_RANK="${NODE_RANK:-0}"
for _v in GPUS NNODES NODE_RANK; do
  if ! [[ "${!_v}" =~ ^[0-9]+$ ]] || { [ "$_v" != NODE_RANK ] && [ "${!_v}" -lt 1 ]; }; then
    echo "$(basename "$_LAUNCH_SCRIPT"): error: $_v=${!_v} is not a positive whole number" >&2
    exit 2
  fi
done
if [ "$NODE_RANK" -ge "$NNODES" ]; then
  echo "$(basename "$_LAUNCH_SCRIPT"): error: NODE_RANK=$NODE_RANK must be below NNODES=$NNODES" >&2
  exit 2
fi
if [ "$NNODES" -gt 1 ] && [ -z "${RDZV_ENDPOINT:-}" ] && [ -z "${MASTER_ADDR:-}" ]; then
  echo "$(basename "$_LAUNCH_SCRIPT"): error: NNODES=$NNODES needs MASTER_ADDR=<host of node 0> (or RDZV_ENDPOINT=<host:port>)" >&2
  exit 2
fi

# torchrun_args: the launcher part of the command line, one word a line (nothing for one process).
torchrun_args() {
  if [ "$NNODES" -gt 1 ] || [ -n "${RDZV_ENDPOINT:-}" ]; then
    local rdzv
    if [ -n "${RDZV_ENDPOINT:-}" ]; then
      rdzv=(--rdzv_backend=c10d --rdzv_endpoint="$RDZV_ENDPOINT" --rdzv_id="${RDZV_ID:-visionrepro}"
            --rdzv_conf=join_timeout="${RDZV_TIMEOUT:-1800}")
    else  # static rendezvous: node ranks as given, the TCP store on node 0
      rdzv=(--node_rank="$NODE_RANK" --master_addr="$MASTER_ADDR" --master_port="${MASTER_PORT:-29511}"
            --rdzv_conf=timeout="${RDZV_TIMEOUT:-1800}")
    fi
    printf '%s\n' -m torch.distributed.run --nnodes="$NNODES" --nproc_per_node="$GPUS" "${rdzv[@]}"
  elif [ "$GPUS" -gt 1 ]; then
    printf '%s\n' -m torch.distributed.run --standalone --nproc_per_node="$GPUS" --master_port="${MASTER_PORT:-29511}"
  fi
}

run_train() {  # run_train <module> [args...]: one process, torchrun on one node, or one agent of several nodes
  local module="$1"; shift
  local launcher=()
  mapfile -t launcher < <(torchrun_args)
  if [ "${#launcher[@]}" -gt 0 ]; then
    echo "$(basename "$_LAUNCH_SCRIPT"): node $NODE_RANK of $NNODES: $PYTHON ${launcher[*]} -m $module" >&2
  fi
  "$PYTHON" ${launcher[@]+"${launcher[@]}"} -m "$module" "$@"
}

run_once() {  # run_once <command...>: run on node 0 only (the others go on to the next run_train and wait there)
  if [ "$NODE_RANK" -eq 0 ]; then "$@"; fi
}
