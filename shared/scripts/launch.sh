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
#   - relative DATA_ROOT / OUT / weight paths are resolved against the caller's folder before the
#     launcher changes to the repository root.
# Env: GPUS (default 1), PYTHON (default .venv/bin/python when present), MASTER_PORT (default 29511).
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
for _v in DATA_ROOT OUT WEIGHTS WEIGHTS_STEM CHECKPOINT SOURCE_CHECKPOINT TEACHER; do
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
GPUS="${GPUS:-1}"

run_train() {
  local module="$1"; shift
  if [ "$GPUS" -gt 1 ]; then
    "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node="$GPUS" \
      --master_port="${MASTER_PORT:-29511}" -m "$module" "$@"
  else
    "$PYTHON" -m "$module" "$@"
  fi
}
