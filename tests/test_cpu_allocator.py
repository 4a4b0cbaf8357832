"""On CPU the tools keep freed memory in the process (mmfec.utils.cpu_allocator): a large
tensor allocated again is not faulted in again, page by page."""
import json
import os
import platform
import subprocess
import sys

import pytest

from mmfec.utils.cpu_allocator import keep_freed_memory_on_cpu

GLIBC = sys.platform.startswith('linux') and platform.libc_ver()[0] == 'glibc'
PAGES = 64 * 2**20 // 4096  # one 64 MiB tensor

# Fills a 64 MiB tensor five times (each one freed before the next); prints the minor
# page faults of the last four rounds and what keep_freed_memory said. Transparent huge
# pages are turned off for the process (prctl PR_SET_THP_DISABLE), so that every 4 KiB
# page of a fresh mapping faults, whatever the host's THP setting.
FAULTS = """
import ctypes, json, resource, sys
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)
import torch
from mmfec.utils.cpu_allocator import keep_freed_memory
said = keep_freed_memory() if sys.argv[1] == 'keep' else 'not called'
torch.full((16 * 2**20,), 1.0).sum()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(4):
    torch.full((16 * 2**20,), 1.0).sum()
faults = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
print(json.dumps(dict(said=said, faults_per_round=faults / 4)))
"""


# What would change the allocator under the test's feet
ALLOCATOR_ENV = ('MMFEC_CPU_ALLOCATOR', 'LD_PRELOAD', 'GLIBC_TUNABLES', 'MALLOC_MMAP_MAX_',
                 'MALLOC_TRIM_THRESHOLD_', 'MALLOC_MMAP_THRESHOLD_', 'MALLOC_TOP_PAD_')


def _faults(mode, **env):
    clean = {k: v for k, v in os.environ.items() if k not in ALLOCATOR_ENV}
    proc = subprocess.run([sys.executable, '-c', FAULTS, mode], capture_output=True, text=True,
                          env=dict(clean, **env), timeout=120, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.skipif(not GLIBC, reason='glibc malloc only')
def test_kept_memory_is_not_faulted_in_again():
    kept = _faults('keep')
    assert kept['said'] == 'kept'
    assert kept['faults_per_round'] < 0.05 * PAGES


@pytest.mark.skipif(not GLIBC, reason='glibc malloc only')
def test_without_it_every_round_faults_the_tensor_in_again():
    assert _faults('none')['faults_per_round'] > 0.5 * PAGES


@pytest.mark.skipif(not GLIBC, reason='glibc malloc only')
def test_the_environment_variable_keeps_glibcs_default():
    said = _faults('keep', MMFEC_CPU_ALLOCATOR='default')
    assert said['said'].startswith('glibc default')
    assert said['faults_per_round'] > 0.5 * PAGES


def test_nothing_changes_off_the_cpu():
    assert keep_freed_memory_on_cpu('cuda') == 'not on CPU'


@pytest.mark.skipif(not GLIBC, reason='glibc malloc only')
def test_the_benchmark_records_the_allocator(tmp_path):
    out = tmp_path / 'bench.json'
    bench = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                         'tools', 'benchmark.py')
    subprocess.run([sys.executable, bench, '--smoke', '--models', 'fec-s', '--baselines',
                    'r50', '--modes', 'infer', '--allocator', 'default', '--json', str(out)],
                   check=True, capture_output=True, timeout=600)
    assert {r['allocator'] for r in json.loads(out.read_text())['results']} == {'glibc default'}
