"""Training loops that resume exactly and fast, and stop cleanly on a bad sample.

Why: mmengine 0.10.7's loops (1) let the data workers' running RNG states decide each
sample's augmentation, so a resumed run sees other augmentations than the uninterrupted
one whenever there are workers; (2) resume an iteration-based run by loading and
augmenting every batch it already trained on ("Advance dataloader N steps": hours at
iteration 72,000 of ADE20K), and an epoch-based run from the start of the epoch; and (3)
die with a long traceback from a data worker when one image cannot be read.

:class:`ExactEpochBasedTrainLoop` and :class:`ExactIterBasedTrainLoop` are mmengine's
loops with the training data loader rebuilt by :func:`mmfec.datasets.resumable.make_resumable`:

* every sample is loaded with generators seeded from (seed, rank, epoch, batch number,
  sample index), whatever worker loads it;
* a resumed run starts its sampler's stream where the checkpoint left it, by drawing
  indices only (iteration-based: at the checkpoint's iteration; epoch-based: in the
  middle of the epoch when the checkpoint was written there, e.g. on pre-emption);
* a sample that cannot be loaded stops training with one line naming its file and the
  pre-flight check (``bad_samples='stop'``, the default), or (``bad_samples='skip'``) is
  replaced by the next sample of the data set, logged and counted, and training stops
  once more than ``max_bad_share`` of the data set turned out bad.

Use in a config (mmfec's configs do)::

    train_cfg = dict(type='ExactIterBasedTrainLoop')    # or ExactEpochBasedTrainLoop
    train_cfg = dict(type='ExactEpochBasedTrainLoop', bad_samples='skip', max_bad_share=0.01)
"""
import logging
import os.path as osp

from mmengine.dataset import InfiniteSampler
from mmengine.dist import get_dist_info
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop, IterBasedTrainLoop
from mmengine.runner.loops import _InfiniteDataloaderIterator

from mmfec.datasets.resumable import SKIP, STOP, make_resumable
from mmfec.engine.hooks.rng_state_hook import RNGStateHook
from mmfec.registry import register_everywhere
from mmfec.utils.cli import UsageError

CHECK_COMMAND = 'python tools/check_data.py'


class BadSampleError(UsageError):
    """A training sample cannot be loaded (printed by mmfec's tools as one line)."""


def _build_loader(runner, dataloader, bad_samples):
    if isinstance(dataloader, dict):
        diff_rank_seed = runner._randomness_cfg.get('diff_rank_seed', False)
        dataloader = runner.build_dataloader(dataloader, seed=runner.seed,
                                             diff_rank_seed=diff_rank_seed)
    rank, _ = get_dist_info()
    return make_resumable(dataloader, runner.seed, rank, bad_samples)


class _BadSampleBook:
    """What the loops do with the bad-sample reports that come with each batch."""

    def __init__(self, runner, policy: str, max_share: float):
        if policy not in (STOP, SKIP):
            raise UsageError(f'train_cfg.bad_samples must be {STOP!r} or {SKIP!r}, '
                             f'not {policy!r}')
        self.runner = runner
        self.policy = policy
        self.max_share = float(max_share)
        self.bad = {}  # sample index -> description

    def _check_command(self):
        config = getattr(self.runner.cfg, 'filename', None) or 'CONFIG'
        return f'{CHECK_COMMAND} {osp.relpath(config) if osp.isabs(config) else config}'

    def batch(self, item, dataset_size: int):
        """The batch of ``item`` = (batch, bad samples), after dealing with the reports."""
        batch, failures = item
        for failure in failures:
            if self.policy == STOP:
                raise BadSampleError(
                    f'cannot load training sample {failure.describe()}; check every file '
                    f'of the data set with: {self._check_command()} (or skip bad samples: '
                    "--cfg-options train_cfg.bad_samples=skip)")
            if failure.index in self.bad:
                continue
            self.bad[failure.index] = failure.describe()
            limit = self.max_share * dataset_size
            print_log(f'skipped bad training sample {failure.describe()}: '
                      f'{len(self.bad)} bad of {dataset_size} so far (training stops above '
                      f'{self.max_share:.2%})', logger='current', level=logging.WARNING)
            if len(self.bad) > limit:
                raise BadSampleError(
                    f'{len(self.bad)} of {dataset_size} training samples are bad, more than '
                    f'train_cfg.max_bad_share={self.max_share:g}; list them all with: '
                    f'{self._check_command()}')
        if batch is None:  # 'skip' found no good sample among the replacements either
            raise BadSampleError(f'cannot load training samples {failures[0].describe()} '
                                 f'and the ones after it; check the data set with: '
                                 f'{self._check_command()}')
        return batch


