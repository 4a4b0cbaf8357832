"""The model a config describes, with its trained weights, ready to wrap for export.

Why: ``tools/deployment/pytorch2onnx.py`` serves the three kinds of config in
``configs/``: a bare FEC backbone (``model = dict(type='FEC', ...)``), an MMSegmentation
segmentor and an MMDetection detector. Each is built from its own registry; its weights
come from a checkpoint read by mmfec's data-only loader (``import mmfec`` routes every
mmengine load through it), and a config of any other kind is refused in one line.
"""
import sys
from typing import Optional, Tuple

import torch.nn as nn

from mmfec.utils import model_loading
from mmfec.utils.cli import UsageError, check_checkpoint_path

BACKBONE, SEGMENTOR, DETECTOR = 'backbone', 'segmentor', 'detector'
RANDOM_WEIGHTS_WARNING = ('warning: no CHECKPOINT given, so the exported model has random '
                          'weights; pass a trained checkpoint to export a usable model')
KINDS_HELP = ("an FEC backbone (model = dict(type='FEC', ...)), an MMSegmentation "
              'EncoderDecoder segmentor, or an MMDetection single-stage or two-stage detector')


def build_model(cfg) -> Tuple[nn.Module, Optional[str]]:
    """The model of ``cfg`` (:func:`mmfec.utils.model_loading.build_model`), in eval
    mode, with SyncBN turned into BN; returns ``(model, scope)``."""
    from mmengine.model import revert_sync_batchnorm
    if not isinstance(cfg.get('model'), dict):
        raise UsageError(f'the config has no `model` to export; use {KINDS_HELP}')
    model, scope = model_loading.build_model(cfg)
    model = revert_sync_batchnorm(model)
    model.eval()  # not chained: some modules' train() (mmdet's ResNet) return None
    return model, scope


def model_kind(model: nn.Module) -> str:
    """``'backbone'``, ``'segmentor'`` or ``'detector'``; a one-line error otherwise."""
    from mmfec.models import FEC
    if isinstance(model, FEC):
        return BACKBONE
    try:
        from mmseg.models.segmentors import EncoderDecoder
        if isinstance(model, EncoderDecoder):
            return SEGMENTOR
    except ImportError:
        pass
    try:
        from mmdet.models.detectors import SingleStageDetector, TwoStageDetector
        if isinstance(model, (SingleStageDetector, TwoStageDetector)):
            return DETECTOR
    except ImportError:
        pass
    raise UsageError(f'cannot export a {type(model).__name__}: this tool exports '
                     f'{KINDS_HELP}')


def load_weights(model: nn.Module, checkpoint: str, kind: str) -> str:
    """Load ``checkpoint`` (a local file or a URL) into ``model``; returns a one-line summary.

    A detector's or segmentor's checkpoint also loads into a bare backbone (its
    ``backbone.*`` weights). A file holding none of the model's weights is an error;
    weights the file lacks stay random and are reported.
    """
    own = model.state_dict()
    state = model_loading.read_state_dict(checkpoint, own, kind == BACKBONE)
    kept = {key: value for key, value in state.items()
            if key in own and value.shape == own[key].shape}
    if not kept:
        raise UsageError(f'checkpoint {checkpoint} holds no weights of this model (first '
                         f'keys: {", ".join(list(state)[:3])}); pass a checkpoint trained '
                         'with this config')
    model.load_state_dict(kept, strict=False)
    missing = [key for key in own if key not in kept]
    if missing:
        print(f'warning: {len(missing)} of {len(own)} weights are not in {checkpoint} and '
              f'stay random (first: {", ".join(missing[:3])})', file=sys.stderr)
    return f'loaded {len(kept)} of {len(own)} weights from {checkpoint}'


def load_model(cfg, checkpoint: Optional[str] = None):
    """Build the config's model and load its weights: ``(model, kind, scope)``.

    Without ``checkpoint`` the weights stay random, and a warning says so.
    """
    if checkpoint is not None:
        check_checkpoint_path(checkpoint, 'CHECKPOINT')  # before the build
    model, scope = build_model(cfg)
    kind = model_kind(model)
    if checkpoint is None:
        print(RANDOM_WEIGHTS_WARNING, file=sys.stderr)
    else:
        print(load_weights(model, checkpoint, kind))
    return model, kind, scope
