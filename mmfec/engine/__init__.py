"""Training-time additions for mmengine Runners (hooks). Importing this registers them."""
from .hooks import ClusterMapHook

__all__ = ['ClusterMapHook']
