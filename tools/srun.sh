#!/usr/bin/env bash
# Shared by slurm_train.sh and slurm_test.sh: run SCRIPT as GPUS Slurm tasks with srun
# (one per GPU, GPUS_PER_NODE per node), each with --launcher=slurm, using the project's
# interpreter when set up (make setup).
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [GRES=gpu:N] [SRUN_ARGS="..."] \
#   tools/srun.sh PARTITION JOB_NAME SCRIPT [script arguments...]
# SRUN_ARGS go to srun as they are (e.g. "--quotatype=auto" or "--time=04:00:00").
# CPU-only nodes: GRES= (empty: no --gres); GPUS is then the number of processes.
set -euo pipefail

if [ "$#" -lt 3 ]; then
    echo "usage: $0 PARTITION JOB_NAME SCRIPT [script arguments...]" >&2
    exit 2
fi
PARTITION=$1
JOB_NAME=$2
SCRIPT=$3
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

# SRUN_ARGS is split into words on purpose, as in MMDetection's scripts.
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
    "$PYTHON" -u "$ROOT/tools/$SCRIPT" "${@:4}" --launcher=slurm
