"""What tools/train.py and tools/test.py share: scope detection, clear errors.

Why: one set of tools serves MMDetection, MMSegmentation and MMPretrain
configs, so they must find out which one a config belongs to (to pick
registries, hooks and metrics), and a user mistake must end in one
``error: ...`` line with exit code 2, not in a traceback.
"""
import argparse
import datetime
import importlib
import importlib.util
import os
import os.path as osp
import sys
from collections.abc import Mapping
from contextlib import contextmanager

import torch.distributed as dist
from mmengine.config import Config, DictAction
from mmengine.device import get_device
from mmengine.runner import Runner

from ..datasets.checks import check_data_exists
from .errors import InputError
from .safe_checkpoint import CheckpointError
from .slurm import export_slurm_env

SCOPES = ('mmdet', 'mmseg', 'mmpretrain')
TASKS = {'mmdet': 'detection', 'mmseg': 'segmentation', 'mmpretrain': 'classification'}
USAGE_EXIT_CODE = 2
_CONFIG_SUFFIXES = ('.py', '.json', '.yaml', '.yml')


class UsageError(Exception):
    """A mistake the user can fix; the tools print it as one line."""


@contextmanager
def user_errors():
    """Print user errors (ours, bad checkpoints, images the backbone cannot take) as
    ``error: ...``, exit 2."""
    try:
        yield
    except (UsageError, CheckpointError, InputError) as error:
        print(f'error: {error}', file=sys.stderr)
        sys.exit(USAGE_EXIT_CODE)


def _first_line(error):
    text = str(error).strip().splitlines()
    return f'{type(error).__name__}: {text[0] if text else ""}'.rstrip(': ')


def load_config(path, cfg_options=None):
    """``Config.fromfile`` plus ``--cfg-options``, with one-line errors."""
    if not osp.isfile(path):
        what = 'is a directory' if osp.isdir(path) else 'does not exist'
        raise UsageError(f'config file {path} {what}; pass the path of a '
                         f'config file ({", ".join(_CONFIG_SUFFIXES)})')
    if not path.endswith(_CONFIG_SUFFIXES):
        raise UsageError(f'config file {path} must end with one of '
                         f'{", ".join(_CONFIG_SUFFIXES)}')
    try:
        cfg = Config.fromfile(path)
    except Exception as error:  # any parse/import error in the user's file
        raise UsageError(
            f'cannot read config {path}: {_first_line(error)}') from None
    if cfg_options:
        check_cfg_options(cfg, cfg_options)
        try:
            cfg.merge_from_dict(cfg_options)
        except Exception as error:
            raise UsageError(
                f'cannot apply --cfg-options: {_first_line(error)}') from None
    return cfg


# What mmengine's Runner.from_cfg reads from a config: a config may leave them out.
RUNNER_KEYS = ('model', 'work_dir', 'train_dataloader', 'val_dataloader', 'test_dataloader',
               'train_cfg', 'val_cfg', 'test_cfg', 'auto_scale_lr', 'optim_wrapper',
               'param_scheduler', 'val_evaluator', 'test_evaluator', 'default_hooks',
               'custom_hooks', 'data_preprocessor', 'load_from', 'resume', 'launcher',
               'env_cfg', 'log_processor', 'log_level', 'visualizer', 'default_scope',
               'randomness', 'experiment_name', 'compile', 'model_wrapper_cfg',
               'runner_type')


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_cfg_options(cfg, cfg_options):
    """One-line errors for ``--cfg-options`` a config cannot take: a path through a key
    or list index the config does not have (a typo), or a text where the config has a
    number or a boolean. A new last key inside an existing dict is allowed (settings a
    module takes but the config leaves at their default)."""
    root = getattr(cfg, '_cfg_dict', cfg)  # a Config holds its ConfigDict (a dict)
    for option, value in cfg_options.items():
        node, parts = root, option.split('.')
        for depth, part in enumerate(parts):
            where = '.'.join(parts[:depth + 1])
            last = depth == len(parts) - 1
            if isinstance(node, (list, tuple)):
                if not part.isdigit() or int(part) >= len(node):
                    raise UsageError(
                        f'--cfg-options {option}: {".".join(parts[:depth]) or "the config"}'
                        f' is a list of {len(node)} entries, so {part!r} is not an index '
                        f'in it (use 0-{len(node) - 1})')
                node = node[int(part)]
                continue
            if not isinstance(node, Mapping):
                shown = repr(node) if len(repr(node)) < 60 else type(node).__name__
                raise UsageError(f'--cfg-options {option}: '
                                 f'{".".join(parts[:depth])} is {shown}, not a dict')
            if part not in node:
                if depth > 0 and last or depth == 0 and part in RUNNER_KEYS:
                    break  # a new setting inside an existing dict, or a Runner argument
                near = sorted(k for k in node if isinstance(k, str))[:12]
                raise UsageError(f'--cfg-options {option}: the config has no {where!r} '
                                 f'(keys there: {", ".join(near)})')
            if last:
                old = node[part]
                if (_is_number(old) or isinstance(old, bool)) and isinstance(value, str):
                    kind = 'true/false' if isinstance(old, bool) else 'a number'
                    raise UsageError(f'--cfg-options {option}={value}: the config has '
                                     f'{old!r} there, so the value must be {kind}')
            node = node[part]


