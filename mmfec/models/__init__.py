from .backbones import FEC
from .cluster_recorder import ClusterRecorder
from .registry import register_modules

register_modules(FEC)

__all__ = ['FEC', 'ClusterRecorder', 'register_modules']
