"""The model of a config: a detector, segmentor, classifier or bare FEC, built and loaded.

Why one place: every tool (test, cluster maps, purity, ONNX export, FLOPs) starts from
"the model of this config with this checkpoint", for three OpenMMLab task packages and a
bare backbone, and must fail in one clear line when either is wrong.
"""
import importlib
from typing import Optional, Union

import torch
import torch.nn as nn
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import MODELS, DefaultScope
from mmengine.runner.utils import set_random_seed

from ..models import FEC
from ..utils.cli import (
    UsageError,
    _first_line,
    check_checkpoint_path,
    detect_scope,
    init_scope,
    load_config,
)
from ..utils.tasks import BACKBONE, CLASSIFIER, TASK_OF_SCOPE
from .checkpoint import load_weights


def is_backbone_config(cfg) -> bool:
    """Whether the config's model is a bare ``FEC`` (a backbone-only config)."""
    model = cfg.get('model')
    return (isinstance(model, dict) and
            str(model.get('type', '')).rpartition('.')[2] == 'FEC')


def config_scope(cfg) -> Optional[str]:
    """'mmdet', 'mmseg' or 'mmpretrain' for a task config (registries made ready), ``None``
    for a backbone-only one."""
    if is_backbone_config(cfg):
        return None
    scope = detect_scope(cfg)
    init_scope(cfg, scope)
    return scope


def build_model(cfg) -> nn.Module:
    """The (untrained) model of ``cfg`` from its task's registry, or a bare FEC from
    mmengine's; ``model.cfg`` is the config and ``model.task`` one of 'backbone',
    'detector', 'segmentor', 'classifier'."""
    if cfg.get('model') is None:
        raise UsageError('the config has no `model`; use a detection, segmentation or '
                         "classification config, or a backbone config with model = "
                         "dict(type='FEC', ...)")
    scope = config_scope(cfg)
    registry = MODELS if scope is None else \
        importlib.import_module(f'{scope}.registry').MODELS
    model_cfg = cfg.model.copy()
    if scope is not None and cfg.get('data_preprocessor') is not None:
        # what a Runner does: a top-level data_preprocessor is the model's default
        model_cfg.setdefault('data_preprocessor', cfg.data_preprocessor)
    try:
        with DefaultScope.overwrite_default_scope(scope):
            model = registry.build(model_cfg)
    except Exception as error:  # a bad model section in the user's config
        raise UsageError(f'cannot build the model of this config: {_first_line(error)}') \
            from None
    model.cfg = cfg
    model.task = BACKBONE if scope is None else TASK_OF_SCOPE[scope]
    return model


def model_task(model: nn.Module) -> str:
    """'backbone', 'detector', 'segmentor' or 'classifier' for a model built by
    :func:`init_model` (or any mmdet/mmseg/mmpretrain model with an FEC backbone)."""
    task = getattr(model, 'task', None)
    if task is not None:
        return task
    if isinstance(model, FEC):
        return BACKBONE
    root = type(model).__module__.partition('.')[0]
    if root in TASK_OF_SCOPE:
        return TASK_OF_SCOPE[root]
    if isinstance(getattr(model, 'head', None), nn.Module):
        return CLASSIFIER
    raise UsageError(f'cannot tell the task of a {type(model).__name__}')


def init_model(config: Union[str, Config], checkpoint: Optional[str] = None,
               device: Union[str, torch.device] = 'cpu', cfg_options: Optional[dict] = None,
               seed: Optional[int] = None) -> nn.Module:
    """Build the model of ``config`` (a path or a ``Config``), load ``checkpoint`` and
    put it on ``device`` in eval mode, as ``mmdet.apis.init_detector``,
    ``mmseg.apis.init_model`` and ``mmpretrain.apis.init_model`` do.

    Works for a detector, segmentor, classifier or bare FEC. The checkpoint is read by
    mmfec's data-only loader; official FEC files convert on load (ImageNet classifier,
    backbone weights from a detector's or segmentor's file into a bare FEC). A
    checkpoint that does not fit the model (another task, another arch, missing whole
    parts) fails with one line naming what it holds. Without a checkpoint the weights
    are random, as the modules build them (``seed`` makes them reproducible; as in
    mmdet's and mmseg's ``init_model``, ``init_weights`` is not called, so a config's
    ``Pretrained`` init is not read). SyncBN becomes BN (CPU inference).
    """
    if checkpoint is not None:
        check_checkpoint_path(checkpoint, 'CHECKPOINT')  # before minutes of building
    cfg = load_config(config, cfg_options) if not isinstance(config, Config) else config
    if seed is not None:
        set_random_seed(seed)
    model = revert_sync_batchnorm(build_model(cfg))
    if checkpoint is not None:
        model.checkpoint_summary = load_weights(model, checkpoint)
    model.to(device)
    model.eval()  # not chained: some modules' train() (mmdet's ResNet) return None
    return model


def choose_device(name: str) -> torch.device:
    """``torch.device(name)``, or a one-line error when it is not there."""
    try:
        device = torch.device(name)
    except RuntimeError:
        raise UsageError(f'--device {name}: not a device; use cpu, cuda or cuda:N') from None
    if device.type == 'cuda' and not torch.cuda.is_available():
        raise UsageError(f'--device {name}: no CUDA GPU is available here; use --device cpu')
    return device
