"""The prepared GPU check: what the CPU suite cannot show, in one run of a few minutes.

    python -m mmfec.benchmark.gpu_check --out-dir DIR            # on a CUDA machine
    python -m mmfec.benchmark.gpu_check --device cpu --quick     # its CPU half (tests)

``tools/gpu_check.sh`` wraps it (and installs carried wheels on a machine without
OpenMMLab packages). Six sections, each a table in the report:

1. ``exact``: FEC-S/B/L outputs and gradients on the device equal the dense oracle
   (fp32, TF32 off) and equal mmfec on the CPU, with the tolerances of the CPU suite;
2. ``amp``: one training step of the backbone under fp16 and bf16 autocast (finite fp32
   gradients), its drift from fp32 against the dense formulation's under the same
   autocast, and a pooling center with 4110 members averaged on the device's atomics;
3. ``bench``: the backbone benchmark (FEC-S/B/L, the dense formulation, ResNet-50 as
   detectors train it and unfrozen) at 512x512 and 800x1216, batch 2, fp32 and AMP,
   train and inference, with ratios;
4. ``screen``: the poolings' certified low-precision similarity screen
   (``mmfec/models/layers/certified_argmax.py``), FEC-S at 800x1216, batch 2, random-normal
   images and synthetic scenes, features taken in fp32 and under AMP: per pooling and
   screen dtype (fp16, bf16) the share of points that needed the fp32 recheck,
   disagreements with the fp32 arg-max and how many of them are beyond fp32 near-ties
   (must be 0), and the arg-max's time with and without the screen;
5. ``screen_speed``: the FEC-S backbone step, train and inference, fp32 and AMP, with
   the screen off (the default), fp16 and bf16, outputs compared with off, on
   synthetic scenes (flat textured regions, the hard case for the screen);
6. ``compile``: ``torch.compile`` of the FEC-S backbone, compile time, step times and
   agreement with eager.

Writes ``gpu_check.json`` and ``gpu_check.md`` to ``--out-dir``; exits 1 when a check
fails, 2 when the device is missing.
"""
import argparse
import contextlib
import copy
import json
import os
import os.path as osp
import statistics
import sys
import time
from io import StringIO

import torch

from mmfec.models.layers import assignment, set_similarity_screen
from mmfec.models.layers.regions import pooling_layout
from mmfec.testing import clustering_fec, dense_fec_forward
from mmfec.utils.atomic_write import write_atomic

from .cases import DET_SETTING
from .report import compute_ratios, machine_info, print_table, table_row
from .runner import plan_cases, run_cases
from .screen import scene_images, screen_report

SECTIONS = ('exact', 'amp', 'bench', 'screen', 'screen_speed', 'compile')
# --quick compiles this one-block-per-stage arch: tracing time grows with the blocks.
TINY_ARCH = dict(layers=(1, 1, 1, 1), embed_dims=(16, 32, 48, 64), mlp_ratios=(2, 2, 2, 2),
                 heads=(2, 2, 2, 2), head_dims=8)
LOW = {'fp16': torch.float16, 'bf16': torch.bfloat16}


def clustering_model(arch='small', seed=0, **setting):
    """An FEC backbone whose clustering matters, as the CPU suite's oracle tests build it
    (the COCO setting unless ``setting`` says otherwise)."""
    return clustering_fec(arch, seed, **(setting or DET_SETTING))


def _sync(device):
    if device.startswith('cuda'):
        torch.cuda.synchronize()


@contextlib.contextmanager
def _no_tf32():
    """Full fp32 matmuls and convs (cuDNN allows TF32 convs by default)."""
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def _outputs_and_grads(forward, model, img):
    model.zero_grad(set_to_none=True)
    outs = forward(model, img)
    weights = [torch.linspace(-1, 1, o.numel(), device=o.device).reshape(o.shape) for o in outs]
    sum((o * w).sum() for o, w in zip(outs, weights)).backward()
    grads = {n: p.grad.detach().cpu() for n, p in model.named_parameters() if p.grad is not None}
    return [o.detach().cpu() for o in outs], grads


def _close(a, b, rtol, atol):
    try:
        torch.testing.assert_close(a, b, rtol=rtol, atol=atol)
        return True
    except AssertionError:
        return False


