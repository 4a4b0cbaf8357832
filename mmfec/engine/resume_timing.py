"""How long a resumed run takes to reach its next training iteration.

``tools/resume_time.py CONFIG CHECKPOINT`` resumes from the checkpoint, trains one
iteration and reports the seconds between the start of the training loop (after the
checkpoint is loaded) and the start of that iteration: the time spent getting the data
stream to where the checkpoint left it. With mmengine's IterBasedTrainLoop that is the
replay of every trained batch; with mmfec's ExactIterBasedTrainLoop a skip by index.
"""
import time
from typing import Optional

from mmengine.hooks import Hook

from mmfec.utils.cli import build_runner


class ResumeTimerHook(Hook):
    """Records the loop's start and the first iteration's start, then stops training
    after that iteration."""

    priority = 'LOWEST'

    def __init__(self):
        self.loop_start: Optional[float] = None
        self.first_iter_start: Optional[float] = None
        self.resumed_at: Optional[int] = None

    def before_train(self, runner) -> None:
        self.loop_start = time.perf_counter()
        self.resumed_at = runner.iter

    def before_train_iter(self, runner, batch_idx, data_batch=None) -> None:
        if self.first_iter_start is None:
            self.first_iter_start = time.perf_counter()

    def after_train_iter(self, runner, batch_idx, data_batch=None, outputs=None) -> None:
        runner.train_loop.stop_training = True

    @property
    def seconds(self) -> Optional[float]:
        if self.loop_start is None or self.first_iter_start is None:
            return None
        return self.first_iter_start - self.loop_start


def time_resume(cfg, scope, checkpoint: str) -> ResumeTimerHook:
    """Resume ``cfg`` (scope-initialised) from ``checkpoint`` for one iteration, no
    validation, no checkpoint written; returns the timer."""
    cfg.resume = True
    cfg.load_from = checkpoint
    cfg.train_cfg.val_begin = 10 ** 9
    cfg.default_hooks.checkpoint = dict(type='CheckpointHook', interval=10 ** 9,
                                        save_last=False)
    timer = ResumeTimerHook()
    runner = build_runner(cfg, scope)
    runner.register_hook(timer)
    runner.train()
    return timer
