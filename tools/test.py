#!/usr/bin/env python
"""Test (and evaluate) a checkpoint of a detector (mmdet), segmentor (mmseg) or
classifier (mmpretrain).

Same arguments and behaviour as MMDetection 3.3's tools/test.py; on top it
imports mmfec (FEC registered, the checkpoint loaded as data only, never as
code), tells from the config whether it is an mmdet, mmseg or mmpretrain one
and wires --show/--show-dir/--out/--tta to that task's hooks and metrics.
"""
import argparse
import importlib.util
import os
import os.path as osp
import sys
import warnings
from copy import deepcopy

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

if importlib.util.find_spec('mmfec') is None:
    sys.path.insert(0, ROOT)  # a plain checkout, mmfec not installed

from mmengine.config import ConfigDict
from mmengine.device import get_device
from mmengine.evaluator import DumpResults

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

PICKLE_SUFFIXES = ('.pkl', '.pickle')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Test (and evaluate) an mmdet, mmseg or mmpretrain model '
        '(e.g. with the FEC backbone).')
    parser.add_argument('config', help='test config file path')
    parser.add_argument('checkpoint', help='checkpoint file (path or URL)')
    parser.add_argument(
        '--work-dir',
        help='the directory to save the file containing evaluation metrics')
    parser.add_argument(
        '--out',
        type=str,
        help='dump predictions to a .pkl file for offline evaluation; for '
        'segmentation configs a path without .pkl is a directory for the '
        'predicted label maps (as in mmseg)')
    parser.add_argument(
        '--show', action='store_true', help='show prediction results')
    parser.add_argument(
        '--show-dir',
        help='directory where painted images will be saved (under '
        'work_dir/timestamp/ for detection configs)')
    parser.add_argument(
        '--wait-time', type=float, default=2, help='the interval of show (s)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=ConfigOptionsAction,
        help='override settings of the config, key=value pairs, e.g. '
        'test_dataloader.batch_size=2')
    parser.add_argument(
        '--launcher',
        choices=['none', 'pytorch', 'slurm', 'mpi'],
        default='none',
        help='job launcher')
    parser.add_argument(
        '--tta', action='store_true', help='test with test-time augmentation')
    # torch.distributed.launch/run pass --local-rank (torch >= 2.0) or
    # --local_rank (older); accept both.
    parser.add_argument('--local_rank', '--local-rank', type=int, default=0)
    args = parser.parse_args(argv)
    if 'LOCAL_RANK' not in os.environ:
        os.environ['LOCAL_RANK'] = str(args.local_rank)
    return args


def trigger_visualization_hook(cfg, args, scope):
    """Turn on the task's visualization hook (Det/SegVisualizationHook,
    mmpretrain's VisualizationHook)."""
    hook = cfg.get('default_hooks', {}).get('visualization')
    if hook is None:
        expected = {'mmdet': 'DetVisualizationHook',
                    'mmseg': 'SegVisualizationHook'}.get(scope, 'VisualizationHook')
        raise UsageError(
            '--show/--show-dir need a visualization hook in the config: add '
            f"default_hooks.visualization = dict(type='{expected}')")
    if scope == 'mmpretrain':  # its hook's own switches, as mmpretrain's test.py
        hook['enable'] = True
        if args.show:
            hook['show'] = True
            hook['wait_time'] = args.wait_time
        if args.show_dir:
            hook['out_dir'] = args.show_dir
        return cfg
    hook['draw'] = True
    if args.show:
        hook['show'] = True
        hook['wait_time'] = args.wait_time
    if args.show_dir:
        if scope == 'mmdet':
            hook['test_out_dir'] = args.show_dir
        else:
            if cfg.get('visualizer') is None:
                raise UsageError('--show-dir needs a visualizer in the config')
            cfg.visualizer['save_dir'] = args.show_dir
    if scope == 'mmseg':
        # SegVisualizationHook draws every 50th image by default; asked to
        # show or save, draw them all (a config's own interval still wins)
        hook.setdefault('interval', 1)
    return cfg


def _det_tta(cfg):
    """mmdet's defaults when the config has no TTA settings of its own."""
    if 'tta_model' not in cfg:
        warnings.warn('Cannot find ``tta_model`` in config, '
                      'we will set it as default.')
        cfg.tta_model = dict(
            type='DetTTAModel',
            tta_cfg=dict(
                nms=dict(type='nms', iou_threshold=0.5), max_per_img=100))
    if 'tta_pipeline' not in cfg:
        warnings.warn('Cannot find ``tta_pipeline`` in config, '
                      'we will set it as default.')
        test_data_cfg = cfg.test_dataloader.dataset
        while 'dataset' in test_data_cfg:
            test_data_cfg = test_data_cfg['dataset']
        cfg.tta_pipeline = deepcopy(test_data_cfg.pipeline)
        flip_tta = dict(
            type='TestTimeAug',
            transforms=[
                [
                    dict(type='RandomFlip', prob=1.),
                    dict(type='RandomFlip', prob=0.)
                ],
                [
                    dict(
                        type='PackDetInputs',
                        meta_keys=('img_id', 'img_path', 'ori_shape',
                                   'img_shape', 'scale_factor', 'flip',
                                   'flip_direction'))
                ],
            ])
        cfg.tta_pipeline[-1] = flip_tta
    cfg.model = ConfigDict(**cfg.tta_model, module=cfg.model)
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline


