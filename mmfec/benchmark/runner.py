"""Run benchmark cases: each in a fresh interpreter (per-case RSS, an OOM guard) or in
this process (GPU, smoke runs), timing ``repeats`` steps after ``warmup`` ones.

``python -m mmfec.benchmark.runner --worker SPEC_JSON`` is the fresh-interpreter side.
"""
import json
import os
import os.path as osp
import statistics
import subprocess
import sys
import time
import warnings

import torch

from mmfec.utils.cpu_allocator import use_allocator

from . import memory
from .cases import build_case, dense_lower_bound_bytes, parse_model

TARGET_SIZE = (800, 1216)
SCALING_SIZE = (1600, 2432)


def run_case(spec):
    """Measure one case in this process; returns a result dict (the spec plus numbers)."""
    device = spec['device']
    cuda = device.startswith('cuda')
    if spec.get('threads'):
        torch.set_num_threads(spec['threads'])
    result = dict(spec)
    if not cuda:  # 'keep' as tools/train.py and test.py run; 'default': glibc's own
        result['allocator'] = use_allocator(spec.get('allocator_requested', 'keep'))
    model, inputs, step, info = build_case(spec)
    result.update(info)

    def sync():
        if cuda:
            torch.cuda.synchronize()

    sync()
    rss_before = memory.rss_bytes()
    if cuda:
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        cuda_before = torch.cuda.memory_allocated()
    # memory: the first warm-up step (or an extra step when there is no warm-up; in a
    # smoke run the one timed step itself, which then includes the tracing overhead)
    traced = None
    smoke_traced = not cuda and spec.get('smoke') and spec['warmup'] == 0
    if spec['warmup'] > 0:
        if not cuda:
            traced = memory.traced_peak(step)
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
            traced = memory.traced_peak(step)
        else:
            step()
        sync()
        times.append(time.perf_counter() - wall)
        cpu_times.append(time.process_time() - cpu)
    if not cuda and traced is None and not smoke_traced:
        traced = memory.traced_peak(step)
    result['times_ms'] = [round(t * 1e3, 2) for t in times]
    result['time_ms'] = round(statistics.median(times) * 1e3, 2)
    result['min_ms'] = round(min(times) * 1e3, 2)
    result['cpu_ms'] = round(statistics.median(cpu_times) * 1e3, 2)
    if cuda:
        result['peak_mib'] = round((torch.cuda.max_memory_allocated() - cuda_before) / 2**20, 1)
        result['peak_rss_mib'] = None
    else:
        result['peak_mib'] = None if traced is None else round(traced / 2**20, 1)
        result['peak_rss_mib'] = (round((memory.peak_rss_bytes() - rss_before) / 2**20, 1)
                                  if spec.get('isolated') and rss_before else None)
    result['status'] = 'ok'
    del model, inputs
    if cuda:
        torch.cuda.empty_cache()
    return result


def run_safely(spec):
    """:func:`run_case`, with an error (CUDA out of memory included) as the case's status."""
    try:
        return run_case(spec)
    except Exception as error:  # reported as the case's status, not a crash of the run
        status = 'oom' if 'out of memory' in str(error).lower() else 'error'
        if status == 'oom' and spec['device'].startswith('cuda'):
            torch.cuda.empty_cache()
        return dict(spec, status=status, error=f'{type(error).__name__}: {error}'[:500])


def worker_main(spec_json):
    warnings.filterwarnings('ignore')
    print('@@RESULT ' + json.dumps(run_safely(json.loads(spec_json))), flush=True)


def run_isolated(spec, limit_bytes, timeout):
    """Run a case in a fresh interpreter; kill it if its RSS passes ``limit_bytes``."""
    spec = dict(spec, isolated=True)
    package_root = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
    env = dict(os.environ)
    env['PYTHONPATH'] = os.pathsep.join(p for p in (package_root, env.get('PYTHONPATH')) if p)
    cmd = [sys.executable, '-m', 'mmfec.benchmark.runner', '--worker', json.dumps(spec)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env)
    start, killed, peak = time.time(), None, 0
    while proc.poll() is None:
        rss = memory.rss_bytes(proc.pid) or 0
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


def plan_cases(models, baselines, sizes, batches, modes, precisions=('fp32',), scaling=False,
               smoke=False):
    """Every case, models before their baselines (the dense estimate uses nothing else)."""
    cases = []
    names = list(dict.fromkeys(list(models) + list(baselines)))
    for size in sizes:
        for batch in batches:
            for precision in precisions:
                for mode in modes:
                    for name in names:
                        cases.append(dict(model=name, size=list(size), batch=batch, mode=mode,
                                          precision=precision))
    if scaling:
        scale = (128, 128) if smoke else SCALING_SIZE
        base = (64, 64) if smoke else TARGET_SIZE
        for name in names:
            if name in ('fec-s', 'dense-s', 'r50', 'r50-unfrozen'):
                for size in (base, scale):
                    case = dict(model=name, size=list(size), batch=1, mode='train',
                                precision='fp32')
                    if case not in cases:
                        cases.append(case)
    return cases


def run_cases(cases, common, mem_limit_gib=16.0, timeout=1800, in_process=False,
              on_result=None, deadline=None):
    """Run every case (``common`` is merged into each: device, repeats, warmup, ...).

    The dense formulation is skipped, with its estimate, where its analytic lower bound
    on memory passes the limit; with ``deadline`` (a ``time.time()`` value) the cases
    left when it passes are reported as skipped. ``on_result(result)`` is called per case.
    """
    results = []
    for spec in cases:
        spec = dict(spec, **common)
        info = parse_model(spec['model'])
        limit = memory.memory_limit_bytes(mem_limit_gib, spec['device'])
        result = None
        if deadline is not None and time.time() > deadline:
            result = dict(spec, status='skipped', error='time budget spent')
        elif info['kind'] == 'dense':
            need = dense_lower_bound_bytes(info['arch'], spec['size'], spec['batch'],
                                           spec['mode'] == 'train',
                                           spec.get('fec_setting', 'auto'))
            if need > limit:
                result = dict(spec, status='skipped', estimate_mib=round(need / 2**20),
                              error=f'needs >= {need / 2**30:.1f} GiB, limit '
                                    f'{limit / 2**30:.1f} GiB')
        if result is None:
            load_before = os.getloadavg()[0]
            busy, own, wall = memory.busy_seconds(), memory.own_cpu_seconds(), time.time()
            result = run_safely(spec) if in_process else run_isolated(spec, limit, timeout)
            result['load_before'] = round(load_before, 2)
            result['load_after'] = round(os.getloadavg()[0], 2)
            if busy is not None:  # cores kept busy by other processes during the case
                others = (memory.busy_seconds() - busy) - (memory.own_cpu_seconds() - own)
                result['other_cores'] = round(max(0.0, others) / max(1e-6, time.time() - wall),
                                              2)
        results.append(result)
        if on_result is not None:
            on_result(result)
    return results


if __name__ == '__main__':
    if len(sys.argv) == 3 and sys.argv[1] == '--worker':
        worker_main(sys.argv[2])
    else:
        sys.exit('usage: python -m mmfec.benchmark.runner --worker SPEC_JSON')
