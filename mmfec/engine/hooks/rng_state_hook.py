"""Store the random number generators' states in checkpoints, for exact ``--resume``.

Why: mmengine 0.10.7 restores weights, optimiser, schedulers and the seed on resume, but
not the RNG states, and it builds the train sampler with a fresh seed before it reads
the checkpoint. A resumed run then flips other images, samples other RoIs and drops
other paths than the uninterrupted run would have. This hook puts python's, numpy's
and torch's (CPU and current CUDA device) generator states into every checkpoint,
sets them back when training continues from that checkpoint, and gives the sampler
the checkpoint's seed.

Enable it in a config::

    custom_imports = dict(imports=['mmfec', 'mmfec.engine'], allow_failed_imports=False)
    custom_hooks = [dict(type='RNGStateHook')]

What is exact: with mmengine's own loops, epoch-based training resumed from an
epoch-end checkpoint, with ``num_workers=0`` or ``persistent_workers=False`` (mmengine
seeds workers the same way every time they start, so workers that live on across epochs
cannot be replayed). With mmfec's ``ExactEpochBasedTrainLoop`` / ``ExactIterBasedTrainLoop``
(mmfec's configs), which seed every sample by its place in the stream, any checkpoint,
any number of workers (docs/long_runs.md). In distributed runs each rank gets back its
own state (gathered at epoch ends and before iteration-based checkpoints). Other cases
still resume, only not bit for bit. Validation runs do not change the training RNG
stream (their RNG use is undone), so ``val_interval`` does not matter either.

The states are stored as ints, lists and tensors only, so the checkpoints still load
through mmfec's data-only checkpoint loader.
"""
import logging
import random
from typing import List, Optional

import numpy as np
import torch
from mmengine.dist import all_gather_object, get_dist_info
from mmengine.hooks import CheckpointHook, Hook
from mmengine.logging import print_log

from mmfec.registry import register_everywhere

CHECKPOINT_KEY = 'rng_state'
FORMAT_VERSION = 1


def capture_rng_state() -> dict:
    """This process's generator states, as checkpoint-safe data (no numpy objects)."""
    kind, keys, pos, has_gauss, cached_gaussian = np.random.get_state()
    version, internal, gauss_next = random.getstate()
    state = dict(
        python=dict(version=int(version), internal=torch.tensor(internal, dtype=torch.int64),
                    gauss_next=gauss_next),
        numpy=dict(kind=str(kind), keys=torch.from_numpy(keys.astype(np.int64)), pos=int(pos),
                   has_gauss=int(has_gauss), cached_gaussian=float(cached_gaussian)),
        torch=torch.get_rng_state())
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        state['cuda'] = torch.cuda.get_rng_state()
    return state


def restore_rng_state(state: dict) -> None:
    """Inverse of :func:`capture_rng_state`."""
    py = state['python']
    random.setstate((py['version'], tuple(int(v) for v in py['internal'].tolist()),
                     py['gauss_next']))
    npy = state['numpy']
    np.random.set_state((npy['kind'], npy['keys'].numpy().astype(np.uint32), npy['pos'],
                         npy['has_gauss'], npy['cached_gaussian']))
    torch.set_rng_state(state['torch'])
    if 'cuda' in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'])


def _saves_after_this_iter(hook, runner) -> bool:
    """Whether ``hook`` is an iteration-based CheckpointHook that saves this iteration."""
    if not isinstance(hook, CheckpointHook) or hook.by_epoch:
        return False
    return bool(hook.every_n_train_iters(runner, hook.interval, hook.save_begin)
                or (hook.save_last and hook.is_last_train_iter(runner)))


