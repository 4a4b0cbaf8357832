from .backbones import FEC
from .cluster_recorder import ClusterRecorder
from ..registry import register_everywhere

register_everywhere('MODELS', FEC)

__all__ = ['FEC', 'ClusterRecorder']
