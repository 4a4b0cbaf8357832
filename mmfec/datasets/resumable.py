"""A training data loader whose every random choice is a function of (seed, epoch, batch,
sample index), that can start anywhere in its stream without loading what it skips, and
that reports bad samples instead of dying in a worker.

Why: with mmengine's loader, a sample's random flip, crop and resize come from the running
RNG state of whichever worker process draws it. That state depends on how many workers
there are, which worker got which batch, and how often the workers were restarted, so a
run resumed after a kill draws other augmentations than the uninterrupted run would have
(unless ``num_workers=0``). Here every sample is loaded with python's ``random``, numpy's
and torch's generators seeded from ``(seed, rank, epoch, batch number, sample index)``:
the same sample at the same place of the stream gets the same augmentation in any worker,
with any number of workers, persistent or not, before or after a resume. In the main
process (``num_workers=0``) the generators are put back after each sample, so the
model's own random draws (RoI sampling, dropout) see the same stream as with workers.

:func:`make_resumable` rebuilds a DataLoader around these pieces; the training loops of
:mod:`mmfec.engine.runner.loops` use it.
"""
import atexit
import ctypes
import multiprocessing
import os
import random
import signal
import sys
import weakref
from typing import Iterator, List, Optional, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, get_worker_info

STOP = 'stop'
SKIP = 'skip'
_MAX_REPLACEMENTS = 16


class SampleIndex(int):
    """A dataset index that carries the seed its sample is loaded with."""

    def __new__(cls, value: int, seed: int):
        index = super().__new__(cls, value)
        index.seed = seed
        return index

    def __reduce__(self):  # to worker processes (and under the spawn start method)
        return SampleIndex, (int(self), self.seed)


def sample_seed(seed: int, rank: int, epoch: int, batch: int, index: int) -> int:
    """A 32-bit seed for one draw of one sample, the same in every process."""
    entropy = [int(seed) & 0xFFFFFFFF, int(rank), int(epoch), int(batch), int(index)]
    return int(np.random.SeedSequence(entropy).generate_state(1)[0])


def sample_paths(dataset, index: int) -> List[str]:
    """The files behind one sample (image, label map), for error messages."""
    try:
        info = dataset.get_data_info(int(index))
    except Exception:  # noqa: BLE001 - only used to name files
        return []
    return [str(info[key]) for key in ('img_path', 'seg_map_path', 'filename')
            if isinstance(info, dict) and info.get(key)]


class BadSample:
    """What a failed sample load leaves behind: its files and the error's first line."""

    def __init__(self, index: int, paths: Sequence[str], error: BaseException):
        self.index = int(index)
        self.paths = list(paths)
        lines = str(error).strip().splitlines()
        self.message = f'{type(error).__name__}: {lines[-1] if lines else ""}'.rstrip(': ')

    def describe(self) -> str:
        where = ', '.join(self.paths) if self.paths else f'sample {self.index}'
        return f'{where} ({self.message})'


class SeededDataset:
    """A dataset seen through a proxy: ``proxy[SampleIndex]`` loads the sample with the
    generators seeded from the index's seed, and returns ``(data, bad_samples)``.

    Args:
        dataset: the built dataset (mmengine BaseDataset or any map-style dataset).
        bad_samples (str): ``'stop'``: a sample that fails to load gives ``data=None``
            (the loop stops with an error naming the file); ``'skip'``: the next samples of
            the data set are tried in its place (same seed), up to 16.
    """

    def __init__(self, dataset, bad_samples: str = STOP):
        if bad_samples not in (STOP, SKIP):
            raise ValueError(f'bad_samples must be {STOP!r} or {SKIP!r}, not {bad_samples!r}')
        self.dataset = dataset
        self.bad_samples = bad_samples

    def __len__(self):
        return len(self.dataset)

    def __getattr__(self, name):  # metainfo, get_data_info, ... of the dataset
        if name == 'dataset' or name.startswith('__'):
            raise AttributeError(name)
        return getattr(self.dataset, name)

    def __getitem__(self, index):
        seed = getattr(index, 'seed', None)
        if seed is None:
            return self._load(int(index)), []
        saved = _capture() if get_worker_info() is None else None
        try:
            return self._load_seeded(int(index), seed)
        finally:
            if saved is not None:
                _restore(saved)

    def _load_seeded(self, index: int, seed: int):
        failures = []
        tries = 1 if self.bad_samples == STOP else _MAX_REPLACEMENTS + 1
        for attempt in range(tries):
            candidate = (index + attempt) % len(self.dataset)
            _seed_all(seed)
            try:
                return self.dataset[candidate], failures
            except Exception as error:  # noqa: BLE001 - reported, not swallowed
                failures.append(BadSample(candidate, sample_paths(self.dataset, candidate),
                                          error))
        return None, failures

    def _load(self, index):
        return self.dataset[index]


