#!/usr/bin/env python
"""Pre-flight check of a config's data: decode every image and label map before training.

    python tools/check_data.py CONFIG [--splits train val test] [--workers N]
                               [--cfg-options KEY=VALUE ...]

Lists missing, empty, truncated, unreadable and wrong-mode files with a count; exit code
0 when every file is good, 1 when some are not, 2 on a usage error. The logic is in
mmfec.datasets.preflight.
"""
import argparse
import importlib.util
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

if importlib.util.find_spec('mmfec') is None:
    sys.path.insert(0, ROOT)  # a plain checkout, mmfec not installed

from mmengine.config import DictAction

from mmfec.datasets.preflight import check_config_data, format_report
from mmfec.utils.cli import check_data, load_task_config, user_errors


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Decode every image and label map of a config\'s data sets.')
    parser.add_argument('config', help='config file path')
    parser.add_argument('--splits', nargs='+', default=['train', 'val', 'test'],
                        choices=['train', 'val', 'test'], help='which data loaders')
    parser.add_argument('--workers', type=int, default=None,
                        help='decoding processes (default: one per CPU core)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override settings of the config, key=value pairs')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with user_errors():
        cfg, _ = load_task_config(args.config, args.cfg_options)
        check_data(cfg, [f'{split}_dataloader' for split in args.splits])
        checked, faults = check_config_data(cfg, args.splits, args.workers)
    print(format_report(checked, faults))
    return 1 if faults else 0


if __name__ == '__main__':
    sys.exit(main())
