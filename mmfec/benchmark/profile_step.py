"""Where one FEC backbone training step spends its time: ``torch.profiler`` op table.

    python -m mmfec.benchmark.profile_step --size 800x1216 --precision fp32
    python -m mmfec.benchmark.profile_step --size 800x1216 --precision amp --screen bf16

One warm-up step, one timed step (printed), then one profiled step: the ops by self CPU
time with their share of the step, and (``--shapes``) the same grouped by input shapes.
FEC-S with the detection setting (7x7 proposals, folds (2, 2, 1, 1)) unless told
otherwise; the loss is the mean of every output, as in ``tools/benchmark.py``.
"""
import argparse
import contextlib
import time

import torch
from torch.profiler import ProfilerActivity, profile

from mmfec.models.layers import precision, set_similarity_screen
from mmfec.utils.cpu_allocator import use_allocator

from .cases import add_backbone_arguments, backbone_and_image


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    add_backbone_arguments(parser)
    parser.add_argument('--precision', choices=['fp32', 'amp'], default='fp32',
                        help='amp: bf16 autocast on CPU, fp16 on CUDA')
    parser.add_argument('--mode', choices=['train', 'infer'], default='train')
    parser.add_argument('--screen', default='off', help="the poolings' similarity screen")
    parser.add_argument('--native-low', action='store_true',
                        help="use torch's own bf16/fp16 GEMMs and convolutions under CPU "
                        'autocast even where they are emulated in fp32 (the behaviour '
                        'before issue 19, for a before/after profile)')
    parser.add_argument('--device', default='cpu')
    parser.add_argument('--threads', type=int, default=None)
    parser.add_argument('--allocator', choices=['keep', 'default'], default='keep',
                        help='CPU: keep freed memory in the process, as the tools do '
                        '(mmfec.utils.cpu_allocator), or glibc\'s default')
    parser.add_argument('--rows', type=int, default=20)
    parser.add_argument('--shapes', action='store_true', help='also group by input shapes')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    if args.native_low:
        precision._NATIVE_CPU.update(dict.fromkeys(precision._NATIVE_CPU, True))
    if args.threads:
        torch.set_num_threads(args.threads)
    allocator = use_allocator(args.allocator) if args.device == 'cpu' else 'not on CPU'
    model, img = backbone_and_image(args, args.device)
    model.init_weights()
    set_similarity_screen(model, args.screen)
    model = model.to(args.device).train(args.mode == 'train')
    device = args.device.split(':')[0]
    low = None if args.precision == 'fp32' else (
        torch.float16 if device == 'cuda' else torch.bfloat16)

    def step():
        with contextlib.ExitStack() as stack:
            if low is not None:
                stack.enter_context(torch.autocast(device, dtype=low))
            if args.mode == 'infer':
                stack.enter_context(torch.no_grad())
                model(img)
                return
            model.zero_grad(set_to_none=True)
            loss = sum(o.float().mean() for o in model(img))
        loss.backward()
        if device == 'cuda':
            torch.cuda.synchronize()

    step()
    start = time.perf_counter()
    step()
    print(f'{args.arch} {args.setting} {args.size} batch {args.batch} {args.precision} '
          f'{args.mode}, screen {args.screen}, '
          f"{'native' if args.native_low else 'default'} low-precision kernels, "
          f'{torch.get_num_threads()} threads, allocator {allocator}: one step '
          f'{(time.perf_counter() - start) * 1e3:.0f} ms')
    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device == 'cuda' else [])
    with profile(activities=activities, record_shapes=args.shapes) as prof:
        step()
    sort = 'self_cuda_time_total' if device == 'cuda' else 'self_cpu_time_total'
    print(prof.key_averages().table(sort_by=sort, row_limit=args.rows,
                                    max_name_column_width=40))
    if args.shapes:
        print(prof.key_averages(group_by_input_shape=True).table(
            sort_by=sort, row_limit=2 * args.rows, max_name_column_width=30,
            max_shapes_column_width=80))


if __name__ == '__main__':
    main()
