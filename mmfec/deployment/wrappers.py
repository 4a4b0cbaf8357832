"""What an exported graph computes: one image tensor in, plain tensors out.

Why: mmdet/mmseg/mmpretrain models take data samples and return data samples; an ONNX graph takes
and returns tensors. Each wrapper below is the tensor-only part of one kind of model,
with a name for every output, in the order the model produces them:

* backbone: ``[1, 3, H, W]`` -> the stage features in ``out_indices`` order
  (``stage{i}``, stride ``4 * 2**i``);
* segmentor: -> ``seg_logits`` ``[1, num_classes, H, W]``, what
  ``EncoderDecoder.encode_decode`` gives (decode head output resized to the input size);
* single-stage detector (RetinaNet): -> the head's raw outputs in ``model._forward``
  order, class scores of every level, then box deltas of every level;
* two-stage detector (Mask R-CNN): -> the neck's feature maps and the RPN head's raw
  outputs. Proposals and the RoI heads are not part of the graph (docs/deployment.md
  says why);
* classifier (mmpretrain ``ImageClassifier``): -> ``logits`` ``[1, num_classes]``, what
  ``model(x, mode='tensor')`` gives (before softmax).

The input is the preprocessed image: colour order, mean and std as the config's
``data_preprocessor``, any resizing and padding already done.
"""
from typing import List, Tuple

import torch.nn as nn
from torch import Tensor

from ..models import FEC
from ..utils.cli import UsageError
from ..utils.tasks import BACKBONE, CLASSIFIER, DETECTOR, SEGMENTOR


class ExportModule(nn.Module):
    """Base: ``model`` wrapped so that ``forward(image)`` returns a tuple of tensors named
    by :meth:`output_names` (``num_levels`` where it depends on the model)."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def output_names(self, outputs: Tuple[Tensor, ...]) -> List[str]:
        raise NotImplementedError


class BackboneExport(ExportModule):
    """A bare FEC: the stage features."""

    def forward(self, image: Tensor) -> Tuple[Tensor, ...]:
        return tuple(self.model(image))

    def output_names(self, outputs):
        return [f'stage{i}' for i in self.model.out_indices]


class SegmentorExport(ExportModule):
    """An mmseg ``EncoderDecoder``: per-class logits at the input size."""

    def forward(self, image: Tensor) -> Tuple[Tensor]:
        height, width = image.shape[-2:]
        shape = (int(height), int(width))
        metas = [dict(img_shape=shape, ori_shape=shape, pad_shape=shape)]
        return (self.model.encode_decode(image, metas),)

    def output_names(self, outputs):
        return ['seg_logits']


class SingleStageDetectorExport(ExportModule):
    """An mmdet single-stage detector: ``bbox_head(neck(backbone(x)))`` flattened, all
    levels' class scores, then all levels' box deltas (then any further per-level outputs
    a head has, e.g. centerness)."""

    def forward(self, image: Tensor) -> Tuple[Tensor, ...]:
        return tuple(t for per_level in self.model._forward(image) for t in per_level)

    GROUPS = ('cls_score', 'bbox_pred', 'centerness')

    def output_names(self, outputs):
        levels = len(self.model.bbox_head.prior_generator.strides)
        groups = len(outputs) // levels
        names = [self.GROUPS[g] if g < len(self.GROUPS) else f'output{g}'
                 for g in range(groups)]
        return [f'{name}_{level}' for name in names for level in range(levels)]


class TwoStageDetectorExport(ExportModule):
    """An mmdet two-stage detector up to its proposals: the neck's feature maps, then the
    RPN head's class scores and box deltas per level."""

    def forward(self, image: Tensor) -> Tuple[Tensor, ...]:
        feats = tuple(self.model.extract_feat(image))
        cls_scores, bbox_preds = self.model.rpn_head(feats)
        return feats + tuple(cls_scores) + tuple(bbox_preds)

    def output_names(self, outputs):
        levels = len(outputs) // 3
        return ([f'feat_{i}' for i in range(levels)]
                + [f'rpn_cls_score_{i}' for i in range(levels)]
                + [f'rpn_bbox_pred_{i}' for i in range(levels)])


class ClassifierExport(ExportModule):
    """An mmpretrain ``ImageClassifier``: the head's logits (before softmax)."""

    def forward(self, image: Tensor) -> Tuple[Tensor]:
        return (self.model(image, mode='tensor'),)

    def output_names(self, outputs):
        return ['logits']


KINDS_HELP = ("an FEC backbone (model = dict(type='FEC', ...)), an MMSegmentation "
              'EncoderDecoder segmentor, an MMDetection single-stage or two-stage detector, or '
              'an MMPretrain ImageClassifier')


def _exportable(model: nn.Module, kind: str) -> bool:
    if kind == BACKBONE:
        return isinstance(model, FEC)
    try:
        if kind == SEGMENTOR:
            from mmseg.models.segmentors import EncoderDecoder
            return isinstance(model, EncoderDecoder)
        if kind == DETECTOR:
            from mmdet.models.detectors import SingleStageDetector, TwoStageDetector
            return isinstance(model, (SingleStageDetector, TwoStageDetector))
        if kind == CLASSIFIER:
            from mmpretrain.models import ImageClassifier
            return isinstance(model, ImageClassifier)
    except ImportError:
        return False
    return False


def wrap(model: nn.Module, kind: str) -> ExportModule:
    """The export module for a built model of ``kind`` ('backbone', 'segmentor',
    'detector' or 'classifier', as ``mmfec.apis.model_task`` says); a one-line error for
    a model this tool cannot export."""
    if not _exportable(model, kind):
        raise UsageError(f'cannot export a {type(model).__name__}: this tool exports '
                         f'{KINDS_HELP}')
    if kind == CLASSIFIER:
        return ClassifierExport(model)
    if kind == BACKBONE:
        return BackboneExport(model)
    if kind == SEGMENTOR:
        return SegmentorExport(model)
    if kind == DETECTOR:
        from mmdet.models.detectors import TwoStageDetector
        if isinstance(model, TwoStageDetector):
            return TwoStageDetectorExport(model)
        return SingleStageDetectorExport(model)
    raise ValueError(f'unknown model kind {kind!r}; expected one of {BACKBONE}, {SEGMENTOR}, '
                     f'{DETECTOR}, {CLASSIFIER}')
