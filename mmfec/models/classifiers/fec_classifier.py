"""FEC as an MMPretrain image classifier that reads the official release's ImageNet files.

The paper's classifier is the backbone's last stage, then ``norm`` (GroupNorm with one
group), a global average pool and ``head`` (Linear). In MMPretrain's parts that is
``ImageClassifier(backbone=FEC(out_indices=(3,)), neck=GlobalAveragePooling,
head=LinearClsHead)``: the stage-4 output norm of FEC is ``backbone.norm6`` and the
Linear is ``head.fc``. :class:`FECImageClassifier` is that ``ImageClassifier`` plus one
thing: every load converts the official key layout on the way in, so
``load_checkpoint(model, 'fec_small.pth')``, ``load_from``, ``tools/test.py`` and an
``init_cfg`` of type ``Pretrained`` take the file as downloaded.
"""
import re
from collections import OrderedDict
from typing import Dict, Mapping

import torch
from mmengine.logging import MMLogger
from mmpretrain.models import ImageClassifier

from ..backbones.fec_checkpoint_check import STEM_KEY, CheckpointMismatchError, fec_prefixes

# Official name -> mmfec name; the stage-4 output norm is norm{2 * 3}.
OFFICIAL_KEY_MAP = (('patch_embed.', 'backbone.patch_embed.'),
                    ('network.', 'backbone.network.'),
                    ('norm.', 'backbone.norm6.'),
                    ('head.', 'head.fc.'))
# Top-level groups of a detector's or segmentor's checkpoint (not a classifier's).
_OTHER_TASK_GROUPS = ('neck', 'rpn_head', 'roi_head', 'bbox_head', 'mask_head',
                      'decode_head', 'auxiliary_head')


def is_official_classifier(state_dict: Mapping[str, torch.Tensor], prefix: str = '') -> bool:
    """Whether ``state_dict`` (under ``prefix``) is in the official release's ImageNet
    layout: FEC weights at the top level next to ``head.*``."""
    return prefix + STEM_KEY in state_dict and prefix + 'head.weight' in state_dict


def convert_official_classifier(state_dict: Mapping[str, torch.Tensor],
                                prefix: str = '') -> 'OrderedDict[str, torch.Tensor]':
    """Rename the keys of an official ImageNet checkpoint (``patch_embed.*``,
    ``network.*``, ``norm.*``, ``head.*``) to :class:`FECImageClassifier`'s names."""
    converted = OrderedDict()
    for key, value in state_dict.items():
        name = key[len(prefix):] if key.startswith(prefix) else None
        for old, new in OFFICIAL_KEY_MAP:
            if name is not None and name.startswith(old):
                key = prefix + new + name[len(old):]
                break
        converted[key] = value
    return converted


def _unwrap(state_dict: Dict[str, torch.Tensor]) -> None:
    """In place: ``{'model': {...}}`` (as the official files may be wrapped) -> ``{...}``,
    without a DataParallel ``module.`` prefix."""
    inner = state_dict.get('model')
    if len(state_dict) == 1 and isinstance(inner, dict):
        state_dict.clear()
        state_dict.update((re.sub(r'^module\.', '', k), v) for k, v in inner.items())


class FECImageClassifier(ImageClassifier):
    """MMPretrain's ``ImageClassifier`` that also loads the official FEC ImageNet files.

    Build it as an ``ImageClassifier`` (same arguments): ``backbone=dict(type='FEC',
    out_indices=(3,), ...)``, ``neck=dict(type='GlobalAveragePooling')``,
    ``head=dict(type='LinearClsHead', in_channels=320 | 512, ...)``. What it adds, in
    every ``load_state_dict`` (so in ``load_checkpoint``, ``load_from``, ``--resume`` and
    ``init_cfg=dict(type='Pretrained', ...)`` alike):

    - an official file (``patch_embed.*``, ``network.*``, ``norm.*``, ``head.*``; plain,
      ``state_dict`` or ``model`` wrapped) is renamed to this model's keys, with a
      one-line report;
    - a head of another number of classes is left at its init with a one-line warning
      (fine-tuning on your own classes); everything else keeps PyTorch's checks, and a
      backbone of another arch fails with FEC's :class:`CheckpointMismatchError`;
    - a detector's or segmentor's checkpoint (``neck.*``, ``roi_head.*``,
      ``decode_head.*`` ... and no ``head.*``) fails with an error that says how to start
      a classifier's backbone from it instead.
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._register_load_state_dict_pre_hook(self._convert_on_load)

    @staticmethod
    def convert_state_dict(state_dict, prefix: str = '') -> bool:
        """In place: unwrap ``{'model': ...}`` and rename an official file's keys to this
        model's. Returns whether the keys were the official layout."""
        _unwrap(state_dict)
        if not is_official_classifier(state_dict, prefix):
            return False
        converted = convert_official_classifier(state_dict, prefix)
        state_dict.clear()
        state_dict.update(converted)
        return True

    def _convert_on_load(self, state_dict, prefix, local_metadata, strict, missing_keys,
                         unexpected_keys, error_msgs):
        logger = MMLogger.get_current_instance()
        if self.convert_state_dict(state_dict, prefix):
            logger.info('FECImageClassifier: converted the official FEC checkpoint\'s keys '
                        '(patch_embed.*, network.*, norm.* -> backbone.norm6.*, head.* -> '
                        'head.fc.*)')
        groups = {k[len(prefix):].split('.')[0] for k in state_dict if k.startswith(prefix)}
        if 'head' not in groups and groups & set(_OTHER_TASK_GROUPS):
            where = [p for p in fec_prefixes(state_dict) if p.startswith(prefix)]
            start = (f" To start a classifier's backbone from it, set backbone.init_cfg="
                     f"dict(type='Pretrained', checkpoint=..., prefix='{where[0][len(prefix):]}')"
                     if where else '')
            raise CheckpointMismatchError(
                'the checkpoint is a detector\'s or segmentor\'s (it has '
                f'{", ".join(sorted(g + ".*" for g in groups & set(_OTHER_TASK_GROUPS)))} '
                'and no classification head.*), not a classifier\'s.' + start)
        own = self.head.state_dict(prefix=prefix + 'head.')
        wrong = [k for k in own if k in state_dict and state_dict[k].shape != own[k].shape]
        if wrong:
            weight = state_dict.get(prefix + 'head.fc.weight')
            fc_weight = prefix + 'head.fc.weight'
            what = (f'{weight.shape[0]} classes, this model {own[fc_weight].shape[0]}'
                    if weight is not None and fc_weight in own else 'other shapes')
            logger.warning(f'FECImageClassifier: the checkpoint\'s head has {what}; the head '
                           'is left at its init (as for fine-tuning on other classes)')
            for key in [k for k in state_dict if k.startswith(prefix + 'head.')]:
                del state_dict[key]
