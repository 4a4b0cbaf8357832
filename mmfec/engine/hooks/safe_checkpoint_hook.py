"""Checkpoints that are never half-written, and a ``--resume`` that skips damaged ones.

Why: mmengine 0.10.7's CheckpointHook writes ``iter_N.pth`` in place, deletes the oldest
checkpoint *before* writing the new one, and then points ``last_checkpoint`` at it. A job
killed while writing (pre-emption, time limit, a full disk) leaves a truncated newest
checkpoint, or none at all when a config keeps one, and ``--resume`` then dies in the
unpickler. :class:`SafeCheckpointHook` is a CheckpointHook that

* writes each checkpoint to ``.<name>.part`` beside it, flushes it to disk and renames it
  to its final name (atomic on one file system), then rewrites ``last_checkpoint`` the
  same way, and only then deletes checkpoints beyond ``max_keep_ckpts``;
* keeps at least two checkpoints when ``max_keep_ckpts`` asks for one, so a good one is
  left whatever happens to the newest;
* on ``--resume`` without a path (``resume=True``, no ``load_from``) checks the
  checkpoints of the work directory, newest first, and resumes from the first good one:
  a damaged newest one is skipped with a one-line warning, and when none is good the run
  stops with a one-line :class:`ResumeError` (a CheckpointError: mmfec's tools print it
  as ``error: ...``).

Enable it in a config (mmfec's configs do)::

    default_hooks = dict(checkpoint=dict(type='SafeCheckpointHook'))

Checkpoints on a remote backend (``s3://`` ...) are written as CheckpointHook does.
"""
import logging
import os
import os.path as osp
import re
import zipfile
from typing import List, Optional, Tuple

from mmengine.dist import is_main_process
from mmengine.hooks import CheckpointHook
from mmengine.logging import print_log

from mmfec.registry import register_everywhere
from mmfec.utils.atomic_write import write_atomic
from mmfec.utils.safe_checkpoint import CheckpointError

PART_SUFFIX = '.part'
_STEP_NAME = re.compile(r'^(?:epoch|iter)_(\d+)(?:_iter_(\d+))?\.pth$')


class ResumeError(CheckpointError):
    """``--resume`` found checkpoints, but none of them can be read."""


def checkpoint_problem(path: str) -> Optional[str]:
    """Why the checkpoint file at ``path`` cannot be resumed from, or None if it is whole.

    torch >= 1.6 writes checkpoints as zip archives with a CRC per entry: reading every
    entry finds truncation and corruption without unpickling anything.
    """
    if not osp.isfile(path):
        return 'the file does not exist'
    if osp.getsize(path) == 0:
        return 'the file is empty (0 bytes)'
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip()
            names = archive.namelist()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError) as error:
        return f'the file is truncated or not a checkpoint ({error})'
    if bad is not None:
        return f'entry {bad} fails its checksum'
    if not any(name.endswith('/data.pkl') for name in names):
        return 'the archive holds no pickled checkpoint'
    return None


def _sort_key(path: str) -> Tuple[int, int]:
    """Newest first: by modification time (a checkpoint gets it when renamed into
    place), then by the number in the file name."""
    match = _STEP_NAME.match(osp.basename(path))
    return os.stat(path).st_mtime_ns, int(match.group(2) or match.group(1))


def resume_candidates(work_dir: str) -> List[str]:
    """Checkpoints of ``work_dir`` to resume from, best first: the one named in
    ``last_checkpoint`` (if any), then ``epoch_*``/``iter_*`` files, newest first."""
    candidates = []
    pointer = osp.join(work_dir, 'last_checkpoint')
    if osp.isfile(pointer):
        with open(pointer) as stream:
            named = stream.read().strip()
        if named:
            candidates.append(named)
    if osp.isdir(work_dir):
        found = [osp.join(work_dir, name) for name in os.listdir(work_dir)
                 if _STEP_NAME.match(name)]
        for path in sorted(found, key=_sort_key, reverse=True):
            if all(osp.abspath(path) != osp.abspath(c) for c in candidates):
                candidates.append(path)
    return candidates


