"""Report, at the first training step, the FEC outputs that the neck never reads.

Why: an output without a gradient leaves its GroupNorm's parameters unused, and
DistributedDataParallel stops on unused parameters (or needs
``find_unused_parameters=True``, which costs time at every step). FEC can tell which
outputs got no gradient, in one line with the fix; this hook asks it to, once, so the
backbone's ``forward`` carries no diagnostics of its own. On in mmfec's configs::

    custom_hooks = [dict(type='UnusedOutputsHook')]
"""
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper

from ...models.find_backbone import find_backbone
from ...registry import register_everywhere


class UnusedOutputsHook(Hook):
    """Before the first training iteration (of a run or of a resumed run), make the FEC
    backbone report outputs that get no gradient in that step (one warning line)."""

    priority = 'LOW'

    def __init__(self):
        self._done = False

    def before_train_iter(self, runner, batch_idx, data_batch=None):
        if self._done:
            return
        self._done = True
        model = runner.model.module if is_model_wrapper(runner.model) else runner.model
        try:
            backbone = find_backbone(model)
        except ValueError:
            return  # no FEC in this model: nothing to watch
        backbone.watch_unused_outputs()


register_everywhere('HOOKS', UnusedOutputsHook)