def _compare(ours, ref, out_tol=(1e-4, 1e-4), grad_tol=(1e-3, 1e-4)):
    """Largest differences and whether they pass the CPU suite's tolerances."""
    outs, grads = ours
    ref_outs, ref_grads = ref
    out_diff = max(float((a - b).abs().max()) for a, b in zip(outs, ref_outs))
    same_keys = grads.keys() == ref_grads.keys()
    grad_diff = max((float((grads[k] - ref_grads[k]).abs().max()) for k in grads
                     if k in ref_grads), default=0.0)
    ok = (same_keys and all(_close(a, b, *out_tol) for a, b in zip(outs, ref_outs))
          and all(_close(grads[k], ref_grads[k], *grad_tol) for k in grads))
    return out_diff, grad_diff, ok


def check_exact(device, quick):
    archs = ['small'] if quick else ['small', 'base', 'large']
    shape = (1, 3, 64, 64) if quick else (2, 3, 64, 96)
    rows = []
    with _no_tf32():
        for arch in archs:
            model = clustering_model(arch).train()
            img = torch.randn(*shape, generator=torch.Generator().manual_seed(1))
            cpu = _outputs_and_grads(lambda m, x: m(x), model, img)
            model.to(device)
            ours = _outputs_and_grads(lambda m, x: m(x), model, img.to(device))
            dense = _outputs_and_grads(dense_fec_forward, model, img.to(device))
            row = dict(arch=arch, input='x'.join(map(str, shape)))
            for tag, ref in (('dense', dense), ('cpu', cpu)):
                out_diff, grad_diff, ok = _compare(ours, ref)
                row.update({f'out_vs_{tag}': out_diff, f'grad_vs_{tag}': grad_diff,
                            f'ok_vs_{tag}': ok})
            row['ok'] = row['ok_vs_dense'] and row['ok_vs_cpu']
            rows.append(row)
            del model
    return rows


def _relative_l2(outs, refs):
    num = sum(float((o.double() - r.double()).norm() ** 2) for o, r in zip(outs, refs))
    return (num / sum(float(r.double().norm() ** 2) for r in refs)) ** 0.5


def _amp_step(model, img, dtype):
    """Forward under autocast, backward outside with the loss scaled for fp16 (what
    AmpOptimWrapper's GradScaler does); returns (finite, all fp32, seconds)."""
    device = img.device.type
    model.zero_grad(set_to_none=True)
    _sync(img.device.type)
    start = time.perf_counter()
    with torch.autocast(device_type=device, dtype=dtype):
        outs = model(img)
        loss = sum((o.float() * o.float()).mean() for o in outs)
    scale = 2.0 ** 12 if dtype == torch.float16 else 1.0
    (loss * scale).backward()
    _sync(img.device.type)
    seconds = time.perf_counter() - start
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    finite = all(g is not None and bool(torch.isfinite(g).all()) for g in grads)
    fp32 = all(g is not None and g.dtype == torch.float32 for g in grads)
    return finite and bool(torch.isfinite(loss)), fp32, seconds


def _members_error(device, dtype):
    """Relative error of a 4110-member pooling center, in half-ulps of ``dtype``."""
    height, width = 30, 137
    torch.manual_seed(0)
    feats = torch.ones(1, 4, height, width, dtype=dtype, device=device)
    values = (torch.rand(1, 4, height, width) + 0.5).to(dtype).to(device)
    layout = pooling_layout(height, width, (1, 1))
    with torch.autocast(device_type=device.split(':')[0], dtype=dtype):
        _, index = assignment.pooling_assignment(feats, layout)
        pooled = assignment.cluster_average(values, index, layout)
    exact = values.double().cpu()
    expected = (exact.sum(dim=(-2, -1)) + exact[..., :2, :2].mean(dim=(-2, -1))) / (
        height * width + 1)
    error = ((pooled[..., 0, 0].double().cpu() - expected).abs() / expected).max()
    return float(error) / (torch.finfo(dtype).eps / 2), bool((index == 0).all())


