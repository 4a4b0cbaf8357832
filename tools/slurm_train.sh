#!/usr/bin/env bash
# Train on a Slurm cluster with srun, with MMDetection's arguments and variables:
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#   tools/slurm_train.sh PARTITION JOB_NAME CONFIG WORK_DIR [train.py arguments...]
# One task per GPU (GPUS in all, GPUS_PER_NODE per node), each running
# tools/train.py --launcher slurm (tools/srun.sh has the srun call and its variables).
# CPU-only nodes: GRES= (empty: no --gres) and --cfg-options env_cfg.dist_cfg.backend=gloo;
# GPUS is then the number of processes. Pre-emption and re-queueing: docs/long_runs.md.
set -euo pipefail

if [ "$#" -lt 4 ]; then
    echo "usage: [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] $0 PARTITION JOB_NAME CONFIG WORK_DIR [train.py arguments...]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/srun.sh" "$1" "$2" train.py "$3" --work-dir="$4" "${@:5}"
