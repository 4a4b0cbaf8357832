#!/usr/bin/env python
"""Train a detector (mmdet), segmentor (mmseg) or classifier (mmpretrain)
config, e.g. with FEC.

Same arguments and behaviour as MMDetection 3.3's tools/train.py; on top it
imports mmfec (FEC registered, checkpoints loaded as data only), tells from
the config whether it is an mmdet, mmseg or mmpretrain one, and checks that
the data is on disk before building the Runner.
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

if importlib.util.find_spec('mmfec') is None:
    sys.path.insert(0, ROOT)  # a plain checkout, mmfec not installed

from mmengine.device import get_device

import mmfec  # noqa: F401  (registers FEC and the safe loader)
from mmfec.apis import load_weights, unwrap_model
from mmfec.utils import install_safe_checkpoint_loader
from mmfec.utils.cli import (
    ConfigOptionsAction,
    UsageError,
    build_runner,
    check_checkpoint_path,
    check_data,
    check_writable,
    finish_distributed,
    load_task_config,
    setup_cpu_distributed,
    user_errors,
)
from mmfec.utils.cpu_allocator import keep_freed_memory_on_cpu


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Train an mmdet, mmseg or mmpretrain model (e.g. with '
        'the FEC backbone).')
    parser.add_argument('config', help='train config file path')
    parser.add_argument('--work-dir', help='the dir to save logs and models')
    parser.add_argument(
        '--amp',
        action='store_true',
        default=False,
        help='mixed-precision training: AmpOptimWrapper, fp16 autocast with '
        'dynamic loss scaling, as mmdet does (needs a GPU)')
    parser.add_argument(
        '--auto-scale-lr',
        action='store_true',
        help='scale the learning rate by the real batch size '
        '(needs auto_scale_lr.base_batch_size in the config)')
    parser.add_argument(
        '--resume',
        nargs='?',
        type=str,
        const='auto',
        help='resume from the given checkpoint; without a path, resume from '
        'the latest checkpoint in the work directory')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=ConfigOptionsAction,
        help='override settings of the config, key=value pairs, e.g. '
        'train_cfg.max_iters=10 or "optim_wrapper.optimizer.lr=0.01"')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    # torch.distributed.launch/run pass --local-rank (torch >= 2.0) or
    # --local_rank (older); accept both.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def _has_accelerator():
    return get_device() != 'cpu'


def apply_args(cfg, args):
    """Fold the command line into the config, as mmdet's train.py does."""
    cfg.launcher = args.launcher
    # work_dir priority: CLI > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        check_writable(args.work_dir, '--work-dir', directory=True)
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    if args.amp:
        if not _has_accelerator():
            # mmengine's AmpOptimWrapper (fp16 autocast + dynamic loss scaling)
            # refuses to start without one; FEC's own layers do run under CPU
            # autocast (docs/performance.md, "Mixed precision").
            raise UsageError('--amp needs a GPU (CUDA, NPU, MLU or MUSA) and '
                             'none is available: mmengine\'s AmpOptimWrapper '
                             'runs only there; train without --amp')
        if cfg.get('optim_wrapper') is None:
            raise UsageError('--amp needs an optim_wrapper in the config')
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'
    if args.auto_scale_lr:
        auto_scale_lr = cfg.get('auto_scale_lr') or {}
        if 'enable' not in auto_scale_lr or \
                'base_batch_size' not in auto_scale_lr:
            raise UsageError(
                '--auto-scale-lr needs auto_scale_lr = dict(enable=False, '
                'base_batch_size=...) in the config')
        cfg.auto_scale_lr.enable = True
    # resume from a given checkpoint > auto-resume from the work dir
    if args.resume == 'auto':
        cfg.resume = True
        cfg.load_from = None
    elif args.resume is not None:
        check_checkpoint_path(args.resume, '--resume')
        cfg.resume = True
        cfg.load_from = args.resume
    elif cfg.get('load_from'):
        check_checkpoint_path(cfg.load_from, 'load_from in the config')
    return cfg


def _exit_if_missing(path, what):
    """One line, exit 2, for a file that is not there (before the Runner is built)."""
    if '://' not in path and not osp.isfile(osp.expanduser(path)):
        print(f'error: {what} {path} does not exist', file=sys.stderr)
        sys.exit(2)


def main(argv=None):
    args = parse_args(argv)
    _exit_if_missing(args.config, 'config file')
    if args.resume not in (None, 'auto'):
        _exit_if_missing(args.resume, '--resume: checkpoint file')
    install_safe_checkpoint_loader()  # idempotent; `import mmfec` does it

    with user_errors():
        cfg, scope = load_task_config(args.config, args.cfg_options)
        cfg = apply_args(cfg, args)
        check_data(cfg, ('train_dataloader', 'val_dataloader'))
        setup_cpu_distributed(cfg)
        keep_freed_memory_on_cpu(get_device())  # no page faults per step on CPU
        runner = build_runner(cfg, scope)
        if args.resume not in (None, 'auto'):
            # another task's checkpoint: one line, not an optimizer traceback
            load_weights(unwrap_model(runner.model), args.resume, keep_for_runner=True)
        runner.train()
        finish_distributed()


if __name__ == '__main__':
    main()
