"""Training-time additions for mmengine Runners (hooks). Importing this registers them."""
from .hooks import ClusterMapHook, RNGStateHook

__all__ = ['ClusterMapHook', 'RNGStateHook']
