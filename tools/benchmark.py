#!/usr/bin/env python
"""Speed and memory of FEC: backbones, the detector and segmentor of ``configs/``, the
dense (paper-style) implementation and ResNet-50, measured in one run.

    python tools/benchmark.py                       # everything, CPU, ~1-2 h on 2 cores
    python tools/benchmark.py --models fec-s --baselines dense-s r50 \\
        --sizes 800x1216 --batches 1 --modes train --scaling --json out.json
    python tools/benchmark.py --smoke               # tiny inputs, 1 repeat, in-process

What is measured, per case (model x input size x batch x mode):

* ``infer``: one forward under ``torch.no_grad()`` in eval mode; ``train``: forward,
  a loss (sum of output means for a backbone, the model's own losses for a detector or
  segmentor) and backward in train mode; no optimizer step. Wall-clock time per step
  (``torch.cuda.synchronize()`` around it on GPU) after ``--warmup`` steps, ``--repeats``
  steps, median reported (min and the process CPU time too).
* peak memory of the step, above what was allocated before it (model, input):
  on GPU ``torch.cuda.max_memory_allocated``; on CPU (a) "alloc": the most bytes held
  by the C allocator (glibc ``mallinfo2``: in-use heap + mmapped blocks), sampled after
  every aten op of the first (warm-up) step, the CPU analogue of ``max_memory_allocated``
  (it ignores allocator caching and fragmentation); (b) "RSS": the process's peak
  resident set (``ru_maxrss``) minus its resident set before the first step, what the
  OS had to provide. Each case runs in a fresh subprocess so (b) is per case; a watchdog
  kills a case whose RSS passes the memory limit and reports it as OOM.
* the dense implementation (``mmfec.testing.dense_fec_forward``: full similarity, one-hot
  mask, ``[b, C, M, N]`` dispatch) is skipped, with an estimate, when its analytic
  lower bound on memory exceeds the limit (``--mem-limit-gib``, capped at 75% of the
  memory available when the case starts).

FEC settings: the detector config's (proposal_sizes 7, fold_sizes (2, 2, 1, 1)) for
backbone rows at any size but 512x512, where the segmentation config's (10, 10, 5, 5),
no folds, is used (``--fec-setting`` overrides). The detector and segmentor are built
from ``configs/maskrcnn_fec.py`` / ``configs/semfpn_fec.py`` (backbone ``init_cfg=None``,
SyncBN -> BN for a single process); their ResNet-50 counterparts from mmdet's
``mask-rcnn_r50_fpn_1x_coco`` and mmseg's ``fpn_r50`` (150 classes). Weights are random.

Output: a table (markdown) with ratios against the dense implementation (same FEC arch)
and ResNet-50 (the R50 backbone for backbone rows, the R50 detector/segmentor for those),
the issue's targets, and ``--json FILE`` (or ``--json -`` for stdout) with every number.
"busy" is how many cores other processes kept busy during the case (from ``/proc/stat``
minus this run's own CPU time): timings are only comparable when it is near 0.
"""
import argparse
import copy
import ctypes
import json
import os
import os.path as osp
import platform
import resource
import statistics
import subprocess
import sys
import time

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)

ARCHS = {'s': 'small', 'b': 'base', 'l': 'large'}
DET_SETTING = dict(proposal_sizes=7, fold_sizes=(2, 2, 1, 1))
SEG_SETTING = dict(proposal_sizes=(10, 10, 5, 5), fold_sizes=1)
MODEL_HELP = {
    'fec-s/-b/-l': 'FEC backbone (fused layers, the default implementation)',
    'fec-s-plain (etc.)': 'FEC backbone, plain module-by-module path (pre-optimisation)',
    'fec-s-compile (etc.)': 'FEC backbone wrapped in torch.compile',
    'dense-s/-b/-l': 'dense paper-style FEC (mmfec.testing.dense_fec_forward)',
    'r50': "mmdet's ResNet(depth=50) backbone",
    'det-fec / det-r50': 'Mask R-CNN with FEC-S (configs/maskrcnn_fec.py) / with R50',
    'seg-fec / seg-r50': 'Semantic FPN with FEC-S (configs/semfpn_fec.py) / with R50',
}
DEFAULT_MODELS = ['fec-s', 'fec-b', 'fec-l', 'det-fec', 'seg-fec']
DEFAULT_BASELINES = ['dense-s', 'r50', 'det-r50', 'seg-r50']
SCALING_SIZE = (1600, 2432)
TARGET_SIZE = (800, 1216)


