"""Ratios, targets and the markdown tables of a benchmark run.

Every FEC row is compared with the dense formulation of the same arch and with two
ResNet-50s, always named: ``r50`` as mmdet's detectors train it (``frozen_stages=1``,
``norm_eval=True``: no gradient for the stem and first stage) and ``r50-unfrozen``
(every layer trained). Full detectors/segmentors are compared with their R50 versions.
Rows are compared only within the same input, batch, mode and precision.
"""
import os
import platform
import sys

import torch

from .cases import RESNETS, parse_model
from .runner import SCALING_SIZE, TARGET_SIZE

# The CPU features that decide the speed of fp32 / bf16 / fp16 GEMMs here.
GEMM_FLAGS = ('avx2', 'fma', 'f16c', 'avx512f', 'avx512_bf16', 'avx512_fp16', 'avx512_vnni',
              'amx_bf16', 'amx_tile')


def cpu_flags():
    """Which of :data:`GEMM_FLAGS` this CPU has, as a space-separated string ('' where
    /proc/cpuinfo cannot be read)."""
    try:
        with open('/proc/cpuinfo') as f:
            flags = next(line.split(':', 1)[1].split() for line in f
                         if line.startswith('flags'))
    except (OSError, StopIteration):
        return ''
    return ' '.join(flag for flag in GEMM_FLAGS if flag in flags)


def machine_info(device, threads=None):
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
    info = dict(cpu=cpu, cpu_flags=cpu_flags(), cores=os.cpu_count(), memory_gib=mem,
                torch=torch.__version__, threads=threads or torch.get_num_threads(),
                device=device, python=platform.python_version())
    capability = getattr(getattr(torch.backends, 'cpu', None), 'get_cpu_capability', None)
    if capability is not None:
        info['cpu_capability'] = capability()
    if device.startswith('cuda'):
        info['gpu'] = torch.cuda.get_device_name()
        info['cuda'] = torch.version.cuda
    return info


def _key(result):
    return (tuple(result['size']), result['batch'], result['mode'],
            result.get('precision', 'fp32'))


# (tag in the result keys, the baseline's model name) for the backbone rows
BACKBONE_BASELINES = (('r50', 'r50'), ('r50u', 'r50-unfrozen'))


def compute_ratios(results):
    """Per ok row: time and memory ratios against dense (same arch) and the ResNet-50s
    (``*_vs_r50``: frozen as in detectors; ``*_vs_r50u``: unfrozen)."""
    ok = {(r['model'], _key(r)): r for r in results if r.get('status') == 'ok'}
    for r in results:
        if r.get('status') != 'ok':
            continue
        info = parse_model(r['model'])
        bases = []
        if info['kind'] == 'fec':
            bases.append(('dense', ok.get(('dense-' + info['arch'][0], _key(r)))))
        if info['kind'] in ('fec', 'dense') or info['kind'] in RESNETS:
            bases += [(tag, ok.get((name, _key(r)))) for tag, name in BACKBONE_BASELINES]
        elif info['kind'].endswith('fec'):
            bases.append(('r50', ok.get((info['kind'].replace('fec', 'r50'), _key(r)))))
        for tag, base in bases:
            if base is None or base is r:
                continue
            r[f'time_vs_{tag}'] = round(r['time_ms'] / base['time_ms'], 3)
            for mem in ('peak_mib', 'peak_rss_mib'):
                if r.get(mem) and base.get(mem):
                    r[f'{mem.replace("_mib", "")}_vs_{tag}'] = round(r[mem] / base[mem], 3)
    return results


