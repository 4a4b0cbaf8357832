"""Shared by the detection tests: run the tools as a user would, on a tiny toy COCO.

The tools run as subprocesses with ``OMP_NUM_THREADS=1``: on a busy 2-core machine
(CI, or several jobs at once) two OpenMP threads per process spin against each other
and one training step takes tens of seconds instead of about one.
"""
import os
import socket
import subprocess
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
CONFIGS = ROOT / 'configs'
TOOLS = ROOT / 'tools'
TIMEOUT = 300
TOY_SIZE = 64  # toy image side (the smallest the generator makes); FEC needs >= 32


def tool_env(**extra):
    env = dict(os.environ, OMP_NUM_THREADS='1', MKL_NUM_THREADS='1',
               PYTHONWARNINGS='ignore')
    env.pop('LOCAL_RANK', None)  # a leftover would make train.py think it is a worker
    env.update({k: str(v) for k, v in extra.items()})
    return env


def run_tool(args, cwd=ROOT, env=None, timeout=TIMEOUT):
    """Run ``args`` (``tools/...`` first; ``.py`` tools through this Python)."""
    args = [str(a) for a in args]
    if args[0].endswith('.py'):
        args = [sys.executable] + args
    result = subprocess.run(args, cwd=cwd, env=env or tool_env(), capture_output=True,
                            text=True, timeout=timeout)
    return result


def explain(result):
    """The end of a failed tool run, for assertion messages."""
    return (f'exit code {result.returncode}\n--- stdout (end)\n{result.stdout[-4000:]}'
            f'\n--- stderr (end)\n{result.stderr[-6000:]}')


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def toy_data_options(data_root, scale=TOY_SIZE, batch_size=2):
    """``--cfg-options`` that point an mmdet COCO config at a toy COCO folder and keep
    everything tiny and in-process (no data workers); the model stays as configured."""
    root = f'{data_root}/'
    ann = f'{root}annotations/instances_val2017.json'
    options = [
        f'train_dataloader.dataset.data_root={root}',
        f'val_dataloader.dataset.data_root={root}',
        f'test_dataloader.dataset.data_root={root}',
        f'val_evaluator.ann_file={ann}',
        f'test_evaluator.ann_file={ann}',
        # Resize is step 2 of mmdet's COCO train pipeline and step 1 of its test one.
        f'train_dataloader.dataset.pipeline.2.scale=({scale},{scale})',
        f'val_dataloader.dataset.pipeline.1.scale=({scale},{scale})',
        f'test_dataloader.dataset.pipeline.1.scale=({scale},{scale})',
        f'train_dataloader.batch_size={batch_size}',
    ]
    for loader in ('train_dataloader', 'val_dataloader', 'test_dataloader'):
        options += [f'{loader}.num_workers=0', f'{loader}.persistent_workers=False']
    return options


def short_run_options(max_epochs=1):
    """Train ``max_epochs`` epochs, log every iteration, no validation while training,
    fixed seed; a checkpoint every epoch."""
    return [f'train_cfg.max_epochs={max_epochs}', 'train_cfg.val_begin=1000',
            'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=1',
            'randomness.seed=0']


def load_checkpoint(path):
    """Through mmfec's data-only loader, as ``--resume`` and tools/test.py read it."""
    from mmfec.utils import safe_torch_load
    return safe_torch_load(str(path), map_location='cpu')


def differing_keys(a, b):
    """Keys whose tensors are not bitwise equal (or that only one side has)."""
    keys = set(a) | set(b)
    return sorted(k for k in keys
                  if k not in a or k not in b or not torch.equal(a[k], b[k]))
