#!/usr/bin/env bash
# Test a checkpoint on a Slurm cluster with srun, with MMDetection's arguments and variables:
#   [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS="..."] \
#   tools/slurm_test.sh PARTITION JOB_NAME CONFIG CHECKPOINT [test.py arguments...]
# One task per GPU, each running tools/test.py --launcher slurm (tools/srun.sh has the
# srun call and its variables).
# CPU-only nodes: GRES= (empty: no --gres) and --cfg-options env_cfg.dist_cfg.backend=gloo.
set -euo pipefail

if [ "$#" -lt 4 ]; then
    echo "usage: [GPUS=8] [GPUS_PER_NODE=8] [CPUS_PER_TASK=5] [SRUN_ARGS=...] $0 PARTITION JOB_NAME CONFIG CHECKPOINT [test.py arguments...]" >&2
    exit 2
fi
exec bash "$(dirname "$0")/srun.sh" "$1" "$2" test.py "$3" "$4" "${@:5}"
