#!/usr/bin/env python
"""Speed and memory of FEC: backbones, the detector and segmentor of ``configs/``, the
dense (paper-style) implementation and ResNet-50, measured in one run.

    python tools/benchmark.py --all                 # everything, CPU, ~1-2 h on 2 cores
    python tools/benchmark.py --models fec-s --baselines dense-s r50 r50-unfrozen \\
        --sizes 800x1216 --batches 1 --modes train --scaling --json out.json
    python tools/benchmark.py --device cuda --precisions fp32 amp --in-process
    python tools/benchmark.py --smoke               # tiny inputs, 1 repeat, in-process

Per case (model x input size x batch x precision x mode): ``infer`` is one forward under
``torch.no_grad()`` in eval mode; ``train`` is forward, a loss and backward in train mode,
no optimizer step; ``amp`` runs the forward and loss under ``torch.autocast`` (fp16 on
CUDA, bf16 on CPU; ``--amp-dtype``). Wall-clock time per step (``torch.cuda.synchronize()``
around it on GPU) after ``--warmup`` steps, ``--repeats`` steps, median reported (min and
the process CPU time too). Peak memory: ``max_memory_allocated`` on GPU; on CPU the C
allocator's peak sampled after every op, and the RSS peak (``mmfec/benchmark/memory.py``).
The dense formulation is skipped, with an estimate, when its analytic lower bound on memory
passes ``--mem-limit-gib``. ResNet-50 comes in two forms, named in every table: ``r50`` as
mmdet's detection configs build it (``frozen_stages=1, norm_eval=True``) and
``r50-unfrozen``. "busy" is how many cores other processes kept busy during the case:
timings are only comparable when it is near 0. The logic lives in ``mmfec/benchmark/``.
"""
import argparse
import json
import os.path as osp
import statistics
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

import torch

from mmfec.benchmark.cases import DEFAULT_BASELINES, DEFAULT_MODELS, MODEL_HELP, parse_model
from mmfec.benchmark.report import (
    compute_ratios,
    evaluate_targets,
    machine_info,
    print_table,
    table_row,
)
from mmfec.benchmark.runner import TARGET_SIZE, plan_cases, run_cases, worker_main
from mmfec.utils.cli import UsageError, check_writable


def parse_size(text):
    try:
        h, w = (int(v) for v in text.lower().split('x'))
    except ValueError:
        raise argparse.ArgumentTypeError(f'size must look like 800x1216, got {text!r}')
    if min(h, w) < 32:
        raise argparse.ArgumentTypeError('sizes must be at least 32x32')
    return h, w


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description='Speed and memory of FEC next to its dense implementation and '
        'ResNet-50.', epilog='models: ' + '; '.join(f'{k}: {v}' for k, v in
                                                     MODEL_HELP.items()))
    parser.add_argument('--models', nargs='+', default=None,
                        help=f'models to measure (default: {" ".join(DEFAULT_MODELS)})')
    parser.add_argument('--baselines', nargs='*', default=None,
                        help=f'baselines (default: {" ".join(DEFAULT_BASELINES)})')
    parser.add_argument('--sizes', nargs='+', type=parse_size, default=None,
                        help='input sizes HxW (default: 512x512 800x1216)')
    parser.add_argument('--batches', nargs='+', type=int, default=None,
                        help='batch sizes (default: 1 2)')
    parser.add_argument('--modes', nargs='+', choices=['infer', 'train'], default=None,
                        help='default: infer train')
    parser.add_argument('--precisions', nargs='+', choices=['fp32', 'amp'], default=['fp32'],
                        help='fp32 and/or amp (autocast; default: %(default)s)')
    parser.add_argument('--amp-dtype', choices=['float16', 'bfloat16'], default=None,
                        help='autocast dtype of amp cases (default: float16 on CUDA, '
                        'bfloat16 on CPU)')
    parser.add_argument('--scaling', action='store_true',
                        help='also train fec-s (and its baselines) at batch 1, 1600x2432 '
                        '(memory-scaling target)')
    parser.add_argument('--repeats', type=int, default=3, help='timed steps (median)')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed steps first (the first one is memory-traced)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads (default: torch default, all cores)')
    parser.add_argument('--allocator', choices=['keep', 'default'], default='keep',
                        help='CPU: keep freed memory in the process, as tools/train.py and '
                        'test.py do (mmfec.utils.cpu_allocator), or glibc\'s default '
                        '(every large tensor a fresh mmap); each case runs in a fresh '
                        'process, so this is per run')
    parser.add_argument('--fec-setting', choices=['auto', 'det', 'seg'], default='auto',
                        help='FEC backbone setting: auto = seg (10,10,5,5, no folds) at '
                        '512x512, det (7, folds 2,2,1,1) otherwise')
    parser.add_argument('--mem-limit-gib', type=float, default=16.0,
                        help='per-case memory limit (capped at 75%% of available memory)')
    parser.add_argument('--timeout', type=float, default=1800, help='per-case seconds')
    parser.add_argument('--in-process', action='store_true',
                        help='run cases in this process (no RSS numbers, no OOM guard)')
    parser.add_argument('--json', metavar='FILE',
                        help="write all results as JSON ('-' for stdout)")
    parser.add_argument('--smoke', action='store_true',
                        help='tiny inputs (64x64, scaling 128x128), batch 1, 1 repeat, '
                        'no warm-up, 1 thread, in-process: checks that everything runs')
    parser.add_argument('--all', action='store_true',
                        help='every model, baseline, size, batch and mode (~1-2 h on 2 CPU '
                        'cores); without it, say what to measure')
    parser.add_argument('--worker', help=argparse.SUPPRESS)  # older spelling, kept
    args = parser.parse_args(argv)
    chosen = [args.models, args.baselines, args.sizes, args.batches, args.modes]
    if not (args.all or args.smoke or args.worker or any(c is not None for c in chosen)):
        parser.error('say what to measure (e.g. --models fec-s --baselines r50 --sizes '
                     '800x1216 --modes train), --smoke for a quick check, or --all for '
                     'everything (~1-2 h on 2 CPU cores)')
    if args.smoke:
        args.sizes = args.sizes or [(64, 64)]
        args.batches = args.batches or [1]
        args.repeats, args.warmup, args.in_process = 1, 0, True
        args.threads = args.threads or 1  # no OpenMP barriers to wait on
    args.models = args.models if args.models is not None else DEFAULT_MODELS
    args.baselines = args.baselines if args.baselines is not None else DEFAULT_BASELINES
    args.sizes = args.sizes or [(512, 512), TARGET_SIZE]
    args.batches = args.batches or [1, 2]
    args.modes = args.modes or ['infer', 'train']
    for name in args.models + args.baselines:
        try:
            parse_model(name)
        except ValueError:
            parser.error(f'unknown model {name!r}; choose from: ' +
                         '; '.join(f'{k} ({v})' for k, v in MODEL_HELP.items()))
    if args.repeats < 1:
        parser.error('--repeats must be at least 1')
    return args


