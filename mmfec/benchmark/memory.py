"""Peak memory of a step and the load other processes put on the machine.

On GPU the peak is ``torch.cuda.max_memory_allocated``. On CPU there are two measures:
(a) "alloc": the most bytes the C allocator held (glibc ``mallinfo2``: in-use heap plus
mmapped blocks), sampled after every aten op of one step, the CPU analogue of
``max_memory_allocated`` (no caching, no fragmentation); (b) "RSS": the process's peak
resident set minus its resident set before the first step, what the OS had to provide
(meaningful when each case runs in a fresh process).
"""
import ctypes
import os
import resource

import torch
from torch.utils._python_dispatch import TorchDispatchMode


class _MallInfo2(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in (
        'arena', 'ordblks', 'smblks', 'hblks', 'hblkhd', 'usmblks', 'fsmblks', 'uordblks',
        'fordblks', 'keepcost')]


def malloc_in_use():
    """A function returning the bytes the C allocator has handed out and not taken back,
    or None without glibc."""
    try:
        libc = ctypes.CDLL('libc.so.6')
        libc.mallinfo2.restype = _MallInfo2
    except (OSError, AttributeError):
        return None

    def in_use():
        info = libc.mallinfo2()
        return info.uordblks + info.hblkhd
    return in_use


def rss_bytes(pid='self'):
    """Resident set of a process now, or None."""
    try:
        with open(f'/proc/{pid}/statm') as f:
            return int(f.read().split()[1]) * os.sysconf('SC_PAGE_SIZE')
    except (OSError, ValueError, IndexError):
        return None


def peak_rss_bytes():
    """This process's peak resident set so far."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def traced_peak(step):
    """Run ``step`` once; the peak of C-allocator bytes in use above the level at the
    start, sampled after every aten op (forward and backward). None without glibc."""
    in_use = malloc_in_use()
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


def busy_seconds():
    """CPU seconds all cores spent busy since boot (``/proc/stat``), or None."""
    try:
        with open('/proc/stat') as f:
            fields = [int(v) for v in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    return (sum(fields[:8]) - idle) / os.sysconf('SC_CLK_TCK')


def own_cpu_seconds():
    """CPU seconds of this process and its finished children."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def memory_limit_bytes(limit_gib, device):
    """The most a case may use: ``limit_gib``, at most 75% of the memory available now
    (90% of the free GPU memory on CUDA)."""
    if device.startswith('cuda'):
        free, _ = torch.cuda.mem_get_info()
        return min(limit_gib * 2**30, 0.9 * free)
    available = None
    try:
        with open('/proc/meminfo') as f:
            for line in f:
                if line.startswith('MemAvailable:'):
                    available = int(line.split()[1]) * 1024
    except OSError:
        pass
    limit = limit_gib * 2**30
    return min(limit, 0.75 * available) if available else limit
