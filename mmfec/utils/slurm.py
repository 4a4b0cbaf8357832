"""``--launcher slurm`` on machines without a GPU (and the address Slurm's tasks meet at).

Why: mmengine's slurm initialisation derives the local rank as ``SLURM_PROCID %
torch.cuda.device_count()`` and calls ``torch.cuda.set_device``, which fails on CPU-only
nodes (a division by zero, then no CUDA). :func:`export_slurm_env` sets what torch's
``env://`` rendezvous needs from the variables srun gives each task, so that
:func:`mmfec.utils.cli.setup_cpu_distributed` can start the gloo group itself, as it does
for torchrun.
"""
import os
import subprocess
from typing import Dict, Optional

DEFAULT_PORT = 29500


def first_host(node_list: str) -> str:
    """The first host name of a Slurm node list (``node[01-04]`` -> ``node01``)."""
    try:
        out = subprocess.run(['scontrol', 'show', 'hostnames', node_list],
                             capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError) as error:
        raise RuntimeError(f'cannot expand SLURM_NODELIST={node_list!r} with scontrol '
                           f'({error}); run inside a Slurm allocation') from None
    hosts = out.split()
    if not hosts:
        raise RuntimeError(f'scontrol show hostnames {node_list} printed no host')
    return hosts[0]


def slurm_environment(environ: Optional[Dict[str, str]] = None) -> Dict[str, str]:
    """RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT of this Slurm task.

    MASTER_PORT comes from the environment (``PORT`` or ``MASTER_PORT``, as mmengine
    reads it), else 29500; MASTER_ADDR, when not set, is the first node of the job.
    """
    env = os.environ if environ is None else environ
    missing = [k for k in ('SLURM_PROCID', 'SLURM_NTASKS', 'SLURM_NODELIST') if k not in env]
    if missing:
        raise RuntimeError(f'--launcher slurm, but {", ".join(missing)} is not set: start '
                           'it with srun (tools/slurm_train.sh)')
    rank = int(env['SLURM_PROCID'])
    return dict(
        RANK=str(rank),
        WORLD_SIZE=env['SLURM_NTASKS'],
        LOCAL_RANK=env.get('SLURM_LOCALID', '0'),
        MASTER_ADDR=env.get('MASTER_ADDR') or first_host(env['SLURM_NODELIST']),
        MASTER_PORT=env.get('MASTER_PORT') or env.get('PORT') or str(DEFAULT_PORT))


def export_slurm_env() -> Dict[str, str]:
    """Put :func:`slurm_environment` into ``os.environ``; returns it."""
    values = slurm_environment()
    os.environ.update(values)
    return values