def check_writable(path, option, directory=False):
    """Fail before any work when ``path`` (a file, or with ``directory`` a folder) cannot
    be written: it is a folder where a file is wanted (or a file where a folder is), or
    it would lie under a file or in a folder this user cannot write."""
    full = osp.abspath(osp.expanduser(str(path)))
    if directory and osp.exists(full) and not osp.isdir(full):
        raise UsageError(f'{option} {path} is a file; name a folder')
    if not directory and osp.isdir(full):
        raise UsageError(f'{option} {path} is a folder; name a file')
    existing = full if directory else osp.dirname(full)
    while not osp.exists(existing):
        existing = osp.dirname(existing)
    if not osp.isdir(existing):
        raise UsageError(f'{option} {path}: {existing} is a file, so nothing can be '
                         'written under it')
    if not os.access(existing, os.W_OK | os.X_OK):
        raise UsageError(f'{option} {path}: the folder {existing} is not writable')


class ConfigOptionsAction(DictAction):
    """``--cfg-options KEY=VALUE ...`` for argparse, read as mmengine's ``DictAction``
    reads them, but a malformed pair is one ``error:`` line (exit 2), not a traceback."""

    def __call__(self, parser, namespace, values, option_string=None):
        for pair in values:
            if '=' not in pair or not pair.split('=', 1)[0]:
                print(f'error: {option_string} {pair}: expected KEY=VALUE, e.g. '
                      'train_cfg.max_epochs=12', file=sys.stderr)
                sys.exit(USAGE_EXIT_CODE)
        try:
            super().__call__(parser, namespace, values, option_string)
        except (ValueError, SyntaxError, argparse.ArgumentError) as error:
            print(f'error: {option_string}: cannot read {" ".join(values)}: '
                  f'{_first_line(error)}', file=sys.stderr)
            sys.exit(USAGE_EXIT_CODE)


def _scope_of_type(model_type):
    """Scope named by a ``type`` itself: 'mmdet.X', or a class from mmdet."""
    if isinstance(model_type, str):
        prefix = model_type.partition('.')[0]
        return prefix if '.' in model_type else None
    return getattr(model_type, '__module__', '').partition('.')[0] or None


def _scope_modules(scope):
    """``(MODELS, RUNNERS, register_all_modules)`` of an OpenMMLab task package; raises
    ImportError when it is not installed."""
    registry = importlib.import_module(f'{scope}.registry')
    utils = importlib.import_module(f'{scope}.utils')
    return registry.MODELS, registry.RUNNERS, utils.register_all_modules


def _registered_in(scope, model_type):
    """Whether ``scope``'s own MODELS registry (not a parent) has the type."""
    if importlib.util.find_spec(scope) is None:
        return False
    models, _, register_all_modules = _scope_modules(scope)
    register_all_modules(init_default_scope=False)
    return model_type in models.module_dict


def detect_scope(cfg):
    """Return 'mmdet', 'mmseg' or 'mmpretrain' for a config (``Config`` or dict).

    The config's ``default_scope`` decides when set; otherwise the scope
    whose MODELS registry has ``model.type``.
    """
    scope = cfg.get('default_scope')
    if scope is not None:
        if scope not in SCOPES:
            raise UsageError(
                f'default_scope={scope!r} in the config is not supported; '
                f'mmfec tools serve {", ".join(SCOPES)} configs')
        return scope
    model = cfg.get('model')
    model_type = model.get('type') if isinstance(model, Mapping) else None
    if model_type is None:
        raise UsageError('the config sets neither default_scope nor '
                         'model.type; add default_scope = "mmdet" (detection), '
                         '"mmseg" (segmentation) or "mmpretrain" (classification)')
    named = _scope_of_type(model_type)
    if named is not None:
        if named in SCOPES:
            return named
        found = []
    else:
        found = [s for s in SCOPES if _registered_in(s, model_type)]
    if len(found) == 1:
        return found[0]
    where = (f'{" and ".join(found)} all register' if found else
             f'none of {", ".join(SCOPES)} registers')
    raise UsageError(f'cannot tell the task of this config: {where} model '
                     f'type {model_type!r}; add default_scope = "mmdet", '
                     '"mmseg" or "mmpretrain" to the config')


