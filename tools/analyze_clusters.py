#!/usr/bin/env python
"""Measure how well FEC's clusters follow the ground truth: cluster purity per layer.

    python tools/analyze_clusters.py CONFIG [CHECKPOINT] [--num-images N] [--out FILE.json]
                                     [--layers NAME...] [--device cpu] [--seed 0]
                                     [--cfg-options KEY=VALUE ...]

CONFIG is a detection or segmentation config with an FEC backbone; its val set is
measured (instance masks for detection, the semantic map for segmentation, ignore labels
left out). CHECKPOINT holds trained weights; without it the model keeps the
initialisation of its config (``init_weights`` with --seed), i.e. where training starts.
Prints the table layer / clusters / purity / grid purity / advantage; --out writes it as
JSON. See docs/cluster_maps.md.
"""
import argparse
import importlib.util
import json
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))

if importlib.util.find_spec('mmfec') is None:
    sys.path.insert(0, ROOT)  # a plain checkout, mmfec not installed

import torch
from mmengine.logging import MMLogger
from mmengine.runner import Runner
from mmengine.runner.utils import set_random_seed
from mmengine.utils import ProgressBar

import mmfec  # noqa: F401  (registers FEC and the safe loader)
from mmfec.analysis import DEFAULT_IGNORE_INDEX, format_table, measure_purity, purity_dataloader_cfg
from mmfec.apis import (
    CLASSIFIER,
    backbone_of,
    build_model,
    choose_device,
    is_backbone_config,
    load_weights,
)
from mmfec.utils.atomic_write import write_atomic
from mmfec.utils.cli import (
    ConfigOptionsAction,
    UsageError,
    check_data,
    check_writable,
    load_config,
    user_errors,
)
from mmfec.visualization import clustering_layers, select_layers

RANDOM_WEIGHTS_WARNING = ('warning: no CHECKPOINT given, so the model keeps its random '
                          'initialisation (init_weights, --seed); pass a trained checkpoint '
                          'to measure a trained model')


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Cluster purity of every FEC clustering layer against the val set\'s '
        'ground truth, next to the grid partition with as many cells per fold region.')
    parser.add_argument('config', help='mmdet/mmseg config with an FEC backbone')
    parser.add_argument('checkpoint', nargs='?', help='trained weights (.pth file or URL); '
                        'omit to measure the random initialisation')
    parser.add_argument('--num-images', type=int, metavar='N',
                        help='measure the first N val images (default: all)')
    parser.add_argument('--out', metavar='FILE.json', help='also write the table as JSON: '
                        'a list of rows with the keys layer, clusters, purity, grid_purity, '
                        'advantage')
    parser.add_argument('--layers', nargs='+', default=['all'], metavar='NAME',
                        help="layers: names such as stage1.block2 or pool3, module paths, "
                        "'default' or 'all' (default: %(default)s)")
    parser.add_argument('--device', default='cpu', help='cpu, cuda or cuda:N '
                        '(default: %(default)s)')
    parser.add_argument('--seed', type=int, default=0, help='seed of the random '
                        'initialisation when no CHECKPOINT is given (default: %(default)s)')
    parser.add_argument('--num-workers', type=int, metavar='K',
                        help="data loading workers (default: the config's)")
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptionsAction, metavar='KEY=VALUE',
                        help='override config settings, as in tools/test.py')
    return parser.parse_args(argv)


def write_json(path, rows):
    """Write ``rows`` to ``path`` through a temporary file (nothing half-written)."""
    write_atomic(path, json.dumps(rows, indent=2) + '\n')


def main(argv=None):
    args = parse_args(argv)

    with user_errors():
        if args.num_images is not None and args.num_images < 1:
            raise UsageError(f'--num-images {args.num_images}: must be at least 1')
        if args.num_workers is not None and args.num_workers < 0:
            raise UsageError(f'--num-workers {args.num_workers}: must be 0 or more')
        if args.out:
            check_writable(args.out, '--out')
        cfg = load_config(args.config, args.cfg_options)
        device = choose_device(args.device)
        run(args, cfg, device)
    return 0


def run(args, cfg, device):
    if is_backbone_config(cfg):
        raise UsageError('this is a backbone-only config: it has no val set with ground '
                         'truth; use a detection or segmentation config')
    if args.checkpoint is None:
        # as a Runner does: seed, build, init_weights (the weights training starts from)
        set_random_seed(args.seed)
    model = build_model(cfg)
    if model.task == CLASSIFIER:
        raise UsageError('this is a classification config: its val set has one label per '
                         'image, not per pixel, so there is no ground truth for cluster '
                         'purity; use a detection or segmentation config (cluster maps: '
                         'tools/visualize_clusters.py works with this config)')
    scope = cfg.default_scope
    try:
        layers = [info.name for info in select_layers(
            clustering_layers(backbone_of(model)), args.layers)]
    except ValueError as error:
        raise UsageError(str(error)) from None
    try:
        loader_cfg = purity_dataloader_cfg(cfg.get('val_dataloader'), scope, args.num_workers)
    except ValueError as error:
        raise UsageError(str(error)) from None
    check_data(cfg, ['val_dataloader'])
    if args.checkpoint is None:
        print(RANDOM_WEIGHTS_WARNING, file=sys.stderr)
        # init_weights reports every parameter at INFO level; only warnings matter here
        MMLogger.get_instance('mmfec_analyze_clusters', log_level='WARNING')
        model.init_weights()
    else:
        print(load_weights(model, args.checkpoint))
    model.to(device).eval()
    loader = Runner.build_dataloader(loader_cfg)
    dataset = loader.dataset
    total = len(dataset) if args.num_images is None else min(args.num_images, len(dataset))
    if total == 0:
        raise UsageError('the val set is empty; check val_dataloader.dataset')
    ignore_index = int(getattr(dataset, 'ignore_index', DEFAULT_IGNORE_INDEX))
    print(f'measuring {len(layers)} layers on {total} of {len(dataset)} val images')
    bar = ProgressBar(total)
    with torch.no_grad():
        try:
            rows, measured = measure_purity(model, loader, total, layers, ignore_index,
                                            on_image=bar.update)
        except ValueError as error:
            raise UsageError(str(error)) from None
    print()
    if not rows:
        raise UsageError(f'none of the {measured} images has pixels to count (every pixel '
                         'is an ignore label)')
    print(format_table(rows, f'cluster purity over {measured} val images '
                             f'({"random init" if args.checkpoint is None else args.checkpoint})'))
    if args.out:
        write_json(args.out, rows)
        print(f'wrote {args.out}')


if __name__ == '__main__':
    sys.exit(main())