class RNGStateHook(Hook):
    """Save RNG states with each checkpoint and restore them on resume.

    Args:
        restore_after_val (bool): undo the RNG use of each validation run, so training
            randomness does not depend on how often it validates (and a resumed run,
            which does not repeat the validation before the checkpoint, stays exact).
            Defaults to True.
    """

    # Before CheckpointHook (VERY_LOW): the states are gathered before it saves.
    priority = 'LOW'

    def __init__(self, restore_after_val: bool = True):
        self.restore_after_val = restore_after_val
        self._rank_states: Optional[List[dict]] = None  # all ranks, gathered at epoch end
        self._gathered_at: Optional[int] = None
        self._pending: Optional[dict] = None  # states from a checkpoint, to apply
        self._val_state: Optional[dict] = None

    # ------------------------------------------------------------------ saving
    def after_train_epoch(self, runner) -> None:
        _, world_size = get_dist_info()
        if world_size > 1:  # collective: every rank takes part, rank 0 saves
            self._rank_states = all_gather_object(capture_rng_state())
            self._gathered_at = runner.iter

    def after_train_iter(self, runner, batch_idx: int, data_batch=None,
                         outputs=None) -> None:
        # Iteration-based checkpoints are written here too: gather every rank's states
        # when the CheckpointHook (which runs after this hook) is about to save.
        _, world_size = get_dist_info()
        if world_size > 1 and any(_saves_after_this_iter(hook, runner)
                                  for hook in runner.hooks):
            self._rank_states = all_gather_object(capture_rng_state())
            self._gathered_at = runner.iter

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        if self._rank_states is not None and self._gathered_at == runner.iter:
            states = self._rank_states
        else:  # single process, or a mid-epoch save: only this (rank 0's) state
            states = [capture_rng_state()]
        # the iteration training continues from: the checkpoint's own (a save after an
        # iteration happens before runner.iter counts it)
        resume_iter = checkpoint.get('meta', {}).get('iter', runner.iter)
        checkpoint[CHECKPOINT_KEY] = dict(version=FORMAT_VERSION, iter=resume_iter,
                                          ranks=states)

    # ------------------------------------------------------------------ resuming
    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        saved = checkpoint.get(CHECKPOINT_KEY)
        if saved is None:
            return
        if saved.get('version') != FORMAT_VERSION:
            print_log(f'RNGStateHook: checkpoint RNG states have format '
                      f'{saved.get("version")}, this mmfec reads {FORMAT_VERSION}; not '
                      'restoring them', logger='current', level=logging.WARNING)
            return
        self._pending = dict(saved, seed=checkpoint.get('meta', {}).get('seed'))

    def before_train_epoch(self, runner) -> None:
        pending, self._pending = self._pending, None
        # Apply only when training continues from that checkpoint (resume), not after
        # a plain load_from, whose training starts again at iteration 0.
        if pending is None or runner.iter != pending['iter'] or runner.iter == 0:
            return
        if pending['seed'] is not None:
            self._set_sampler_seed(runner, pending['seed'])
        rank, world_size = get_dist_info()
        states = pending['ranks']
        if len(states) != world_size:
            print_log(f'RNGStateHook: the checkpoint holds RNG states of {len(states)} '
                      f'process(es), this run has {world_size}; not restoring them (the '
                      'run continues, only not bit for bit)', logger='current',
                      level=logging.WARNING)
            return
        restore_rng_state(states[rank])
        print_log(f'RNGStateHook: restored the RNG states of iteration {runner.iter}',
                  logger='current')

    @staticmethod
    def _set_sampler_seed(runner, seed: int) -> None:
        """The resumed run built its sampler (and worker seeds) before reading the seed."""
        loader = runner.train_loop.dataloader
        candidates = [getattr(loader, 'sampler', None),
                      getattr(getattr(loader, 'batch_sampler', None), 'sampler', None)]
        for sampler in candidates:
            if sampler is not None and hasattr(sampler, 'seed') and sampler.seed != seed:
                sampler.seed = seed
                if hasattr(sampler, '_indices_of_rank'):  # InfiniteSampler: rebuild stream
                    sampler.indices = sampler._indices_of_rank()
        init_fn = getattr(loader, 'worker_init_fn', None)
        if getattr(init_fn, 'keywords', None) and 'seed' in init_fn.keywords:
            init_fn.keywords['seed'] = seed

    # ------------------------------------------------------------------ validation
    def before_val(self, runner) -> None:
        if self.restore_after_val:
            self._val_state = capture_rng_state()

    def after_val(self, runner) -> None:
        state, self._val_state = self._val_state, None
        if state is not None:
            restore_rng_state(state)


register_everywhere('HOOKS', RNGStateHook)
