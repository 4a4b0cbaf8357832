#!/usr/bin/env bash
# Train on GPUS processes per node with torchrun, as MMDetection's dist_train.sh.
#   tools/dist_train.sh CONFIG GPUS [train.py arguments...]
# Multi-node: set NNODES, NODE_RANK, MASTER_ADDR and PORT on every node.
# On CPU only (no NCCL), add: --cfg-options env_cfg.dist_cfg.backend=gloo
# (GPUS is then the number of processes; the tools start the gloo group
# themselves, since mmengine's launcher calls torch.cuda.set_device).
set -euo pipefail

if [ "$#" -lt 2 ]; then
    echo "usage: $0 CONFIG GPUS [train.py arguments...]" >&2
    exit 2
fi
if [ ! -f "$1" ]; then
    echo "error: config file $1 does not exist" >&2
    exit 2
fi
TOOLS="$(cd "$(dirname "$0")" && pwd)"
exec "$TOOLS/torchrun.sh" "$2" "$TOOLS/train.py" "$1" --launcher pytorch "${@:3}"