def init_scope(cfg, scope):
    """Register ``scope``'s modules and make it the config's default scope."""
    try:
        _, _, register_all_modules = _scope_modules(scope)
    except ImportError as error:
        extra = {'mmdet': 'det', 'mmseg': 'seg', 'mmpretrain': 'cls'}[scope]
        raise UsageError(f'this is a {TASKS[scope]} config, but {scope} cannot be '
                         f'imported ({error}); install it: pip install -e ".[{extra}]" '
                         '(or make setup)') from None
    register_all_modules(init_default_scope=True)
    cfg.default_scope = scope


def load_task_config(path, cfg_options=None):
    """Config plus its task scope ('mmdet'/'mmseg'/'mmpretrain'), registries ready.

    What train.py and test.py both do before their own overrides.
    """
    cfg = load_config(path, cfg_options)
    scope = detect_scope(cfg)
    init_scope(cfg, scope)
    if scope == 'mmdet':  # as mmdet's tools: room for torch.compile variants
        from mmdet.utils import setup_cache_size_limit_of_dynamo
        setup_cache_size_limit_of_dynamo()
    return cfg, scope


def check_data(cfg, keys):
    """Fail early, with mmfec's explanation, if the loaders' data is missing.

    ``keys`` are the dataloaders this run uses (test.py needs no train set).
    """
    subset = {'default_scope': cfg.get('default_scope')}
    subset.update({key: cfg[key] for key in keys if cfg.get(key) is not None})
    try:
        check_data_exists(subset)
    except FileNotFoundError as error:
        raise UsageError(str(error)) from None


def is_local_path(path):
    """Whether a checkpoint path is a plain file path (not ``scheme://``)."""
    return '://' not in path


def check_checkpoint_path(path, option):
    """A local checkpoint must exist before minutes of set-up are spent."""
    if is_local_path(path) and not osp.isfile(osp.expanduser(path)):
        what = 'is a directory' if osp.isdir(path) else 'does not exist'
        raise UsageError(f'{option}: checkpoint file {path} {what}')


def build_runner(cfg, scope):
    """Runner from the config, or the task's RUNNERS for ``runner_type``."""
    if 'runner_type' not in cfg:
        return Runner.from_cfg(cfg)
    _, runners, _ = _scope_modules(scope)
    return runners.build(cfg)


def setup_cpu_distributed(cfg):
    """Let ``--launcher pytorch`` (and ``slurm``) run on a machine without a GPU.

    mmengine's pytorch launcher calls ``torch.cuda.set_device`` and gives
    DDP ``device_ids``; both fail without a GPU. Here we start the gloo
    process group ourselves (the Runner then skips its own start) and build
    DDP without device ids. Needs ``env_cfg.dist_cfg.backend=gloo``.
    """
    if cfg.get('launcher') not in ('pytorch', 'slurm') or get_device() != 'cpu':
        return
    if cfg.launcher == 'slurm':  # mmengine's slurm set-up needs a GPU too
        try:
            export_slurm_env()
        except RuntimeError as error:
            raise UsageError(str(error)) from None
    dist_cfg = dict(cfg.get('env_cfg', {}).get('dist_cfg', {}))
    if dist_cfg.pop('backend', 'nccl') != 'gloo':
        raise UsageError('no GPU on this machine, so distributed runs need '
                         'gloo: add --cfg-options '
                         'env_cfg.dist_cfg.backend=gloo')
    if 'timeout' in dist_cfg:
        dist_cfg['timeout'] = datetime.timedelta(seconds=dist_cfg['timeout'])
    if not dist.is_initialized():
        dist.init_process_group(
            backend='gloo',
            rank=int(os.environ['RANK']),
            world_size=int(os.environ['WORLD_SIZE']),
            **dist_cfg)
    wrapper = cfg.get('model_wrapper_cfg') or dict(
        type='MMDistributedDataParallel')
    if wrapper.get('type',
                   'MMDistributedDataParallel') == 'MMDistributedDataParallel':
        wrapper.setdefault('device_ids', None)
    cfg.model_wrapper_cfg = wrapper


def finish_distributed():
    """Wait for every rank, then close the process group before exiting.

    Without it a rank with nothing left to do (rank 1 while rank 0 writes the
    last checkpoint) exits with gloo's threads still running, which aborts it
    ("terminate called without an active exception") and torchrun then kills
    rank 0 in the middle of the save.
    """
    if dist.is_available() and dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
