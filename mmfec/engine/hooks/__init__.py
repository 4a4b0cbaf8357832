"""mmengine hooks of mmfec; importing registers them in mmengine's, mmdet's and mmseg's HOOKS."""
from .cluster_map_hook import ClusterMapHook
from .cluster_purity_hook import ClusterPurityHook
from .rng_state_hook import RNGStateHook

__all__ = ['ClusterMapHook', 'ClusterPurityHook', 'RNGStateHook']