# ====================================================================== models
def parse_model(name):
    """``name`` -> dict(kind, arch, variant)."""
    parts = name.split('-')
    if parts[0] in ('fec', 'dense') and len(parts) >= 2 and parts[1] in ARCHS:
        variant = parts[2] if len(parts) > 2 else 'fused'
        if parts[0] == 'dense' and len(parts) > 2 or variant not in ('fused', 'plain',
                                                                     'compile'):
            raise ValueError(name)
        return dict(kind=parts[0], arch=ARCHS[parts[1]], variant=variant)
    if name in ('r50', 'det-fec', 'det-r50', 'seg-fec', 'seg-r50'):
        return dict(kind=name, arch=None, variant='fused')
    raise ValueError(name)


def fec_setting(size, choice):
    if choice == 'det' or (choice == 'auto' and tuple(size) != (512, 512)):
        return 'det', DET_SETTING
    return 'seg', SEG_SETTING


def _bn_instead_of_syncbn(cfg):
    if isinstance(cfg, dict):
        for key, value in cfg.items():
            if key == 'type' and value == 'SyncBN':
                cfg[key] = 'BN'
            else:
                _bn_instead_of_syncbn(value)
    elif isinstance(cfg, (list, tuple)):
        for item in cfg:
            _bn_instead_of_syncbn(item)
    return cfg


def _package_config(package, *parts):
    import importlib
    root = osp.dirname(importlib.import_module(package).__file__)
    return osp.join(root, '.mim', 'configs', *parts)


def build_full_model(kind, smoke=False):
    """Detector / segmentor from a config, weights random, nothing downloaded. ``smoke``
    cuts a detector's proposals to 64 per image (a run-through, not a measurement)."""
    from mmengine.config import Config
    import mmfec  # noqa: F401  (registers FEC)
    if kind.startswith('det'):
        from mmdet.registry import MODELS
        from mmdet.utils import register_all_modules
        path = (osp.join(ROOT, 'configs', 'maskrcnn_fec.py') if kind == 'det-fec' else
                _package_config('mmdet', 'mask_rcnn', 'mask-rcnn_r50_fpn_1x_coco.py'))
    else:
        from mmseg.registry import MODELS
        from mmseg.utils import register_all_modules
        path = (osp.join(ROOT, 'configs', 'semfpn_fec.py') if kind == 'seg-fec' else
                _package_config('mmseg', '_base_', 'models', 'fpn_r50.py'))
    register_all_modules(init_default_scope=True)
    cfg = copy.deepcopy(Config.fromfile(path).model)
    cfg.pop('pretrained', None)
    cfg.pop('init_cfg', None)
    cfg['backbone']['init_cfg'] = None
    if kind == 'seg-r50':
        cfg['decode_head']['num_classes'] = 150
    _bn_instead_of_syncbn(cfg)
    if smoke and kind.startswith('det'):
        cfg.train_cfg.rpn_proposal.update(nms_pre=128, max_per_img=64)
        cfg.train_cfg.rcnn.sampler.num = 64
        cfg.test_cfg.rpn.update(nms_pre=128, max_per_img=64)
    return MODELS.build(cfg), path


def _det_samples(batch, height, width, train, device):
    import numpy as np
    import torch
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData
    gen = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(batch):
        sample = DetDataSample(metainfo=dict(
            img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width),
            batch_input_shape=(height, width), scale_factor=(1.0, 1.0)))
        if train:
            count = 5
            xy = torch.rand(count, 2, generator=gen) * torch.tensor([width * 0.6, height * 0.6])
            wh = (torch.rand(count, 2, generator=gen) * 0.3 + 0.1) * torch.tensor([width, height])
            boxes = torch.cat([xy, xy + wh], dim=1)
            masks = np.zeros((count, height, width), dtype=np.uint8)
            for i, (x0, y0, x1, y1) in enumerate(boxes.round().int().tolist()):
                masks[i, y0:y1, x0:x1] = 1
            sample.gt_instances = InstanceData(
                bboxes=boxes.to(device), labels=torch.randint(0, 80, (count,), generator=gen)
                .to(device), masks=BitmapMasks(masks, height, width))
        samples.append(sample)
    return samples


