import importlib.util

from ..registry import register_everywhere
from .backbones import FEC
from .cluster_recorder import ClusterRecorder
from .find_backbone import find_backbone

register_everywhere('MODELS', FEC)


def _fec_image_classifier(*args, **kwargs):
    """Build :class:`mmfec.models.classifiers.FECImageClassifier`, importing it (and
    MMPretrain's models, seconds of imports) on first use, not on ``import mmfec``."""
    from .classifiers import FECImageClassifier
    return FECImageClassifier(*args, **kwargs)


_fec_image_classifier.__name__ = 'FECImageClassifier'
if importlib.util.find_spec('mmpretrain') is not None:  # the `cls` extra
    register_everywhere('MODELS', _fec_image_classifier, scopes=('mmpretrain', ))

__all__ = ['FEC', 'ClusterRecorder', 'find_backbone']
