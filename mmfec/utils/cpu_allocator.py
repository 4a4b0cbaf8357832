"""Keep freed memory in the process on CPU, so large tensors do not page-fault every step.

glibc's ``malloc`` serves every block over 32 MiB (and, by default, many smaller ones)
with a fresh ``mmap`` and gives it back with ``munmap`` when it is freed. A training step
on CPU allocates and frees the same large activations every iteration, so each one is
faulted in again, page by page, and zero-filled by the kernel: on the 2-core AVX2 EPYC of
docs/performance.md a GELU over a ``[256, 60800]`` fp32 map took 44-51 ms into a fresh
tensor and 13-15 ms with the memory kept (the arithmetic is the same). Intel's PyTorch
CPU launchers preload jemalloc or tcmalloc for the same reason; this does it with glibc
alone: ``mallopt(M_MMAP_MAX, 0)`` (no block of the main heap is served by ``mmap``) and a 2 GiB
``M_TRIM_THRESHOLD`` (freed memory stays in the heap for the next step).

The price is memory: what a step frees stays with the process. In docs/performance.md
the peak RSS of an inference step grew by a quarter to twice, a training step's by up to
a fifth; the allocated peak did not change. ``MMFEC_CPU_ALLOCATOR=default`` keeps
glibc's behaviour; a preloaded jemalloc or tcmalloc is left alone. (Threads other than
the main one may still ``mmap`` blocks over 64 MiB; torch's CPU forward and backward
allocate on the calling thread.)
"""
import ctypes
import os
import platform
import sys

ENV = 'MMFEC_CPU_ALLOCATOR'
M_TRIM_THRESHOLD = -1  # glibc's mallopt parameters (malloc.h)
M_MMAP_MAX = -4
TRIM_THRESHOLD = 2**31 - 1  # mallopt takes a C int

_applied = None


def _preloaded_allocator():
    preload = os.environ.get('LD_PRELOAD', '')
    return next((name for name in ('jemalloc', 'tcmalloc', 'mimalloc') if name in preload), None)


def default_allocator() -> str:
    """What serves the process's memory when :func:`keep_freed_memory` is not called."""
    preloaded = _preloaded_allocator()
    if preloaded:
        return f'{preloaded} (preloaded)'
    if sys.platform.startswith('linux') and platform.libc_ver()[0] == 'glibc':
        return 'glibc default'
    return 'system default (not glibc)'


def keep_freed_memory() -> str:
    """Make glibc keep freed memory for reuse (see the module docstring); idempotent.

    Returns what was done, in words: ``'kept'`` when set here or before, else why not
    (``MMFEC_CPU_ALLOCATOR=default``, another allocator preloaded, not glibc).
    """
    global _applied
    if _applied is not None:
        return _applied
    default = default_allocator()
    if os.environ.get(ENV, 'keep') == 'default':
        _applied = f'{default} ({ENV}=default)'
    elif default != 'glibc default':
        _applied = default
    else:
        mallopt = ctypes.CDLL(None).mallopt
        mallopt.argtypes = (ctypes.c_int, ctypes.c_int)
        # the trim threshold first: if mallopt refused it, nothing has changed yet
        if mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD) != 1:
            _applied = 'glibc default (mallopt refused)'
        elif mallopt(M_MMAP_MAX, 0) != 1:
            _applied = 'glibc default, freed memory kept (mallopt refused M_MMAP_MAX)'
        else:
            _applied = 'kept'
    return _applied


def use_allocator(choice: str) -> str:
    """``'keep'``: :func:`keep_freed_memory`; ``'default'``: leave the allocator as it is.
    Returns what serves the memory, in words (the benchmark and the profiler record it)."""
    return keep_freed_memory() if choice == 'keep' else default_allocator()


def keep_freed_memory_on_cpu(device: str) -> str:
    """:func:`keep_freed_memory` when the work runs on the CPU; on an accelerator the
    large tensors live in its own caching allocator and nothing is changed."""
    if device != 'cpu':
        return 'not on CPU'
    return keep_freed_memory()
