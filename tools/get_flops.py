#!/usr/bin/env python
"""Parameters and FLOPs of a detector, segmentor or bare-backbone config with FEC.

    python tools/get_flops.py configs/maskrcnn_fec.py                 # 800x1216
    python tools/get_flops.py configs/semfpn_fec.py --shape 512 512
    python tools/get_flops.py configs/fec_small_backbone.py           # 224x224
    python tools/get_flops.py --paper       # FEC-S/B/L at 224x224 next to the paper

FLOPs are multiply-adds (fvcore's convention, which mmengine's FlopAnalyzer follows and
the paper's GFLOPs use); element-wise ops count zero. FEC's clustering is counted: the
point-center similarity matmuls (``bmm``), the member sums (``scatter_add``) and the center
pooling, see ``mmfec/analysis/flops.py``. A detector is counted as mmdet's own get_flops
does: the network forward (backbone, neck, RPN, RoI heads on the RPN proposals), no
post-processing. Nothing is loaded: weights are left at their initial values.
"""
import argparse
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch

import mmfec  # noqa: F401  (registers FEC and the safe loader)
from mmfec.analysis.flops import count_flops
from mmfec.apis import build_model
from mmfec.models import FEC
from mmfec.utils.cli import load_config, user_errors

# FEC-S/B/L on ImageNet-1K, 224x224, as quoted in /work/shared/paper_numbers.md
# (classification models, head included).
PAPER = {'small': (5.5, 1.4), 'base': (14.4, 3.4), 'large': (28.3, 6.5)}
IMAGENET_SETTING = dict(proposal_sizes=(4, 4, 2, 2), fold_sizes=1)
DEFAULT_SHAPES = {'backbone': (224, 224), 'detector': (800, 1216), 'segmentor': (512, 512),
                  'classifier': (224, 224)}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Parameters and FLOPs (multiply-adds) of a config with an FEC '
        'backbone, clustering included.')
    parser.add_argument('config', nargs='?', help='detector, segmentor or backbone config')
    parser.add_argument('--shape', type=int, nargs='+', metavar='N',
                        help='input H W (or one value for a square); default 800 1216 '
                        'for detectors, 512 512 for segmentors, 224 224 for backbones')
    parser.add_argument('--paper', action='store_true',
                        help='FEC-S/B/L backbones at 224x224 (ImageNet setting) next to '
                        "the paper's numbers")
    parser.add_argument('--by-module', action='store_true',
                        help='also print FLOPs per top-level module and per operator')
    args = parser.parse_args(argv)
    if not args.config and not args.paper:
        parser.error('give a CONFIG, or --paper')
    if args.shape is not None:
        if len(args.shape) == 1:
            args.shape = args.shape * 2
        if len(args.shape) != 2 or min(args.shape) < 32:
            parser.error('--shape takes H W (or one size), each at least 32')
    return args


def build_from_config(path):
    """``(kind, model)``: the config's model (``mmfec.apis.build_model``: random weights,
    nothing loaded) and its kind, backbone/detector/segmentor/classifier."""
    model = build_model(load_config(path))
    return model.task, model


def forward_for(kind, model, shape):
    """A callable ``inputs -> outputs`` counting what mmdet/mmseg's get_flops count."""
    height, width = shape
    if kind == 'backbone':
        return None
    if kind == 'detector':
        from mmdet.structures import DetDataSample
        sample = DetDataSample(metainfo=dict(
            img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
            batch_input_shape=(height, width), scale_factor=(1.0, 1.0)))
        return lambda inputs: model._forward(inputs, [sample] * inputs.shape[0])
    if kind == 'classifier':
        return lambda inputs: model(inputs, mode='tensor')
    return lambda inputs: model._forward(inputs)


def count(model, kind, shape):
    inputs = torch.randn(1, 3, *shape)
    return count_flops(model, inputs, forward_for(kind, model, shape))


def backbone_params(model, kind):
    module = model if kind == 'backbone' else getattr(model, 'backbone', None)
    return None if module is None else sum(p.numel() for p in module.parameters())


def paper_table():
    rows = []
    for arch, (paper_params, paper_gflops) in PAPER.items():
        model = FEC(arch, **IMAGENET_SETTING)
        result = count(model, 'backbone', (224, 224))
        dims = model.embed_dims[-1]
        head = dims * 1000 + 1000 + 2 * dims  # final GroupNorm + Linear(dims, 1000)
        out_norms = sum(2 * d for d in model.embed_dims)  # norm0/2/4/6: detection outputs
        rows.append(dict(arch=arch, params=result['params'],
                         params_with_head=result['params'] - out_norms + head,
                         flops=result['flops'], flops_with_head=result['flops'] + dims * 1000,
                         similarity_flops=result['by_operator'].get('bmm', 0),
                         paper_params=paper_params, paper_gflops=paper_gflops))
    print('FEC backbones at 224x224, ImageNet setting (proposal_sizes (4, 4, 2, 2), no folds)')
    print('FLOPs = multiply-adds; "+ head" = classification model (final GroupNorm + '
          'Linear to 1000 classes) instead of the 4 output norms')
    header = ('| model | params (M) | + head (M) | paper params (M) | GFLOPs | + head | '
              'of which similarity bmm | paper GFLOPs |')
    print(header)
    print('|' + '---|' * 8)
    for r in rows:
        print(f"| FEC-{r['arch'][0].upper()} | {r['params'] / 1e6:.2f} | "
              f"{r['params_with_head'] / 1e6:.2f} | {r['paper_params']} | "
              f"{r['flops'] / 1e9:.3f} | {r['flops_with_head'] / 1e9:.3f} | "
              f"{r['similarity_flops'] / 1e9:.3f} | {r['paper_gflops']} |")
    return rows


def main(argv=None):
    args = parse_args(argv)
    with user_errors():
        run(args)
    return 0


def run(args):
    if args.paper:
        paper_table()
    if not args.config:
        return
    kind, model = build_from_config(args.config)
    shape = tuple(args.shape) if args.shape else DEFAULT_SHAPES[kind]
    result = count(model, kind, shape)
    bb_params = backbone_params(model, kind)
    print(f'config: {args.config} ({kind})')
    print(f'input shape: 1x3x{shape[0]}x{shape[1]}')
    print(f"params: {result['params'] / 1e6:.2f} M" + (
        f' (backbone {bb_params / 1e6:.2f} M)' if kind != 'backbone' and bb_params else ''))
    print(f"FLOPs: {result['flops'] / 1e9:.2f} G (multiply-adds)")
    sims = result['by_operator'].get('bmm', 0)
    print(f'  of which clustering similarity/aggregation matmuls (bmm): {sims / 1e9:.2f} G')
    if args.by_module:
        print('by module:')
        for name, value in result['by_module'].most_common():
            print(f'  {name}: {value / 1e9:.3f} G')
        print('by operator:')
        for name, value in result['by_operator'].most_common():
            print(f'  {name}: {value / 1e9:.3f} G')


if __name__ == '__main__':
    sys.exit(main())