def evaluate_targets(results, smoke=False):
    """The performance targets, where the rows exist (FEC-S, train, batch 1, fp32)."""
    size = (64, 64) if smoke else TARGET_SIZE
    scale = (128, 128) if smoke else SCALING_SIZE

    def row(model, at):
        for r in results:
            if (r['model'] == model and tuple(r['size']) == at and r['batch'] == 1
                    and r['mode'] == 'train' and r.get('precision', 'fp32') == 'fp32'):
                return r
        return None

    fec, dense, big = row('fec-s', size), row('dense-s', size), row('fec-s', scale)
    targets = []

    def add(name, value, limit, note=''):
        targets.append(dict(target=name, value=value, limit=limit,
                            holds=None if value is None else value <= limit, note=note))

    def good(r):
        return r is not None and r.get('status') == 'ok'

    where = f'{size[0]}x{size[1]}'
    add(f'train time FEC-S / dense ({where})',
        fec.get('time_vs_dense') if good(fec) and good(dense) else None, 0.4)
    for mem, label in (('peak', 'alloc'), ('peak_rss', 'RSS')):
        add(f'train peak memory ({label}) FEC-S / dense ({where})',
            fec.get(f'{mem}_vs_dense') if good(fec) and good(dense) else None, 0.35)
    for tag, name, label in (('r50', 'r50', 'ResNet-50 frozen_stages=1 as in detectors'),
                             ('r50u', 'r50-unfrozen', 'ResNet-50 unfrozen')):
        base = row(name, size)
        add(f'train time FEC-S / {label} ({where})',
            fec.get(f'time_vs_{tag}') if good(fec) and good(base) else None, 1.0)
    for mem, label in (('peak_mib', 'alloc'), ('peak_rss_mib', 'RSS')):
        value = None
        if good(fec) and good(big) and fec.get(mem) and big.get(mem):
            value = round(big[mem] / fec[mem], 3)
        add(f'train peak memory ({label}) FEC-S {scale[0]}x{scale[1]} / {where}', value, 4.5)
    return targets


COLUMNS = ['model', 'setting', 'input', 'batch', 'mode', 'precision', 'time ms', 'min ms',
           'cpu ms', 'peak MiB', 'RSS MiB', 'time/dense', 'mem/dense', 'time/R50',
           'mem/R50', 'time/R50u', 'busy']


def _fmt(value, digits=2):
    if value is None:
        return '-'
    if isinstance(value, float):
        return f'{value:.{digits}f}'
    return str(value)


def _precision(r):
    precision = r.get('precision', 'fp32')
    return precision if precision == 'fp32' else f"amp {r.get('amp_dtype') or ''}".strip()


def table_row(r):
    setting = r.get('setting', '')
    setting = setting.split(':')[0] if setting.startswith(('det', 'seg')) else setting
    head = [r['model'], setting, 'x'.join(map(str, r['size'])), r['batch'], r['mode'],
            _precision(r)]
    if r.get('status') != 'ok':
        note = r.get('error', r.get('status'))
        if r.get('estimate_mib'):
            note = f"{r['status']}: needs >= {r['estimate_mib'] / 1024:.1f} GiB"
        cells = head + [note] + ['-'] * (len(COLUMNS) - len(head) - 1)
    else:
        cells = head + [
            _fmt(r['time_ms'], 1 if r['time_ms'] < 100 else 0),
            _fmt(r['min_ms'], 1 if r['min_ms'] < 100 else 0), _fmt(r['cpu_ms'], 0),
            _fmt(r.get('peak_mib'), 0), _fmt(r.get('peak_rss_mib'), 0),
            _fmt(r.get('time_vs_dense')), _fmt(r.get('peak_vs_dense')),
            _fmt(r.get('time_vs_r50')), _fmt(r.get('peak_vs_r50')),
            _fmt(r.get('time_vs_r50u')), _fmt(r.get('other_cores'), 1)]
    return '| ' + ' | '.join(str(c) for c in cells) + ' |'


def print_table(results, targets=(), out=sys.stdout):
    print('| ' + ' | '.join(COLUMNS) + ' |', file=out)
    print('|' + '---|' * len(COLUMNS), file=out)
    for r in results:
        print(table_row(r), file=out)
    if targets:
        print('', file=out)
        print('| target | value | limit | holds |', file=out)
        print('|---|---|---|---|', file=out)
        for t in targets:
            holds = '-' if t['holds'] is None else ('yes' if t['holds'] else 'NO')
            print(f"| {t['target']} | {_fmt(t['value'], 3)} | {t['limit']} | {holds} |",
                  file=out)
    print('\nR50 = ResNet-50 as mmdet\'s detectors train it (frozen_stages=1, norm_eval=True); '
          'R50u = ResNet-50 with every layer trained.', file=out)