def main(argv=None):
    args = parse_args(argv)
    if args.json and args.json != '-':
        try:
            check_writable(args.json, '--json')
        except UsageError as error:
            print(f'error: {error}', file=sys.stderr)
            return 2
    if args.worker:
        worker_main(args.worker)
        return 0
    if args.device == 'cuda' and not torch.cuda.is_available():
        print('error: --device cuda but no CUDA device is available', file=sys.stderr)
        return 2
    log = sys.stderr if args.json == '-' else sys.stdout
    machine = machine_info(args.device, args.threads)
    print(f"machine: {machine['cpu']} (flags: {machine['cpu_flags'] or '?'}), "
          f"{machine['cores']} cores, {machine['memory_gib']} GiB, "
          f"torch {machine['torch']}, {machine['threads']} threads, device {args.device}"
          + (f", allocator {args.allocator}" if args.device == 'cpu' else '')
          + (f", {machine['gpu']}" if 'gpu' in machine else ''), file=log)
    cases = plan_cases(args.models, args.baselines, args.sizes, args.batches, args.modes,
                       args.precisions, args.scaling, args.smoke)
    common = dict(device=args.device, repeats=args.repeats, warmup=args.warmup,
                  threads=args.threads, fec_setting=args.fec_setting, smoke=args.smoke,
                  amp_dtype=args.amp_dtype, allocator_requested=args.allocator)
    start = time.time()
    results = run_cases(cases, common, args.mem_limit_gib, args.timeout, args.in_process,
                        on_result=lambda r: print(table_row(r), file=log, flush=True))
    compute_ratios(results)
    targets = evaluate_targets(results, args.smoke)
    print('', file=log)
    print_table(results, targets, out=log)
    others = [r['other_cores'] for r in results if r.get('other_cores') is not None]
    if others:
        print(f'\ncores busy with other processes during the cases: mean '
              f'{statistics.mean(others):.2f}, max {max(others):.2f} (of {machine["cores"]}); '
              f'per case in the JSON (other_cores)', file=log)
    payload = dict(machine=machine, command='python tools/benchmark.py ' + ' '.join(
        sys.argv[1:] if argv is None else argv), seconds=round(time.time() - start, 1),
        results=results, targets=targets)
    if args.json == '-':
        print(json.dumps(payload, indent=1))
    elif args.json:
        with open(args.json, 'w') as f:
            json.dump(payload, f, indent=1)
        print(f'results written to {args.json}', file=log)
    return 0


if __name__ == '__main__':
    sys.exit(main())
