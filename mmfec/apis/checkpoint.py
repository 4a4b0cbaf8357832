"""Load a checkpoint into a built model, refusing one that does not fit it.

Why: mmengine loads whatever matches and logs the rest, so a segmentation config tested
with a detector's checkpoint runs to the end and prints junk metrics. Here a checkpoint
must give every part of the model (backbone, neck, heads) weights, or the load fails in
one line that says what the checkpoint holds.
"""
import re
import sys
from collections import OrderedDict
from typing import Dict, List

import torch
import torch.nn as nn
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmengine.runner.checkpoint import _load_checkpoint

from ..models import FEC
from ..models.backbones.fec import extract_state_dict
from ..models.backbones.fec_checkpoint_check import CheckpointMismatchError
from ..utils.cli import UsageError, _first_line, check_checkpoint_path
from ..utils.safe_checkpoint import CheckpointError, hand_over

# A bare FEC needs its stem and stages; its output norms may be absent (an ImageNet file
# has one `norm`, a detector's four).
_BACKBONE_PARTS = ('patch_embed', 'network')


def read_state_dict(checkpoint: str) -> 'OrderedDict[str, torch.Tensor]':
    """The tensors of ``checkpoint`` (read by mmengine through mmfec's data-only loader;
    plain, ``state_dict`` or ``model`` wrapped). One-line errors for a missing file or
    a file without tensors."""
    return _extract(read_checkpoint(checkpoint), checkpoint)


def read_checkpoint(checkpoint: str) -> dict:
    """The whole object in ``checkpoint`` on the CPU (weights, and for a Runner's file its
    meta, optimizer and scheduler states), read through mmfec's data-only loader."""
    check_checkpoint_path(checkpoint, 'CHECKPOINT')
    return _load_checkpoint(checkpoint, map_location='cpu')


def _extract(loaded, checkpoint: str) -> 'OrderedDict[str, torch.Tensor]':
    try:
        return extract_state_dict(loaded, checkpoint)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _groups(keys) -> List[str]:
    return list(OrderedDict.fromkeys(k.split('.')[0] for k in keys))


def describe_state_dict(state_dict: Dict[str, torch.Tensor]) -> str:
    """E.g. ``backbone.*, neck.*, rpn_head.*, roi_head.* (a detector's)``."""
    groups = _groups(state_dict)
    kind = ('a detector\'s' if {'rpn_head', 'roi_head', 'bbox_head'} & set(groups) else
            'a segmentor\'s' if 'decode_head' in groups else
            'a classifier\'s' if 'head' in groups and 'backbone' in groups else
            'an official ImageNet classifier\'s' if 'head' in groups else
            'a backbone\'s' if 'network' in groups else 'another model\'s')
    shown = ', '.join(g + '.*' for g in groups[:6]) + (', ...' if len(groups) > 6 else '')
    return f'{shown} ({kind})'


def _required_parts(model: nn.Module) -> List[str]:
    if isinstance(model, FEC):
        return list(_BACKBONE_PARTS)
    return [name for name, child in model.named_children()
            if name != 'data_preprocessor' and any(True for _ in child.parameters())]


def load_weights(model: nn.Module, checkpoint: str, keep_for_runner: bool = False) -> str:
    """Load ``checkpoint`` into ``model`` and return a one-line summary.

    With ``keep_for_runner``, the file's contents are kept for the next load of the same
    file (the Runner's ``load_from`` or ``resume`` right after this check), which then
    does not read it again.

    Official key layouts convert on load (the models' own load hooks); a detector's or
    segmentor's file also loads into a bare FEC (its ``backbone.*``). Raises
    :class:`CheckpointMismatchError` (one line) when a part of the model (``backbone``,
    ``neck``, ``decode_head``, ``head``...) gets none of its weights or shapes differ;
    weights missing here and there stay at their init with a warning on stderr.
    """
    loaded = read_checkpoint(checkpoint)
    state = _extract(loaded, checkpoint)
    own = model.state_dict()
    if isinstance(model, FEC) and not any(k in own for k in state):
        inner = OrderedDict((re.sub(r'^backbone\.', '', k), v) for k, v in state.items()
                            if k.startswith('backbone.'))
        state = inner or state
    what = describe_state_dict(state)
    convert = getattr(model, 'convert_state_dict', None)  # e.g. official classifier keys
    keys = OrderedDict(state)
    if convert is not None:
        convert(keys)
    empty = [part for part in _required_parts(model)
             if not any(k.split('.')[0] == part for k in keys)]
    if empty:
        raise CheckpointMismatchError(
            f'checkpoint {checkpoint} does not fit this model: it holds {what}, and this '
            f'model\'s {", ".join(p + ".*" for p in empty)} would get none of their '
            'weights; pass a checkpoint trained with this config')
    try:
        result = nn.Module.load_state_dict(model, state, strict=False)
    except CheckpointError:
        raise
    except RuntimeError as error:  # PyTorch's size mismatches
        lines = [line.strip() for line in str(error).splitlines() if 'size mismatch' in line]
        raise CheckpointMismatchError(
            f'checkpoint {checkpoint} ({what}) does not fit this model: '
            f'{lines[0] if lines else _first_line(error)}') from None
    missing = set(result.missing_keys)
    empty = [part for part in _required_parts(model)
             if all(k in missing for k in own if k.split('.')[0] == part)]
    if empty:
        raise CheckpointMismatchError(
            f'checkpoint {checkpoint} does not fit this model: it holds {what}, and this '
            f'model\'s {", ".join(p + ".*" for p in empty)} would get none of their '
            'weights; pass a checkpoint trained with this config')
    if missing:
        first = [k for k in own if k in missing][:3]
        print(f'warning: {len(missing)} of {len(own)} weights are not in {checkpoint} and '
              f'stay at their init (first: {", ".join(first)})', file=sys.stderr)
    if keep_for_runner:
        hand_over(checkpoint, loaded)
    return f'loaded {len(own) - len(missing)} of {len(own)} weights from {checkpoint}'


def unwrap_model(model: nn.Module) -> nn.Module:
    """The model inside DDP / test-time-augmentation wrappers (what a checkpoint holds)."""
    while is_model_wrapper(model) or isinstance(model, BaseTTAModel):
        model = model.module
    return model
