#!/usr/bin/env python
"""Export an FEC model (bare backbone, segmentor, detector or classifier) to ONNX; check
it with onnxruntime.

    python tools/deployment/pytorch2onnx.py CONFIG [CHECKPOINT] --shape H W \
        --output-file FILE.onnx [--verify [--image IMAGE] [--repeats N]] [--opset N]

The graph takes the preprocessed image ``[1, 3, H, W]`` (one static size per file) and
returns: a backbone's stage features; a segmentor's logits ``[1, classes, H, W]``; a
RetinaNet's class scores and box deltas per level; a two-stage detector's neck features
and RPN outputs; a classifier's logits ``[1, classes]``. Guide: docs/deployment.md.
Needs ``pip install -e '.[deploy]'``.
"""
import argparse
import importlib.util
import os.path as osp
import sys

ROOT = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))

if importlib.util.find_spec('mmfec') is None:
    sys.path.insert(0, ROOT)  # a plain checkout, mmfec not installed

import mmfec  # noqa: F401  (registers FEC and the safe loader)
from mmfec.apis.deploy import export_model
from mmfec.utils.cli import ConfigOptionsAction, user_errors


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Export an FEC backbone, segmentor, detector or classifier to ONNX at '
        'one input size, and optionally verify it against PyTorch with onnxruntime.')
    parser.add_argument('config', help='backbone-only, mmseg, mmdet or mmpretrain config '
                        'file')
    parser.add_argument('checkpoint', nargs='?', default=None,
                        help='trained weights (file or URL); without it the weights are '
                        'random (a warning says so)')
    parser.add_argument('--shape', type=int, nargs=2, required=True, metavar=('H', 'W'),
                        help='input height and width of the graph (static; any size from '
                        '32 up)')
    parser.add_argument('--output-file', required=True, metavar='FILE.onnx',
                        help='where to write the graph (written under a temporary name '
                        'and renamed when complete)')
    parser.add_argument('--opset', type=int, default=18,
                        help='ONNX opset, 18 or newer (default: %(default)s)')
    parser.add_argument('--verify', action='store_true',
                        help='run the graph with onnxruntime (CPU) on a random input and '
                        'on a real image; print the differences from PyTorch and both '
                        'latencies')
    parser.add_argument('--image', metavar='IMAGE',
                        help='with --verify: the real image (default: a synthetic toy '
                        'scene), resized to H x W and normalised by the config\'s data '
                        'preprocessor')
    parser.add_argument('--repeats', type=int, default=5,
                        help='with --verify: timed runs per runtime, median reported '
                        '(default: %(default)s)')
    parser.add_argument('--threads', type=int, default=None,
                        help='with --verify: threads for PyTorch and onnxruntime '
                        "(default: PyTorch's)")
    parser.add_argument('--cfg-options', nargs='+', action=ConfigOptionsAction,
                        help='override config settings, key=value (as in tools/test.py)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with user_errors():
        export_model(args.config, args.checkpoint, args.shape, args.output_file,
                     verify=args.verify, opset=args.opset, image=args.image,
                     repeats=args.repeats, threads=args.threads, cfg_options=args.cfg_options)
    return 0


if __name__ == '__main__':
    sys.exit(main())