def _seg_samples(batch, height, width, train, device):
    import torch
    from mmengine.structures import PixelData
    from mmseg.structures import SegDataSample
    gen = torch.Generator().manual_seed(0)
    samples = []
    for _ in range(batch):
        sample = SegDataSample(metainfo=dict(
            img_shape=(height, width), ori_shape=(height, width), pad_shape=(height, width)))
        if train:
            sample.gt_sem_seg = PixelData(
                data=torch.randint(0, 150, (1, height, width), generator=gen).to(device))
        samples.append(sample)
    return samples


def build_case(spec, device):
    """Model, input and the step function of one case; also what was built."""
    import torch
    model_info = parse_model(spec['model'])
    height, width = spec['size']
    batch, train = spec['batch'], spec['mode'] == 'train'
    torch.manual_seed(0)
    inputs = torch.randn(batch, 3, height, width, device=device)
    info = {}
    kind = model_info['kind']
    if kind in ('fec', 'dense'):
        from mmfec.models import FEC
        setting_name, setting = fec_setting(spec['size'], spec['fec_setting'])
        model = FEC(model_info['arch'], **setting)
        info['setting'] = f"{setting_name}: proposal_sizes={setting['proposal_sizes']}, " \
                          f"fold_sizes={setting['fold_sizes']}"
    elif kind == 'r50':
        from mmdet.models.backbones import ResNet
        model = ResNet(depth=50)
        info['setting'] = 'mmdet ResNet(depth=50), BN'
    else:
        model, path = build_full_model(kind, spec.get('smoke', False))
        info['setting'] = (path.split('.mim/configs/')[-1] if '.mim/configs/' in path
                           else osp.relpath(path, ROOT))
    model = model.to(device)
    model.train(train)
    info['params'] = sum(p.numel() for p in model.parameters())
    forward = model
    if kind == 'fec' and model_info['variant'] == 'compile':
        forward = torch.compile(model)
    if kind == 'dense':
        from mmfec.testing import dense_fec_forward

        def forward(x):
            return dense_fec_forward(model, x)

    if kind in ('fec', 'dense', 'r50'):
        def run():
            outs = forward(inputs)
            if train:
                sum(o.float().mean() for o in outs).backward()
    else:
        make = _det_samples if kind.startswith('det') else _seg_samples
        samples = make(batch, height, width, train, device)

        def run():
            if not train:
                return model(inputs, samples, mode='tensor')
            losses = model(inputs, samples, mode='loss')
            total = sum(v.sum() if isinstance(v, torch.Tensor) else sum(x.sum() for x in v)
                        for k, v in losses.items() if 'loss' in k)
            total.backward()

    from mmfec.models.layers.pointwise import plain_ops
    plain = model_info['variant'] == 'plain'

    def step():
        with plain_ops(plain):
            if train:
                model.zero_grad(set_to_none=True)
                run()
            else:
                with torch.no_grad():
                    run()
    return model, inputs, step, info


# ====================================================================== memory
class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks',
        'fordblks', 'keepcost')]


def _malloc_in_use():
    """Bytes the C allocator has handed out and not taken back, or None without glibc."""
    try:
        libc = ctypes.CDLL('libc.so.6')
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None

    def in_use():
        info = libc.mallinfo2()
        return info.uordblks + info.hblkhd
    return in_use


