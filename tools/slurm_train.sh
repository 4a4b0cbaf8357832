#!/usr/bin/env bash
# Train on a Slurm cluster with srun, with MMDetection's arguments and variables:
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py arguments...]
# One task per GPU (GPUS in all, GPUS_PER_NODE per node), each running
# tools/train.py --launcher slurm. SRUN_ARGS go to srun as they are (e.g.
# "--quotatype=auto" or "--time=04:00:00").
# CPU-only nodes: GRES= (empty: no --gres) and --cfg-options env_cfg.dist_cfg.backend=gloo;
# GPUS is then the number of processes. Pre-emption and re-queueing: docs/long_runs.md.
set -euo pipefail

if [ "$#" -lt 4 ]; then
    echo "usage: [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py arguments...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
CONFIG=$3
WORK_DIR=$4
GPUS=${GPUS:-8}
GPUS_PER_NODE=${GPUS_PER_NODE:-8}
CPUS_PER_TASK=${CPUS_PER_TASK:-5}
SRUN_ARGS=${SRUN_ARGS:-""}
GRES=${GRES-gpu:${GPUS_PER_NODE}}
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PYTHON="python"
if [ -x "$ROOT/.venv/bin/python" ]; then
    PYTHON="$ROOT/.venv/bin/python"
fi

# SRUN_ARGS is split into words on purpose, as in MMDetection's script.
# shellcheck disable=SC2086
PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}" \
srun -p "$PARTITION" \
    --job-name="$JOB_NAME" \
    ${GRES:+--gres="$GRES"} \
    --ntasks="$GPUS" \
    --ntasks-per-node="$GPUS_PER_NODE" \
    --cpus-per-task="$CPUS_PER_TASK" \
    --kill-on-bad-exit=1 \
    $SRUN_ARGS \
    "$PYTHON" -u "$ROOT/tools/train.py" "$CONFIG" --work-dir="$WORK_DIR" --launcher=slurm "${@:5}"
