#!/usr/bin/env bash
# Shared by dist_train.sh and dist_test.sh: start SCRIPT on GPUS processes per
# node with torchrun, using the project's interpreter when set up (make setup).
#   tools/torchrun.sh GPUS SCRIPT [script arguments...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node.
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 GPUS SCRIPT [script arguments...]" >&2
    exit 2
fi
GPUS=$1
SCRIPT=$2
if ! [[ "$GPUS" =~ ^[1-9][0-9]*$ ]]; then
    echo "error: GPUS must be a positive whole number (processes per node), got '$GPUS'" >&2
    exit 2
fi
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="python"
if [ -x "$ROOT/.venv/bin/python" ]; then
    PYTHON="$ROOT/.venv/bin/python"
fi

# torchrun ends a failed run with its own long traceback, below the rank's one-line
# `error: ...`; that line is repeated last, so it is what a user reads.
ERRORS="$(mktemp)"
trap 'rm -f "$ERRORS"' EXIT
status=0
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
"$PYTHON" -m torch.distributed.run \
    --nnodes="${NNODES:-1}" \
    --node_rank="${NODE_RANK:-0}" \
    --master_addr="${MASTER_ADDR:-127.0.0.1}" \
    --nproc_per_node="$GPUS" \
    --master_port="${PORT:-29500}" \
    "$SCRIPT" "${@:3}" 2> >(tee "$ERRORS" >&2) || status=$?
if [ "$status" -ne 0 ]; then
    wait  # for tee
    line="$(grep -m1 -E '^(\[[^]]*\]:)?error: ' "$ERRORS" | sed -E 's/^\[[^]]*\]://')" || true
    if [ -n "$line" ]; then
        echo "$line" >&2
        exit 2
    fi
fi
exit "$status"