def _rss_bytes(pid='self'):
    try:
        with open(f'/proc/{pid}/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, IndexError):
        return None


def traced_peak(step):
    """Run ``step`` once; the peak of C-allocator bytes in use above the level at the
    start, sampled after every aten op (forward and backward)."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    in_use = _malloc_in_use()
    if in_use is None:
        step()
        return None

    class Peak(TorchDispatchMode):
        peak = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            used = in_use()
            if used > self.peak:
                self.peak = used
            return out

    torch.set_grad_enabled(True)
    start = in_use()
    mode = Peak()
    mode.peak = start
    with mode:
        step()
    return mode.peak - start


def _busy_seconds():
    """CPU seconds all cores spent busy since boot (``/proc/stat``), or None."""
    try:
        with open('/proc/stat') as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')


def _own_cpu_seconds():
    """CPU seconds of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def memory_limit_bytes(args, device):
    """The most a case may use: --mem-limit-gib, at most 75% of what is available now."""
    if device == 'cuda':
        import torch
        free, _ = torch.cuda.mem_get_info()
        return min(args.mem_limit_gib * 2**30, 0.9 * free)
    available = None
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    limit = args.mem_limit_gib * 2**30
    return min(limit, 0.75 * available) if available else limit


# ====================================================================== dense estimate
def dense_lower_bound_bytes(arch, size, batch, train, setting_choice):
    """Bytes the dense implementation must hold at once, at least: the one-hot masks (and
    similarities) it saves for the backward, plus its largest temporary (a pooling's
    similarity + mask, or an encoding's ``[b, c, M, N]`` dispatch product). float32."""
    from mmfec.models import FEC
    from mmfec.models.layers.regions import split_span
    _, setting = fec_setting(size, setting_choice)
    model = FEC(arch, **setting)
    height, width = size[0] // 4, size[1] // 4
    saved, temporary = 0, 0
    for stage in range(4):
        if stage > 0:
            layer = model.network[2 * stage - 1]
            rows, cols = layer.fold_size
            per_region = (height // rows) * (width // cols)
            centers = per_region // 4
            elements = batch * rows * cols * centers * per_region
            saved += 4 * elements if train else 0  # the mask, kept by the einsum
            temporary = max(temporary, 2 * 4 * elements)  # similarity + mask
            height, width = (height + 1) // 2, (width + 1) // 2
        for block in model.network[2 * stage]:
            mixer = block.token_mixer
            regions = len(split_span(height, mixer.fold_size[0])) * len(
                split_span(width, mixer.fold_size[1]))
            centers = mixer.proposal_size[0] * mixer.proposal_size[1]
            elements = batch * mixer.heads * centers * height * width  # b * M * n summed
            saved += 3 * 4 * elements if train else 0  # sim, mask, sim * mask
            temporary = max(temporary, 4 * elements * mixer.head_dims)  # dispatch product
            del regions
    return saved + temporary


# ====================================================================== worker
def run_case(spec):
    """Measure one case in this process; returns a result dict."""
    import torch
    device = spec['device']
    if spec.get('threads'):
        torch.set_num_threads(spec['threads'])
    result = dict(spec)
    model, inputs, step, info = build_case(spec, device)
    result.update(info)

    def sync():
        if device == 'cuda':
            torch.cuda.synchronize()

    sync()
    rss_before = _rss_bytes()
    if device == 'cuda':
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated()
    # memory: the first warm-up step (or an extra step when there is no warm-up; in a
    # smoke run the one timed step itself, which then includes the tracing overhead)
    traced = None
    smoke_traced = device == 'cpu' and spec.get('smoke') and spec['warmup'] == 0
    if spec['warmup'] > 0:
        if device == 'cpu':
            traced = traced_peak(step)
        else:
            step()
            sync()
    for _ in range(max(0, spec['warmup'] - 1)):
        step()
    sync()
    times, cpu_times = [], []
    for i in range(spec['repeats']):
        sync()
        wall, cpu = time.perf_counter(), time.process_time()
        if smoke_traced and i == 0:
            traced = traced_peak(step)
        else:
            step()
        sync()
        times.append(time.perf_counter() - wall)
        cpu_times.append(time.process_time() - cpu)
    if device == 'cpu' and traced is None and not smoke_traced:
        traced = traced_peak(step)
    result['times_ms'] = [round(t * 1e3, 2) for t in times]
    result['time_ms'] = round(statistics.median(times) * 1e3, 2)
    result['min_ms'] = round(min(times) * 1e3, 2)
    result['cpu_ms'] = round(statistics.median(cpu_times) * 1e3, 2)
    if device == 'cuda':
        result['peak_mib'] = round((torch.cuda.max_memory_allocated() - cuda_before) / 2**20, 1)
        result['peak_rss_mib'] = None
    else:
        result['peak_mib'] = None if traced is None else round(traced / 2**20, 1)
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        result['peak_rss_mib'] = (round((peak_rss - rss_before) / 2**20, 1)
                                  if spec.get('isolated') and rss_before else None)
    result['status'] = 'ok'
    del model, inputs
    return result


def worker_main(spec_json):
    import warnings
    warnings.filterwarnings('ignore')
    spec = json.loads(spec_json)
    try:
        result = run_case(spec)
    except Exception as error:  # reported as the case's status, not a crash of the run
        result = dict(spec, status='error', error=f'{type(error).__name__}: {error}'[:500])
    print('@@RESULT ' + json.dumps(result), flush=True)


def run_isolated(spec, limit_bytes, timeout):
    """Run a case in a fresh interpreter; kill it if its RSS passes ``limit_bytes``."""
    spec = dict(spec, isolated=True)
    cmd = [sys.executable, osp.abspath(__file__), '--worker', json.dumps(spec)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=ROOT)
    start, killed, peak = time.time(), None, 0
    while proc.poll() is None:
        rss = _rss_bytes(proc.pid) or 0
        peak = max(peak, rss)
        if spec['device'] == 'cpu' and rss > limit_bytes:
            proc.kill()
            killed = f'OOM: RSS passed the {limit_bytes / 2**30:.1f} GiB limit'
        elif time.time() - start > timeout:
            proc.kill()
            killed = f'timeout after {timeout:.0f} s'
        time.sleep(0.1)
    out, err = proc.communicate()
    if killed:
        return dict(spec, status='oom' if killed.startswith('OOM') else 'timeout',
                    error=killed, peak_rss_seen_mib=round(peak / 2**20))
    for line in out.splitlines():
        if line.startswith('@@RESULT '):
            return json.loads(line[len('@@RESULT '):])
    tail = (err or out).strip().splitlines()[-3:]
    return dict(spec, status='error', error=' | '.join(tail)[:500])


# ====================================================================== driver
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
    parser.add_argument('--scaling', action='store_true',
                        help='also train fec-s (and its baselines) at batch 1, 1600x2432 '
                        '(memory-scaling target)')
    parser.add_argument('--repeats', type=int, default=3, help='timed steps (median)')
    parser.add_argument('--warmup', type=int, default=1,
                        help='untimed steps first (the first one is memory-traced)')
    parser.add_argument('--device', choices=['cpu', 'cuda'], default='cpu')
    parser.add_argument('--threads', type=int, default=None,
                        help='torch threads (default: torch default, all cores)')
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
    parser.add_argument('--worker', help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
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


def plan_cases(args):
    """Every case, models before their baselines (the dense estimate uses nothing else)."""
    cases = []
    names = list(dict.fromkeys(args.models + args.baselines))
    for size in args.sizes:
        for batch in args.batches:
            for mode in args.modes:
                for name in names:
                    cases.append(dict(model=name, size=list(size), batch=batch, mode=mode))
    if args.scaling:
        scale = (128, 128) if args.smoke else SCALING_SIZE
        base = (64, 64) if args.smoke else TARGET_SIZE
        for name in names:
            if name in ('fec-s', 'dense-s', 'r50'):
                for size in (base, scale):
                    case = dict(model=name, size=list(size), batch=1, mode='train')
                    if case not in cases:
                        cases.append(case)
    return cases


def machine_info(args):
    import torch
    cpu = platform.processor()
    try:
        with open('/proc/cpuinfo') as f:
            cpu = next(line.split(':', 1)[1].strip() for line in f
                       if line.startswith('model name'))
    except (OSError, StopIteration):
        pass
    mem = None
    try:
        with open('/proc/meminfo') as f:
            mem = round(int(f.readline().split()[1]) / 2**20, 1)
    except (OSError, ValueError, IndexError):
        pass
    info = dict(cpu=cpu, cores=os.cpu_count(), memory_gib=mem, torch=torch.__version__,
                threads=args.threads or torch.get_num_threads(), device=args.device,
                python=platform.python_version())
    if args.device == 'cuda':
        info['gpu'] = torch.cuda.get_device_name()
    return info


def _key(result):
    return (tuple(result['size']), result['batch'], result['mode'])


def compute_ratios(results):
    """Per ok row: time and memory ratios against dense (same arch) and ResNet-50."""
    ok = {(r['model'], _key(r)): r for r in results if r.get('status') == 'ok'}
    for r in results:
        if r.get('status') != 'ok':
            continue
        info = parse_model(r['model'])
        dense = r50 = None
        if info['kind'] == 'fec':
            dense = ok.get(('dense-' + info['arch'][0], _key(r)))
        if info['kind'] in ('fec', 'dense', 'r50'):
            r50 = ok.get(('r50', _key(r)))
        elif info['kind'].endswith('fec'):
            r50 = ok.get((info['kind'].replace('fec', 'r50'), _key(r)))
        for tag, base in (('dense', dense), ('r50', r50)):
            if base is None or base is r:
                continue
            r[f'time_vs_{tag}'] = round(r['time_ms'] / base['time_ms'], 3)
            for mem in ('peak_mib', 'peak_rss_mib'):
                if r.get(mem) and base.get(mem):
                    r[f'{mem.replace("_mib", "")}_vs_{tag}'] = round(r[mem] / base[mem], 3)
    return results


def evaluate_targets(results, smoke=False):
    """The issue's targets, where the rows exist (FEC-S, train, batch 1)."""
    size = (64, 64) if smoke else TARGET_SIZE
    scale = (128, 128) if smoke else SCALING_SIZE

    def row(model, at):
        for r in results:
            if (r['model'] == model and tuple(r['size']) == at and r['batch'] == 1
                    and r['mode'] == 'train'):
                return r
        return None

    fec, dense, r50, big = row('fec-s', size), row('dense-s', size), row('r50', size), \
        row('fec-s', scale)
    targets = []

    def add(name, value, limit, note=''):
        targets.append(dict(target=name, value=value, limit=limit,
                            holds=None if value is None else value <= limit, note=note))

    ok = [x is not None and x.get('status') == 'ok' for x in (fec, dense, r50, big)]
    where = f'{size[0]}x{size[1]}'
    add(f'train time FEC-S / dense ({where})',
        fec.get('time_vs_dense') if ok[0] and ok[1] else None, 0.4)
    for mem, label in (('peak', 'alloc'), ('peak_rss', 'RSS')):
        add(f'train peak memory ({label}) FEC-S / dense ({where})',
            fec.get(f'{mem}_vs_dense') if ok[0] and ok[1] else None, 0.35)
    add(f'train time FEC-S / ResNet-50 ({where})',
        fec.get('time_vs_r50') if ok[0] and ok[2] else None, 1.0)
    for mem, label in (('peak_mib', 'alloc'), ('peak_rss_mib', 'RSS')):
        value = None
        if ok[0] and ok[3] and fec.get(mem) and big.get(mem):
            value = round(big[mem] / fec[mem], 3)
        add(f'train peak memory ({label}) FEC-S {scale[0]}x{scale[1]} / {where}', value, 4.5)
    return targets


COLUMNS = ['model', 'setting', 'input', 'batch', 'mode', 'time ms', 'min ms', 'cpu ms',
           'peak MiB', 'RSS MiB', 'time/dense', 'mem/dense', 'time/R50', 'mem/R50', 'busy']


def _fmt(value, digits=2):
    if value is None:
        return '-'
    if isinstance(value, float):
        return f'{value:.{digits}f}'
    return str(value)


def table_row(r):
    setting = r.get('setting', '')
    setting = setting.split(':')[0] if setting.startswith(('det', 'seg')) else setting
    if r.get('status') != 'ok':
        note = r.get('error', r.get('status'))
        if r.get('estimate_mib'):
            note = f"{r['status']}: needs >= {r['estimate_mib'] / 1024:.1f} GiB"
        cells = [r['model'], setting, 'x'.join(map(str, r['size'])), r['batch'], r['mode'],
                 note] + ['-'] * 9
    else:
        cells = [r['model'], setting, 'x'.join(map(str, r['size'])), r['batch'], r['mode'],
                 _fmt(r['time_ms'], 0), _fmt(r['min_ms'], 0), _fmt(r['cpu_ms'], 0),
                 _fmt(r.get('peak_mib'), 0), _fmt(r.get('peak_rss_mib'), 0),
                 _fmt(r.get('time_vs_dense')), _fmt(r.get('peak_vs_dense')),
                 _fmt(r.get('time_vs_r50')), _fmt(r.get('peak_vs_r50')),
                 _fmt(r.get('other_cores'), 1)]
    return '| ' + ' | '.join(str(c) for c in cells) + ' |'


def print_table(results, targets, out=sys.stdout):
    print('| ' + ' | '.join(COLUMNS) + ' |', file=out)
    print('|' + '---|' * len(COLUMNS), file=out)
    for r in results:
        print(table_row(r), file=out)
    print('', file=out)
    print('| target | value | limit | holds |', file=out)
    print('|---|---|---|---|', file=out)
    for t in targets:
        holds = '-' if t['holds'] is None else ('yes' if t['holds'] else 'NO')
        print(f"| {t['target']} | {_fmt(t['value'], 3)} | {t['limit']} | {holds} |", file=out)


def main(argv=None):
    args = parse_args(argv)
    if args.worker:
        worker_main(args.worker)
        return 0
    import torch
    if args.device == 'cuda' and not torch.cuda.is_available():
        print('error: --device cuda but no CUDA device is available', file=sys.stderr)
        return 2
    log = sys.stderr if args.json == '-' else sys.stdout
    machine = machine_info(args)
    print(f"machine: {machine['cpu']}, {machine['cores']} cores, {machine['memory_gib']} GiB, "
          f"torch {machine['torch']}, {machine['threads']} threads, device {args.device}",
          file=log)
    results = []
    for spec in plan_cases(args):
        spec.update(device=args.device, repeats=args.repeats, warmup=args.warmup,
                    threads=args.threads, fec_setting=args.fec_setting, smoke=args.smoke)
        info = parse_model(spec['model'])
        limit = memory_limit_bytes(args, args.device)
        load_before = os.getloadavg()[0]
        if info['kind'] == 'dense':
            need = dense_lower_bound_bytes(info['arch'], spec['size'], spec['batch'],
                                           spec['mode'] == 'train', args.fec_setting)
            if need > limit:
                result = dict(spec, status='skipped', estimate_mib=round(need / 2**20),
                              error=f'needs >= {need / 2**30:.1f} GiB, limit '
                                    f'{limit / 2**30:.1f} GiB')
                results.append(result)
                print(table_row(result), file=log, flush=True)
                continue
        busy, own, wall = _busy_seconds(), _own_cpu_seconds(), time.time()
        if args.in_process:
            try:
                result = run_case(spec)
            except Exception as error:
                result = dict(spec, status='error', error=f'{type(error).__name__}: {error}')
        else:
            result = run_isolated(spec, limit, args.timeout)
        result['load_before'] = round(load_before, 2)
        result['load_after'] = round(os.getloadavg()[0], 2)
        if busy is not None:  # cores kept busy by other processes during the case
            others = (_busy_seconds() - busy) - (_own_cpu_seconds() - own)
            result['other_cores'] = round(max(0.0, others) / max(1e-6, time.time() - wall), 2)
        results.append(result)
        print(table_row(result), file=log, flush=True)
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
        sys.argv[1:] if argv is None else argv), results=results, targets=targets)
    if args.json == '-':
        print(json.dumps(payload, indent=1))
    elif args.json:
        with open(args.json, 'w') as f:
            json.dump(payload, f, indent=1)
        print(f'results written to {args.json}', file=log)
    return 0


if __name__ == '__main__':
    sys.exit(main())
