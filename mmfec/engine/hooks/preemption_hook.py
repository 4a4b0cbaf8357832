"""Save and stop on SIGTERM / SIGUSR1 instead of dying: pre-emption loses no work.

Why: Slurm, Kubernetes and most batch systems send SIGTERM before they kill a job (Slurm
can also send SIGUSR1 a set time before the time limit: ``--signal``). Python's default
for SIGTERM ends the process at once, losing everything since the last checkpoint.
:class:`PreemptionHook` catches the signals; training finishes the iteration it is in,
writes a checkpoint (through SafeCheckpointHook when the run has one: whole or not at
all), prints how to continue, and exits with code 128 + the signal's number (143 for
SIGTERM, 138 for SIGUSR1). ``tools/train.py CONFIG --resume`` continues exactly there.

In distributed runs the ranks agree each iteration (one all-reduce of one number) on
whether any of them was signalled, so they all stop after the same iteration. Data
workers ignore the signals (see :mod:`mmfec.datasets.resumable`).

Enable it in a config (mmfec's configs do)::

    custom_hooks = [dict(type='PreemptionHook')]
"""
import logging
import os.path as osp
import signal
import sys
import threading
from typing import Dict, Optional, Sequence

import torch
import torch.distributed as dist
from mmengine.dist import all_gather_object, all_reduce, get_dist_info, is_main_process
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log
from mmengine.runner import EpochBasedTrainLoop

from mmfec.registry import register_everywhere
from mmfec.utils.atomic_write import write_atomic

from .rng_state_hook import RNGStateHook, capture_rng_state

DEFAULT_SIGNALS = ('SIGTERM', 'SIGUSR1')


def preempted_exit_code(signum: int) -> int:
    """The exit code of a pre-empted run: as the shell reports a process killed by it."""
    return 128 + int(signum)


class Preempted(SystemExit):
    """Raised after the pre-emption checkpoint is written; ends the process quietly."""


class PreemptionHook(Hook):
    """Checkpoint and exit after the current iteration when a signal arrives.

    Args:
        signals (sequence of str): signal names to catch. Defaults to SIGTERM, SIGUSR1.
    """

    # after CheckpointHook (VERY_LOW): a regular checkpoint of this iteration comes first
    priority = 'LOWEST'

    def __init__(self, signals: Sequence[str] = DEFAULT_SIGNALS):
        self.signals = [getattr(signal, name) for name in signals if hasattr(signal, name)]
        self._received: Optional[int] = None
        self._previous: Dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self._received is None:
            self._received = signum
            # plain write: logging is not safe inside a signal handler
            sys.stderr.write(f'\n{signal.Signals(signum).name} received: training stops '
                             'after this iteration and writes a checkpoint\n')

    def before_train(self, runner) -> None:
        if threading.current_thread() is not threading.main_thread():
            print_log('PreemptionHook: not on the main thread, signals not caught',
                      logger='current', level=logging.WARNING)
            return
        for signum in self.signals:
            self._previous[signum] = signal.signal(signum, self._handle)

    def after_train(self, runner) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _agreed_signal(self) -> int:
        """The signal any rank received (0 if none); every rank calls this."""
        received = self._received or 0
        _, world_size = get_dist_info()
        if world_size > 1:
            flag = torch.tensor([received], dtype=torch.int64)
            all_reduce(flag, op='max')
            received = int(flag.item())
        return received

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        signum = self._agreed_signal()
        if not signum:
            return
        path = self._save(runner)
        name = signal.Signals(signum).name
        config = getattr(runner.cfg, 'filename', None) or 'CONFIG'
        message = (f'{name}: stopped after iteration {runner.iter + 1}, checkpoint '
                   f'{path}; continue with: python tools/train.py {config} '
                   f'--work-dir {runner.work_dir} --resume')
        print_log(message, logger='current', level=logging.WARNING)
        if is_main_process():
            print(message, file=sys.stderr, flush=True)
        self.after_train(runner)  # the handlers as they were
        _finish_distributed()
        raise Preempted(preempted_exit_code(signum))

    def _save(self, runner) -> str:
        """Write the checkpoint of iteration ``runner.iter + 1``; returns its path."""
        checkpoint_hook = next((h for h in runner.hooks if isinstance(h, CheckpointHook)),
                               None)
        step = runner.iter + 1
        by_epoch = isinstance(runner.train_loop, EpochBasedTrainLoop)
        if checkpoint_hook is not None and not by_epoch and \
                osp.basename(getattr(checkpoint_hook, 'last_ckpt', '') or '') == \
                checkpoint_hook.filename_tmpl.format(step):
            return checkpoint_hook.last_ckpt  # this iteration's regular checkpoint
        self._gather_rng_states(runner)
        meta = dict(epoch=runner.epoch, iter=step)  # mid-epoch: the epoch is not done
        if by_epoch:
            filename, keep_step = f'epoch_{runner.epoch + 1}_iter_{step}.pth', None
        else:
            filename, keep_step = f'iter_{step}.pth', step
        if checkpoint_hook is not None and hasattr(checkpoint_hook, 'save_as'):
            return checkpoint_hook.save_as(runner, filename, meta, step=keep_step)
        out_dir = runner.work_dir if checkpoint_hook is None else checkpoint_hook.out_dir
        runner.save_checkpoint(out_dir, filename, meta=meta, by_epoch=False)
        if is_main_process():
            write_atomic(osp.join(runner.work_dir, 'last_checkpoint'),
                         osp.join(out_dir, filename))
        return osp.join(out_dir, filename)

    @staticmethod
    def _gather_rng_states(runner) -> None:
        """Let RNGStateHook store every rank's RNG states in this mid-epoch checkpoint."""
        _, world_size = get_dist_info()
        for hook in runner.hooks:
            if isinstance(hook, RNGStateHook) and world_size > 1:
                hook._rank_states = all_gather_object(capture_rng_state())
                hook._gathered_at = runner.iter


def _finish_distributed() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()


register_everywhere('HOOKS', PreemptionHook)