def check_amp(device, quick):
    size = (64, 64) if quick else (256, 256)
    seeds = range(3)  # drift is compared in the mean: single seeds flip either way
    rows = []
    for name, dtype in LOW.items():
        try:
            with torch.autocast(device_type=device.split(':')[0], dtype=dtype):
                pass
        except RuntimeError as error:  # e.g. torch < 2.4 has no fp16 autocast on CPU
            rows.append(dict(dtype=name, input='-', step_finite=None, grads_fp32=None,
                             step_ms=None, drift_mmfec=None, drift_dense=None,
                             members_half_ulps=None, ok=True,
                             note=f'not supported here: {error}'[:120]))
            continue
        model = clustering_model().to(device).train()
        img = torch.randn(2, 3, *size, device=device)
        _amp_step(model, img, dtype)  # warm-up (kernels, caches)
        finite, fp32, seconds = _amp_step(model, img, dtype)
        ours = dense = 0.0
        for seed in seeds:
            model = clustering_model(seed=seed).to(device).eval()
            img = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(seed))
            img = img.to(device)
            with torch.no_grad(), _no_tf32():
                ref = model(img)
                with torch.autocast(device_type=device.split(':')[0], dtype=dtype):
                    ours += _relative_l2(model(img), ref) / len(seeds)
                    dense += _relative_l2(dense_fec_forward(model, img), ref) / len(seeds)
        members, all_joined = _members_error(device, dtype)
        rows.append(dict(dtype=name, input=f'2x3x{size[0]}x{size[1]}', step_finite=finite,
                         grads_fp32=fp32, step_ms=round(seconds * 1e3, 1),
                         drift_mmfec=ours, drift_dense=dense, members_half_ulps=members,
                         ok=finite and fp32 and ours <= dense and members <= 1.0
                         and all_joined, note=''))
    return rows


SCREENS = ('off', 'fp16', 'bf16')


def _amp_dtype(device):
    return torch.float16 if device.startswith('cuda') else torch.bfloat16


def check_screen(device, quick):
    """Recheck share and agreement of the screen, per pooling, fp32 and AMP features."""
    model = clustering_model(TINY_ARCH if quick else 'small').to(device).eval()
    shape = (1, 3, 64, 96) if quick else (2, 3, 800, 1216)
    images = {'noise': torch.randn(*shape, generator=torch.Generator().manual_seed(2)),
              'scenes': scene_images(shape[0], *shape[2:], seed=2)[0]}
    rows = []
    for name, img in images.items():
        for precision, autocast in (('fp32', None), ('amp', _amp_dtype(device))):
            with _no_tf32():
                for row in screen_report(model, img.to(device), ('fp16', 'bf16'), autocast,
                                         repeats=1 if quick else 3):
                    row = dict(images=name, precision=precision, **row)
                    row['ok'] = row['beyond_fp32_ties'] == 0
                    rows.append(row)
    return rows


def check_screen_speed(device, quick):
    """FEC-S step times with the screen off / fp16 / bf16, fp32 and AMP."""
    base_chunk = assignment.SIMILARITY_CHUNK_ELEMENTS
    model = clustering_model(TINY_ARCH if quick else 'small').to(device)
    shape = (1, 3, 64, 96) if quick else (2, 3, 800, 1216)
    img = scene_images(shape[0], *shape[2:], seed=3)[0].to(device)
    repeats = 1 if quick else 5
    rows = []
    try:
        _screen_speed_rows(model, img, device, quick, repeats, base_chunk, rows)
    finally:
        assignment.SIMILARITY_CHUNK_ELEMENTS = base_chunk
        set_similarity_screen(model, 'off')  # the default
    return rows


def _screen_speed_rows(model, img, device, quick, repeats, base_chunk, rows):
    shape = tuple(img.shape)
    for precision in ('fp32', 'amp'):
        dtype = None if precision == 'fp32' else _amp_dtype(device)
        for mode in ('infer', 'train'):
            model.train(mode == 'train')

            def step():
                with contextlib.ExitStack() as stack:
                    if dtype is not None:
                        stack.enter_context(torch.autocast(device.split(':')[0], dtype=dtype))
                    if mode == 'infer':
                        stack.enter_context(torch.no_grad())
                    else:
                        model.zero_grad(set_to_none=True)
                    outs = model(img)
                    if mode == 'train':
                        sum(o.float().mean() for o in outs).backward()
                return [o.detach().float() for o in outs]

            reference, off_ms = None, None
            # (screen, similarity chunk elements): on CUDA also 8x the CPU-tuned chunk,
            # fewer host syncs per pooling (the recheck's nonzero) - untuned there so far
            settings = [(screen, None) for screen in SCREENS]
            if not quick:
                settings += [(screen, 8 * base_chunk) for screen in SCREENS]
            for screen, chunk in settings:
                set_similarity_screen(model, screen)
                assignment.SIMILARITY_CHUNK_ELEMENTS = chunk or base_chunk
                stats = {}
                for module in model.modules():
                    if hasattr(module, 'screen_stats'):
                        module.screen_stats = stats
                outs = step()  # warm-up, and the outputs to compare
                if reference is None:
                    reference = outs
                seconds = _timed(step, device, repeats)
                ms = seconds * 1e3
                off_ms = off_ms or ms
                diff = max(float((o - r).abs().max()) for o, r in zip(outs, reference))
                rows.append(dict(precision=precision, mode=mode, screen=screen,
                                 chunk_elements=chunk or base_chunk,
                                 input='x'.join(map(str, shape)), step_ms=round(ms, 1),
                                 vs_off=round(ms / off_ms, 3),
                                 rechecked=(stats['rechecked'] / stats['points']
                                            if stats.get('points') else None),
                                 max_out_diff_vs_off=diff, ok=True))
            for module in model.modules():
                if hasattr(module, 'screen_stats'):
                    module.screen_stats = None


