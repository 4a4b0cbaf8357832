"""Training-time additions for mmengine Runners (hooks). Importing this registers them."""
from .hooks import ClusterMapHook, ClusterPurityHook, RNGStateHook, UnusedOutputsHook

__all__ = ['ClusterMapHook', 'ClusterPurityHook', 'RNGStateHook', 'UnusedOutputsHook']
