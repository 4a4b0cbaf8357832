"""The poolings' two similarity layouts timed against each other in one process.

    python -m mmfec.benchmark.layouts --setting det --size 800x1216 --mode infer --pairs 10

FEC's large pooling regions take their cosine centers-major on CPU
(:mod:`mmfec.models.layers.centers_major`, regions of
``assignment.CENTERS_MAJOR_MIN_CENTERS`` centers or more); every other region, and every
region on the other side here, points-major. The two run step by step in alternation
(each timed step after an untimed one of the same side), so the drift of a shared VM
hits both alike; a difference of a few per cent drowns in the run-to-run spread of
separate processes (``tools/benchmark.py``). Prints both medians, the median of the
per-pair ratios (centers-major / points-major) and whether both gave the same outputs.
"""
import argparse
import contextlib
import statistics
import time

import torch

from mmfec.models.layers import assignment
from mmfec.utils.cpu_allocator import use_allocator

from .cases import add_backbone_arguments, backbone_and_image


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_backbone_arguments(parser)
    parser.add_argument('--mode', choices=['train', 'infer'], default='infer')
    parser.add_argument('--pairs', type=int, default=10, help='timed steps per side')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--allocator', choices=['keep', 'default'], default='keep')
    parser.add_argument('--min-centers', type=int, default=None,
                        help='centers-major from this many centers on (default: the '
                             "library's CENTERS_MAJOR_MIN_CENTERS)")
    return parser.parse_args(argv)


@contextlib.contextmanager
def layout(centers_major: bool, min_centers: int):
    """Every large region centers-major, or none."""
    saved = assignment.CENTERS_MAJOR_MIN_CENTERS
    assignment.CENTERS_MAJOR_MIN_CENTERS = min_centers if centers_major else 2 ** 62
    try:
        yield
    finally:
        assignment.CENTERS_MAJOR_MIN_CENTERS = saved


def main(argv=None):
    args = parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    allocator = use_allocator(args.allocator)
    min_centers = args.min_centers or assignment.CENTERS_MAJOR_MIN_CENTERS
    model, img = backbone_and_image(args)
    model.train(args.mode == 'train')

    def step():
        if args.mode == 'infer':
            with torch.no_grad():
                return model(img)
        model.zero_grad(set_to_none=True)
        outs = model(img)
        sum(o.mean() for o in outs).backward()
        return outs

    outputs, times = {}, {True: [], False: []}
    for side in (False, True):
        with layout(side, min_centers):
            outputs[side] = [o.detach() for o in step()]
    same = all(torch.equal(a, b) for a, b in zip(outputs[False], outputs[True]))
    for _ in range(args.pairs):
        for side in (False, True):
            with layout(side, min_centers):
                step()
                start = time.perf_counter()
                step()
                times[side].append(time.perf_counter() - start)
    ratios = [c / p for p, c in zip(times[False], times[True])]
    print(f'{args.arch} {args.setting} {args.size} batch {args.batch} fp32 {args.mode}, '
          f'{torch.get_num_threads()} threads, allocator {allocator}, centers-major from '
          f'{min_centers} centers, {args.pairs} pairs')
    print(f'points-major {statistics.median(times[False]) * 1e3:.0f} ms, centers-major '
          f'{statistics.median(times[True]) * 1e3:.0f} ms (medians); ratio '
          f'{statistics.median(ratios):.3f} (median of pairs; range {min(ratios):.3f}-'
          f'{max(ratios):.3f}); same outputs: {same}')
    return dict(points_major=times[False], centers_major=times[True], ratios=ratios,
                same_outputs=same)


if __name__ == '__main__':
    main()
