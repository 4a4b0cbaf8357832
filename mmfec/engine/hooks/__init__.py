"""mmengine hooks of mmfec; importing registers them in mmengine's, mmdet's and mmseg's HOOKS."""
from .cluster_map_hook import ClusterMapHook

__all__ = ['ClusterMapHook']
