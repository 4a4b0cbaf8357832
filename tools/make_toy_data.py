#!/usr/bin/env python
"""Write the toy COCO, ADE20K and ImageNet-layout sets used by the demos and tests.

    python tools/make_toy_data.py [--out-dir data] [--only coco|ade20k|imagenet] [--force]
                                  [--num-train N] [--num-val N] [--seed S]

Idempotent: a set whose marker file matches the requested parameters is left alone
("up to date", well under a second). Each set is built in a temp folder and renamed
into place, so an interrupted run leaves nothing half-written.

Needs only numpy and cv2 (no mmdet/mmseg), so it runs before the stack is installed:
the generator modules are loaded from mmfec/datasets/ without importing mmfec.
"""
import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / 'mmfec' / 'datasets'))

import toy_ade20k
import toy_coco
import toy_imagenet

SETS = {
    'coco': (toy_coco, toy_coco.ensure_toy_coco),
    'ade20k': (toy_ade20k, toy_ade20k.ensure_toy_ade20k),
    'imagenet': (toy_imagenet, toy_imagenet.ensure_toy_imagenet),
}


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('--out-dir', default=str(ROOT / 'data'),
                        help='folder that gets toy_coco/, toy_ade20k/ and toy_imagenet/ '
                        '(default: %(default)s)')
    parser.add_argument('--only', choices=sorted(SETS), help='write only this set')
    parser.add_argument('--force', action='store_true', help='regenerate even if up to date')
    parser.add_argument('--num-train', type=int, help='training images per set '
                        f'(default: coco {toy_coco.DEFAULT_NUM_TRAIN}, '
                        f'ade20k {toy_ade20k.DEFAULT_NUM_TRAIN}, '
                        f'imagenet {toy_imagenet.DEFAULT_NUM_TRAIN})')
    parser.add_argument('--num-val', type=int, help='validation images per set '
                        f'(default: coco {toy_coco.DEFAULT_NUM_VAL}, '
                        f'ade20k {toy_ade20k.DEFAULT_NUM_VAL}, '
                        f'imagenet {toy_imagenet.DEFAULT_NUM_VAL})')
    parser.add_argument('--seed', type=int, default=0, help='random seed (default: 0)')
    return parser.parse_args(argv)


def check_args(args):
    """One-line errors before anything is written (no folder is left behind)."""
    # the classification set needs one image per class
    minimum = len(toy_imagenet.TOY_IMAGENET_CLASSES) if args.only in (None, 'imagenet') else 1
    for option, value in (('--num-train', args.num_train), ('--num-val', args.num_val)):
        if value is not None and value < minimum:
            return f'{option} {value}: must be at least {minimum}'
    out = Path(args.out_dir)
    while not out.exists():
        out = out.parent
    if not out.is_dir():
        return f'--out-dir {args.out_dir}: {out} is a file, so no folder can be made there'
    return None


def main(argv=None):
    args = parse_args(argv)
    problem = check_args(args)
    if problem:
        print(f'error: {problem}', file=sys.stderr)
        return 2
    for name in [args.only] if args.only else sorted(SETS):
        module, ensure = SETS[name]
        num_train = module.DEFAULT_NUM_TRAIN if args.num_train is None else args.num_train
        num_val = module.DEFAULT_NUM_VAL if args.num_val is None else args.num_val
        start = time.perf_counter()
        messages = []
        ensure(args.out_dir, num_train=num_train, num_val=num_val, seed=args.seed,
               force=args.force, log=messages.append)
        counts = f'{num_train} train + {num_val} val images'
        print(f'{messages[-1]}: {counts} ({time.perf_counter() - start:.2f} s)')
    return 0


if __name__ == '__main__':
    sys.exit(main())
