"""Build the model of a config and load a checkpoint into it, for the inspection tools.

Why: ``tools/visualize_clusters.py`` and ``tools/analyze_clusters.py`` both start from a
config and an optional checkpoint, build the model without a Runner (no work dir, no
data), and must fail with one clear line when either is wrong.
"""
import re
import sys

from .cli import UsageError, _first_line, check_checkpoint_path, detect_scope, init_scope


def is_backbone_config(cfg) -> bool:
    """Whether the config's model is a bare ``FEC`` (a backbone-only config)."""
    model = cfg.get('model')
    return (isinstance(model, dict) and
            str(model.get('type', '')).rpartition('.')[2] == 'FEC')


def build_model(cfg):
    """``(model, scope)``: the model of ``cfg`` from mmdet's/mmseg's registry (scope
    'mmdet'/'mmseg'), or a bare FEC from mmengine's (scope None)."""
    if cfg.get('model') is None:
        raise UsageError('the config has no `model`; use a detection/segmentation config '
                         "or a backbone config with model = dict(type='FEC', ...)")
    if is_backbone_config(cfg):
        from mmengine.registry import MODELS
        scope = None
    else:
        scope = detect_scope(cfg)
        init_scope(cfg, scope)
        if scope == 'mmdet':
            from mmdet.registry import MODELS
        else:
            from mmseg.registry import MODELS
    try:
        model = MODELS.build(cfg.model)
    except Exception as error:  # a bad model section in the user's config
        raise UsageError(f'cannot build the model of this config: {_first_line(error)}') \
            from None
    return model, scope


def read_state_dict(checkpoint: str, own_keys, backbone_only: bool) -> dict:
    """The tensors of ``checkpoint`` (read by mmengine, i.e. mmfec's safe loader), with
    the ``backbone.`` prefix stripped when ``backbone_only`` and none of ``own_keys``
    match as they are (a detector's or segmentor's file loaded into a bare backbone).
    One-line errors for a missing file or a file without tensors."""
    from mmengine.runner.checkpoint import _load_checkpoint

    from mmfec.models.backbones.fec import extract_state_dict
    check_checkpoint_path(checkpoint, 'CHECKPOINT')
    try:
        state = extract_state_dict(_load_checkpoint(checkpoint, map_location='cpu'),
                                   checkpoint)
    except ValueError as error:
        raise UsageError(str(error)) from None
    own_keys = set(own_keys)
    if backbone_only and not any(k in own_keys for k in state):
        state = {re.sub(r'^backbone\.', '', k): v for k, v in state.items()
                 if k.startswith('backbone.')}
    return state


def load_weights(model, checkpoint: str, backbone_only: bool) -> str:
    """Load ``checkpoint`` through mmengine (the safe loader mmfec installs); returns a
    one-line summary. Detector/segmentor files also load into a backbone-only model.

    Raises :class:`~mmfec.utils.cli.UsageError` when the file is missing or holds no
    weights of the model's FEC backbone; warns on stderr when some stay random.
    """
    from mmengine.runner.checkpoint import _load_checkpoint_to_model

    from mmfec.visualization import find_backbone
    own = model.state_dict()
    state = read_state_dict(checkpoint, own, backbone_only)
    backbone = find_backbone(model)
    prefix = next((name + '.' for name, m in model.named_modules() if m is backbone), '')
    prefix = '' if prefix == '.' else prefix
    wanted = [prefix + k for k in backbone.state_dict()]
    loaded = [k for k in wanted if k in state and state[k].shape == own[k].shape]
    if not loaded:
        raise UsageError(f'checkpoint {checkpoint} holds no weights of this model\'s FEC '
                         f'backbone (first keys: {", ".join(list(state)[:3])}); pass a '
                         'checkpoint trained with this config')
    kept = {k: v for k, v in state.items() if k in own and v.shape == own[k].shape}
    _load_checkpoint_to_model(model, {'state_dict': kept}, strict=False)
    if len(loaded) < len(wanted):
        print(f'warning: {len(wanted) - len(loaded)} of {len(wanted)} backbone weights are '
              f'not in {checkpoint} and stay random', file=sys.stderr)
    return f'loaded {len(kept)} of {len(own)} weights from {checkpoint}'


def choose_device(name: str):
    """``torch.device(name)``, or a one-line error when it is not there."""
    import torch
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f'--device {name}: not a device; use cpu, cuda or cuda:N') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise UsageError(f'--device {name}: no CUDA GPU is available here; use --device cpu')
    return device
