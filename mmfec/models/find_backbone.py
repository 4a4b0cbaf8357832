"""The FEC backbone inside any model: a bare FEC, a detector, segmentor or classifier."""
import torch.nn as nn

from .backbones import FEC


def find_backbone(model: nn.Module) -> FEC:
    """The module that holds the clustering layers: ``model`` itself for a bare FEC, the
    ``backbone`` of a detector/segmentor/classifier, else the first FEC inside ``model``
    (e.g. under a test-time-augmentation or DDP wrapper). ``ValueError`` when there is
    none."""
    if isinstance(model, FEC):
        return model
    backbone = getattr(model, 'backbone', None)
    if isinstance(backbone, FEC):
        return backbone
    for module in model.modules():
        if isinstance(module, FEC):
            return module
    raise ValueError(f'{type(model).__name__} has no FEC backbone; cluster maps need a '
                     "model built with dict(type='FEC', ...) as its backbone")