def _sync_seed(runner, loader) -> None:
    """After a resume the Runner's seed is the checkpoint's; the sampler was built before."""
    seed = runner.seed
    loader.batch_sampler.seed = seed
    RNGStateHook._set_sampler_seed(runner, seed)


class ExactEpochBasedTrainLoop(EpochBasedTrainLoop):
    """EpochBasedTrainLoop with seeded samples, mid-epoch resume by index and bad-sample
    handling (see the module). Extra args: ``bad_samples`` ('stop' or 'skip'),
    ``max_bad_share`` (share of the data set that may be bad under 'skip')."""

    def __init__(self, runner, dataloader, max_epochs: int, val_begin: int = 1,
                 val_interval: int = 1, dynamic_intervals=None, bad_samples: str = STOP,
                 max_bad_share: float = 0.01):
        self._bad_book = _BadSampleBook(runner, bad_samples, max_bad_share)
        super().__init__(runner, _build_loader(runner, dataloader, bad_samples), max_epochs,
                         val_begin, val_interval, dynamic_intervals)

    def run(self):
        _sync_seed(self.runner, self.dataloader)
        try:
            return super().run()
        finally:  # no worker outlives training (see _ResumableDataLoader)
            self.dataloader.shutdown_workers()

    def run_epoch(self) -> None:
        self.runner.call_hook('before_train_epoch')
        self.runner.model.train()
        sampler = self.dataloader.batch_sampler
        done = max(0, self._iter - self._epoch * len(self.dataloader))
        if done:
            print_log(f'resuming in epoch {self._epoch + 1} after its batch {done}: the '
                      'sampler skips the batches already trained, by index (no sample is '
                      'loaded)', logger='current')
        sampler.epoch, sampler.skip = self._epoch, done
        size = len(self.dataloader.dataset)
        for idx, item in enumerate(self.dataloader, start=done):
            self.run_iter(idx, self._bad_book.batch(item, size))
        self.runner.call_hook('after_train_epoch')
        self._epoch += 1


class ExactIterBasedTrainLoop(IterBasedTrainLoop):
    """IterBasedTrainLoop with seeded samples, resume by index (time independent of the
    iteration reached) and bad-sample handling (see the module). Extra args as
    :class:`ExactEpochBasedTrainLoop`."""

    def __init__(self, runner, dataloader, max_iters: int, val_begin: int = 1,
                 val_interval: int = 1000, dynamic_intervals=None, bad_samples: str = STOP,
                 max_bad_share: float = 0.01):
        self._bad_book = _BadSampleBook(runner, bad_samples, max_bad_share)
        super().__init__(runner, _build_loader(runner, dataloader, bad_samples), max_iters,
                         val_begin, val_interval, dynamic_intervals)

    def _start_stream(self) -> None:
        """Point the loader's next pass at iteration ``self._iter``, by index."""
        sampler = self.dataloader.batch_sampler
        if isinstance(sampler.sampler, InfiniteSampler):
            passes, skip = 0, self._iter
        else:  # a finite sampler, restarted by mmengine's iterator at each pass
            passes, skip = divmod(self._iter, len(self.dataloader))
            if hasattr(sampler.sampler, 'set_epoch'):
                sampler.sampler.set_epoch(passes)
        sampler.epoch, sampler.skip = passes, skip
        self.dataloader_iterator = _InfiniteDataloaderIterator(self.dataloader)
        self.dataloader_iterator._epoch = passes

    def run(self):
        try:
            return self._run()
        finally:  # no worker outlives training (see _ResumableDataLoader)
            self.dataloader.shutdown_workers()

    def _run(self):
        self.runner.call_hook('before_train')
        # mmengine treats an iteration-based run as one epoch, and so does this loop
        self.runner.call_hook('before_train_epoch')
        _sync_seed(self.runner, self.dataloader)
        if self._iter > 0:
            print_log(f'resuming at iteration {self._iter}: the sampler skips the '
                      f'{self._iter} batches already trained, by index (no sample is '
                      'loaded)', logger='current')
        self._start_stream()
        size = len(self.dataloader.dataset)
        while self._iter < self._max_iters and not self.stop_training:
            self.runner.model.train()
            data_batch = self._bad_book.batch(next(self.dataloader_iterator), size)
            self.run_iter(data_batch)
            self._decide_current_val_interval()
            if (self.runner.val_loop is not None and self._iter >= self.val_begin
                    and (self._iter % self.val_interval == 0
                         or self._iter == self._max_iters)):
                self.runner.val_loop.run()
        self.runner.call_hook('after_train_epoch')
        self.runner.call_hook('after_train')
        return self.runner.model


register_everywhere('LOOPS', ExactEpochBasedTrainLoop, ExactIterBasedTrainLoop)
