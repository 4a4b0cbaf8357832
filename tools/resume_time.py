#!/usr/bin/env python
"""Seconds a resumed run spends before its next training iteration (data replay or skip).

    python tools/resume_time.py CONFIG CHECKPOINT [--work-dir DIR] [--cfg-options ...]

Resumes from CHECKPOINT, trains one iteration, writes no checkpoint, and prints the
time from the start of the training loop to that iteration. Compare mmengine's loop with
``--cfg-options train_cfg.type=IterBasedTrainLoop`` (docs/long_runs.md).
"""
import argparse
import importlib.util
import os.path as osp
import sys
import tempfile

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

if importlib.util.find_spec('mmfec') is None:
    sys.path.insert(0, ROOT)  # a plain checkout, mmfec not installed

from mmengine.config import DictAction

import mmfec  # noqa: F401  (registers FEC and the safe loader)
from mmfec.engine.resume_timing import time_resume
from mmfec.utils.cli import check_checkpoint_path, load_task_config, user_errors


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='Time the resume of a training run.')
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('--work-dir', help='default: a temporary directory')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction)
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with user_errors(), tempfile.TemporaryDirectory() as tmp:
        check_checkpoint_path(args.checkpoint, 'CHECKPOINT')
        cfg, scope = load_task_config(args.config, args.cfg_options)
        cfg.work_dir = args.work_dir or tmp
        timer = time_resume(cfg, scope, args.checkpoint)
    print(f'resumed at iteration {timer.resumed_at} ({cfg.train_cfg.get("type")}): '
          f'{timer.seconds:.2f} s from the start of the training loop to the next '
          'iteration')
    return 0


if __name__ == '__main__':
    sys.exit(main())
