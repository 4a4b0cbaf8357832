"""Training-time additions for mmengine Runners (hooks). Importing this registers them."""
from .hooks import ClusterMapHook, ClusterPurityHook, RNGStateHook

__all__ = ['ClusterMapHook', 'ClusterPurityHook', 'RNGStateHook']
