import importlib.util

from ..registry import register_everywhere
from .backbones import FEC
from .cluster_recorder import ClusterRecorder
from .find_backbone import find_backbone

register_everywhere('MODELS', FEC)

if importlib.util.find_spec('mmpretrain') is not None:  # the `cls` extra
    from .classifiers import FECImageClassifier
    register_everywhere('MODELS', FECImageClassifier, scopes=('mmpretrain', ))

__all__ = ['FEC', 'ClusterRecorder', 'find_backbone']