def check_bench(device, quick, deadline):
    if quick:
        cases = plan_cases(['fec-s'], ['dense-s', 'r50'], [(64, 64)], [1], ['infer', 'train'],
                           ['fp32', 'amp'])
        common = dict(device=device, repeats=1, warmup=0, threads=1, smoke=True)
    else:
        cases = plan_cases(['fec-s', 'fec-b', 'fec-l'], ['dense-s', 'r50', 'r50-unfrozen'],
                           [(512, 512), (800, 1216)], [2], ['infer', 'train'], ['fp32', 'amp'])
        common = dict(device=device, repeats=5, warmup=2, smoke=False)
    results = run_cases(cases, common, mem_limit_gib=120.0, in_process=True, deadline=deadline,
                        on_result=lambda r: print(table_row(r), flush=True))
    return compute_ratios(results)


def _timed(fn, device, repeats):
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        fn()
        _sync(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def check_compile(device, quick, backend):
    size, batch = ((64, 64), 1) if quick else ((800, 1216), 2)
    repeats = 1 if quick else 5
    model = clustering_model(TINY_ARCH if quick else 'small').to(device)
    img = torch.randn(batch, 3, *size, device=device)
    compiled = torch.compile(model, backend=backend)
    rows = []
    for mode in ('infer', 'train'):
        model.train(mode == 'train')

        def step(net):
            if mode == 'infer':
                with torch.no_grad():
                    return net(img)
            model.zero_grad(set_to_none=True)
            outs = net(img)
            sum(o.float().mean() for o in outs).backward()
            return outs

        eager_outs = [o.detach().clone() for o in step(model)]
        eager_grads = {n: p.grad.clone() for n, p in model.named_parameters()
                       if p.grad is not None}
        _sync(device)
        start = time.perf_counter()
        outs = step(compiled)  # the first call compiles
        _sync(device)
        first = time.perf_counter() - start
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        off = sum(int(((o - e).abs() > 1e-3 * e.abs().clamp_min(1e-3)).sum())
                  for o, e in zip(outs, eager_outs))
        total = sum(e.numel() for e in eager_outs)
        grad_diff = max((float((grads[k] - eager_grads[k]).abs().max()) for k in grads),
                        default=0.0)
        eager_s = _timed(lambda: step(model), device, repeats)
        compiled_s = _timed(lambda: step(compiled), device, repeats)
        rows.append(dict(mode=mode, arch='tiny' if quick else 'small',
                         input=f'{batch}x3x{size[0]}x{size[1]}', backend=backend,
                         first_call_s=round(first, 2), eager_ms=round(eager_s * 1e3, 1),
                         compiled_ms=round(compiled_s * 1e3, 1),
                         speedup=round(eager_s / compiled_s, 3),
                         max_out_diff=max(float((o.detach() - e).abs().max())
                                          for o, e in zip(outs, eager_outs)),
                         share_off=off / total, max_grad_diff=grad_diff,
                         ok=off / total <= 1e-3))
    return rows


# ----------------------------------------------------------------------- report
def _markdown(title, rows):
    if not rows:
        return f'## {title}\n\n(not run)\n'
    keys = list(rows[0])
    lines = [f'## {title}', '', '| ' + ' | '.join(keys) + ' |', '|' + '---|' * len(keys)]
    for row in rows:
        cells = []
        for key in keys:
            value = row[key]
            cells.append(f'{value:.3g}' if isinstance(value, float) else str(value))
        lines.append('| ' + ' | '.join(cells) + ' |')
    return '\n'.join(lines) + '\n'


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description='The GPU check of mmfec (see module doc).')
    parser.add_argument('--device', default='cuda', help='cuda (default) or cpu')
    parser.add_argument('--quick', action='store_true',
                        help='tiny sizes, one arch, one repeat: checks the script itself')
    parser.add_argument('--sections', nargs='+', choices=SECTIONS, default=list(SECTIONS))
    parser.add_argument('--out-dir', default=os.environ.get('OUT') or 'work_dirs/gpu_check',
                        help='where gpu_check.json/.md go (default: $OUT or %(default)s)')
    parser.add_argument('--budget-s', type=float, default=420,
                        help='benchmark cases left after this many seconds of the whole '
                        'run are skipped (default: %(default)s)')
    parser.add_argument('--compile-backend', default='inductor',
                        help='torch.compile backend (default: %(default)s)')
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    start = time.time()
    if args.device.startswith('cuda') and not torch.cuda.is_available():
        print('error: no CUDA device is visible to torch '
              f'({torch.__version__}); run on a GPU machine or pass --device cpu',
              file=sys.stderr)
        return 2
    machine = machine_info(args.device)
    print(f"gpu_check on {machine.get('gpu', machine['cpu'])}, torch {machine['torch']}"
          f"{', CUDA ' + str(machine['cuda']) if 'cuda' in machine else ''}, "
          f"python {machine['python']}", flush=True)
    report = dict(machine=machine, args=vars(copy.copy(args)),
                  date=time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime()))
    markdown = [f"# mmfec GPU check\n\n{report['date']}: {machine.get('gpu', machine['cpu'])}, "
                f"torch {machine['torch']}, python {machine['python']}\n"]
    failed = []
    steps = [('exact', 'Exactness (fp32): device vs dense oracle and vs CPU',
              lambda: check_exact(args.device, args.quick)),
             ('amp', 'Mixed precision: a training step, drift vs dense, 4110 members',
              lambda: check_amp(args.device, args.quick)),
             ('bench', 'Backbone benchmark', lambda: check_bench(
                 args.device, args.quick, start + args.budget_s)),
             ('screen', 'Similarity screen: fp32 recheck share and agreement, per pooling',
              lambda: check_screen(args.device, args.quick)),
             ('screen_speed', 'Similarity screen: FEC-S step with the screen off / fp16 / bf16',
              lambda: check_screen_speed(args.device, args.quick)),
             ('compile', 'torch.compile of FEC-S', lambda: check_compile(
                 args.device, args.quick, args.compile_backend))]
    for name, title, run in steps:
        if name not in args.sections:
            continue
        print(f'\n== {name}: {title}', flush=True)
        t0 = time.time()
        try:
            rows = run()
        except Exception as error:  # a broken section is reported, the others still run
            rows = [dict(error=f'{type(error).__name__}: {error}'[:800], ok=False)]
        report[name] = rows
        report[f'{name}_seconds'] = round(time.time() - t0, 1)
        if name == 'bench':
            print_table(rows)
            buffer = StringIO()
            print_table(rows, out=buffer)
            markdown.append(f'## {title}\n\n{buffer.getvalue()}')
            failed += [f"bench {r['model']} {r['size']} {r['mode']} {r.get('precision')}"
                       for r in rows if r.get('status') not in ('ok', 'skipped')]
        else:
            text = _markdown(title, rows)
            print(text, flush=True)
            markdown.append(text)
            failed += [f'{name}: {r}' for r in rows if not r.get('ok')]
    report['seconds'] = round(time.time() - start, 1)
    report['failed'] = failed
    for suffix, text in (('json', json.dumps(report, indent=1, default=str)),
                         ('md', '\n'.join(markdown))):
        write_atomic(osp.join(args.out_dir, f'gpu_check.{suffix}'), text)
    print(f"\ngpu_check: {len(failed)} failed check(s) in {report['seconds']} s; report in "
          f"{args.out_dir}/gpu_check.md and .json", flush=True)
    for line in failed:
        print(f'  FAILED {line}'[:300])
    return 1 if failed else 0


if __name__ == '__main__':
    sys.exit(main())