def _seed_all(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def _capture():
    cuda = torch.cuda.get_rng_state_all() \
        if torch.cuda.is_available() and torch.cuda.is_initialized() else None
    return random.getstate(), np.random.get_state(), torch.get_rng_state(), cuda


def _restore(state) -> None:
    python, numpy, cpu, cuda = state
    random.setstate(python)
    np.random.set_state(numpy)
    torch.set_rng_state(cpu)
    if cuda is not None:
        torch.cuda.set_rng_state_all(cuda)


class ReportingCollate:
    """Collates the ``data`` of ``(data, bad_samples)`` items; returns ``(batch, bad)``,
    ``batch`` None when a sample has no data (``bad_samples='stop'``)."""

    def __init__(self, collate_fn):
        self.collate_fn = collate_fn

    def __call__(self, items):
        bad = [failure for _, failures in items for failure in failures]
        if any(data is None for data, _ in items):
            return None, bad
        return self.collate_fn([data for data, _ in items]), bad


class ResumableBatchSampler:
    """Wraps a batch sampler: tags every index with its seed and can start its next pass
    ``skip`` batches in, by drawing indices only (no sample is loaded).

    ``epoch`` (set by the loop) and the batch's number in the pass go into the seeds; in
    one endless pass (InfiniteSampler) the batch number is the iteration.
    """

    def __init__(self, batch_sampler, seed: int, rank: int):
        self.batch_sampler = batch_sampler
        self.seed = seed
        self.rank = rank
        self.epoch = 0
        self.skip = 0

    @property
    def sampler(self):  # DistSamplerSeedHook calls batch_sampler.sampler.set_epoch
        return self.batch_sampler.sampler

    def __len__(self):
        return len(self.batch_sampler)

    def __iter__(self) -> Iterator[List[SampleIndex]]:
        skip, self.skip = self.skip, 0  # once: the next pass starts at the beginning
        seed, epoch = self.seed, self.epoch
        if hasattr(self.sampler, '_indices_of_rank'):
            # mmengine's InfiniteSampler keeps one generator for all its iterators:
            # every pass here starts its stream from the beginning
            self.sampler.indices = self.sampler._indices_of_rank()
        for number, batch in enumerate(self.batch_sampler):
            if number < skip:
                continue
            yield [SampleIndex(i, sample_seed(seed, self.rank, epoch, number, i))
                   for i in batch]
        self.epoch = epoch + 1  # a finite sampler restarted by an endless iterator


class _WorkerInit:
    """Data workers ignore the pre-emption signals: the main process decides when to
    stop, and a worker killed by Slurm's SIGTERM would stop training with an error. On
    Linux they also die with the process that started them (kill -9, the OOM killer)
    instead of living on as orphans blocked on a pipe that nobody reads."""

    def __init__(self, init_fn):
        self.init_fn = init_fn

    def __call__(self, worker_id):
        for name in ('SIGTERM', 'SIGUSR1'):
            if hasattr(signal, name):
                signal.signal(getattr(signal, name), signal.SIG_IGN)
        _die_with_parent()
        if self.init_fn is not None:
            self.init_fn(worker_id)


_PR_SET_PDEATHSIG = 1  # from <linux/prctl.h>


def _die_with_parent() -> None:
    """Ask the kernel for SIGKILL when the parent dies (it cannot be ignored)."""
    parent = multiprocessing.parent_process()
    if not sys.platform.startswith('linux') or parent is None:
        return
    try:
        ctypes.CDLL(None).prctl(_PR_SET_PDEATHSIG, int(signal.SIGKILL))
    except (OSError, AttributeError):  # no prctl: orphans stay possible, as with torch
        return
    if os.getppid() != parent.pid:  # the parent died before the request
        os._exit(1)


class _ResumableDataLoader(DataLoader):
    """A DataLoader whose worker processes never outlive it, nor keep the interpreter from
    exiting.

    Its workers ignore SIGTERM (above). That disables two of torch's fallbacks, and both
    hang: (1) when an iterator is collected as part of a reference cycle (a Runner, a
    traceback), the garbage collector closes its index queues before the iterator's
    ``__del__`` sends the workers their stop sentinel, so the sentinel never arrives and
    torch's ``terminate()`` (SIGTERM) is ignored; (2) multiprocessing's exit handler
    terminates daemonic children with SIGTERM and then joins them, forever.
    :meth:`shutdown_workers` (which the training loops call when they end, normally or by
    an exception) stops the workers while the queues still work, and kills any that do not
    stop; an exit handler does the same for what is left when the interpreter exits. It
    runs before multiprocessing's: atexit calls handlers last-in first-out, and
    multiprocessing registered its own when torch imported it.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._live_iterators = weakref.WeakSet()

    def _get_iterator(self):
        iterator = super()._get_iterator()
        if hasattr(iterator, '_shutdown_workers'):
            self._live_iterators.add(iterator)
            _LIVE_ITERATORS.add(iterator)
            _WORKERS.update(iterator._workers)
        return iterator

    def shutdown_workers(self) -> None:
        """Stop this loader's worker processes now (persistent ones included)."""
        for iterator in list(self._live_iterators):
            _shut_down(iterator)
        self._iterator = None  # a later pass starts new workers


_LIVE_ITERATORS = weakref.WeakSet()
_WORKERS = weakref.WeakSet()  # multiprocessing keeps each in its children until joined
_GRACE_S = 5.0


def _shut_down(iterator) -> None:
    iterator._shutdown_workers()  # torch's: sentinel, join, SIGTERM (ignored here)
    _kill_stragglers(iterator._workers)


def _kill_stragglers(workers) -> None:
    for worker in workers:
        if worker.is_alive():
            worker.kill()
            worker.join(_GRACE_S)


@atexit.register
def _shutdown_at_exit():
    for iterator in list(_LIVE_ITERATORS):
        try:
            _shut_down(iterator)
        except Exception:  # noqa: BLE001 - exiting anyway; the stragglers are killed below
            pass
    _kill_stragglers(list(_WORKERS))


def make_resumable(loader: DataLoader, seed: Optional[int], rank: int,
                   bad_samples: str = STOP) -> DataLoader:
    """A DataLoader like ``loader`` (same dataset, sampler, workers, collate), with seeded
    samples, a :class:`ResumableBatchSampler` and bad-sample reports (see the module).

    Its iterators yield ``(batch, bad_samples)``. It draws its worker base seed from its
    own generator, so starting an iterator does not consume the global torch RNG.
    """
    if loader.batch_sampler is None:
        raise ValueError('the training data loader needs a batch sampler')
    seed = 0 if seed is None else int(seed)
    batch_sampler = ResumableBatchSampler(loader.batch_sampler, seed, rank)
    kwargs = dict(num_workers=loader.num_workers, pin_memory=loader.pin_memory,
                  timeout=loader.timeout, worker_init_fn=_WorkerInit(loader.worker_init_fn),
                  multiprocessing_context=loader.multiprocessing_context,
                  generator=torch.Generator().manual_seed(seed),
                  persistent_workers=loader.persistent_workers)
    if loader.num_workers > 0:
        kwargs['prefetch_factor'] = loader.prefetch_factor
    return _ResumableDataLoader(SeededDataset(loader.dataset, bad_samples),
                                batch_sampler=batch_sampler,
                                collate_fn=ReportingCollate(loader.collate_fn), **kwargs)