def choose_resume_checkpoint(work_dir: str) -> Optional[str]:
    """The newest good checkpoint of ``work_dir``; None if there are none at all.

    Logs one warning line per damaged checkpoint passed over; raises :class:`ResumeError`
    when checkpoints exist but none is good.
    """
    candidates = resume_candidates(work_dir)
    if not candidates:
        return None
    skipped = []
    for path in candidates:
        problem = checkpoint_problem(path)
        if problem is None:
            if skipped:
                print_log(f'--resume: skipped damaged checkpoint(s) '
                          f'{"; ".join(skipped)}; resuming from {path}',
                          logger='current', level=logging.WARNING)
            return path
        skipped.append(f'{path} ({problem})')
    raise ResumeError(f'--resume: no checkpoint in {work_dir} can be read: '
                      f'{"; ".join(skipped)}; start again without --resume, or pass a '
                      'good checkpoint as --resume PATH')


class SafeCheckpointHook(CheckpointHook):
    """A CheckpointHook whose checkpoints appear only when complete (see the module).

    Takes CheckpointHook's arguments; ``max_keep_ckpts=1`` is raised to 2.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        if self.max_keep_ckpts == 1:
            self.max_keep_ckpts = 2  # one good checkpoint whatever happens to the newest

    # ------------------------------------------------------------------ resuming
    def before_run(self, runner) -> None:
        super().before_run(runner)
        # Runner.train calls before_run just before load_or_resume: choose here.
        if getattr(runner, '_resume', False) and runner._load_from is None \
                and not getattr(runner, '_has_loaded', False):
            chosen = choose_resume_checkpoint(runner.work_dir)
            if chosen is not None:
                runner._load_from = chosen

    # ------------------------------------------------------------------ saving
    def _is_local(self) -> bool:
        return '://' not in str(self.out_dir) and \
            type(self.file_backend).__name__ == 'LocalBackend'

    def _save_checkpoint_with_step(self, runner, step, meta):
        if not self._is_local():
            return super()._save_checkpoint_with_step(runner, step, meta)
        filename = self.filename_tmpl.format(step)
        self.save_as(runner, filename, meta, step=step)

    def save_as(self, runner, filename: str, meta: dict, step=None) -> str:
        """Write a checkpoint named ``filename`` atomically, point ``last_checkpoint`` at
        it, then delete checkpoints beyond ``max_keep_ckpts``. ``step`` (a number) counts
        it among the kept checkpoints; None keeps it out of that count (never deleted
        here). Returns its path. Every rank calls this (rank 0 writes)."""
        expired = []
        if step is not None and self.max_keep_ckpts > 0 and \
                not (self.keep_ckpt_ids and self.keep_ckpt_ids[-1] == step):
            if len(self.keep_ckpt_ids) == self.max_keep_ckpts:
                expired.append(self.keep_ckpt_ids.popleft())
            self.keep_ckpt_ids.append(step)
            runner.message_hub.update_info('keep_ckpt_ids', list(self.keep_ckpt_ids))

        final = osp.join(self.out_dir, filename)
        part = osp.join(self.out_dir, f'.{filename}{PART_SUFFIX}')
        self.last_ckpt = final
        runner.message_hub.update_info('last_ckpt', final)
        runner.save_checkpoint(
            self.out_dir, osp.basename(part), self.file_client_args,
            save_optimizer=self.save_optimizer,
            save_param_scheduler=self.save_param_scheduler,
            meta=meta, by_epoch=self.by_epoch, backend_args=self.backend_args,
            **self.args)
        if not is_main_process():
            return final
        with open(part, 'rb+') as stream:  # on disk before it gets its name
            os.fsync(stream.fileno())
        os.replace(part, final)
        write_atomic(osp.join(runner.work_dir, 'last_checkpoint'), final)
        for old in expired:
            path = osp.join(self.out_dir, self.filename_tmpl.format(old))
            if osp.isfile(path) and osp.abspath(path) != osp.abspath(final):
                os.remove(path)
        return final


register_everywhere('HOOKS', SafeCheckpointHook)
