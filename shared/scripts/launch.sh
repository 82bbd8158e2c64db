#!/usr/bin/env bash
# Sourced by every paper's scripts/*.sh:   source "$(dirname "$0")/../../shared/scripts/launch.sh"
# run_train <python module> [args...]  -> python -m MODULE, or torchrun with GPUS>1 (DDP).
# Env: GPUS (default 1), PYTHON (default .venv/bin/python when present), MASTER_PORT (default 29511).
set -euo pipefail
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