def _cls_tta(cfg):
    """mmpretrain's defaults: average the scores of the image and its flip."""
    if 'tta_model' not in cfg:
        cfg.tta_model = dict(type='AverageClsScoreTTA')
    if 'tta_pipeline' not in cfg:
        test_pipeline = deepcopy(cfg.test_dataloader.dataset.pipeline)
        cfg.tta_pipeline = test_pipeline[:-1] + [dict(
            type='TestTimeAug',
            transforms=[[dict(type='RandomFlip', prob=1.),
                         dict(type='RandomFlip', prob=0.)],
                        [test_pipeline[-1]]])]
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def _seg_tta(cfg):
    """mmseg's way: the config must bring tta_model and tta_pipeline."""
    missing = [key for key in ('tta_model', 'tta_pipeline') if key not in cfg]
    if missing:
        raise UsageError(f'--tta needs {" and ".join(missing)} in the config '
                         '(mmseg dataset configs define tta_pipeline, '
                         "tta_model = dict(type='SegTTAModel'))")
    cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
    cfg.tta_model.module = cfg.model
    cfg.model = cfg.tta_model


def apply_args(cfg, args, scope):
    """Fold the command line into the config, as mmdet's/mmseg's test.py."""
    cfg.launcher = args.launcher
    # work_dir priority: CLI > config > ./work_dirs/<config name>
    if args.work_dir is not None:
        check_writable(args.work_dir, '--work-dir', directory=True)
        cfg.work_dir = args.work_dir
    elif cfg.get('work_dir', None) is None:
        cfg.work_dir = osp.join('./work_dirs',
                                osp.splitext(osp.basename(args.config))[0])
    check_checkpoint_path(args.checkpoint, 'CHECKPOINT')
    cfg.load_from = args.checkpoint
    if args.out is not None:  # before the evaluation, not after it
        check_writable(args.out, '--out', directory=not args.out.endswith(PICKLE_SUFFIXES))
    if args.show_dir is not None:
        check_writable(args.show_dir, '--show-dir', directory=True)
    if args.out is not None and scope in ('mmdet', 'mmpretrain') and \
            not args.out.endswith(PICKLE_SUFFIXES):
        raise UsageError(f'--out {args.out}: the dump file must be a .pkl '
                         'file')
    if args.out is not None and scope == 'mmseg' and \
            not args.out.endswith(PICKLE_SUFFIXES):
        if not isinstance(cfg.get('test_evaluator'), dict):
            raise UsageError('--out DIR needs test_evaluator to be one dict '
                             "(mmseg's IoUMetric); or pass --out FILE.pkl")
        cfg.test_evaluator['output_dir'] = args.out
        cfg.test_evaluator['keep_results'] = True
    if args.show or args.show_dir:
        cfg = trigger_visualization_hook(cfg, args, scope)
    if args.tta:
        dict(mmdet=_det_tta, mmseg=_seg_tta, mmpretrain=_cls_tta)[scope](cfg)
    return cfg


def add_dump_metric(runner, out, scope):
    """Append the metric that pickles predictions to ``out`` (``--out``)."""
    if scope == 'mmdet':
        from mmdet.evaluation import DumpDetResults as Dump
    else:
        Dump = DumpResults
    runner.test_evaluator.metrics.append(Dump(out_file_path=out))


def _exit_if_missing(path, what):
    """One line, exit 2, for a file that is not there (before the Runner is built)."""
    if '://' not in path and not osp.isfile(osp.expanduser(path)):
        print(f'error: {what} {path} does not exist', file=sys.stderr)
        sys.exit(2)


def main(argv=None):
    args = parse_args(argv)
    _exit_if_missing(args.config, 'config file')
    _exit_if_missing(args.checkpoint, 'checkpoint file')
    install_safe_checkpoint_loader()  # idempotent; `import mmfec` does it

    with user_errors():
        cfg, scope = load_task_config(args.config, args.cfg_options)
        cfg = apply_args(cfg, args, scope)
        check_data(cfg, ('test_dataloader', ))
        setup_cpu_distributed(cfg)
        keep_freed_memory_on_cpu(get_device())  # no page faults per step on CPU
        runner = build_runner(cfg, scope)
        # A checkpoint of another task or arch would load partly and give junk metrics:
        # refuse it, naming what it holds. The Runner's own load takes what was read here.
        load_weights(unwrap_model(runner.model), args.checkpoint, keep_for_runner=True)
        if args.out is not None and args.out.endswith(PICKLE_SUFFIXES):
            add_dump_metric(runner, args.out, scope)
        runner.test()
        finish_distributed()


if __name__ == '__main__':
    main()
