"""mmengine hooks of mmfec; importing registers them in mmengine's, mmdet's, mmseg's and
mmpretrain's HOOKS."""
from .cluster_map_hook import ClusterMapHook
from .cluster_purity_hook import ClusterPurityHook
from .preemption_hook import PreemptionHook
from .rng_state_hook import RNGStateHook
from .safe_checkpoint_hook import SafeCheckpointHook
from .unused_outputs_hook import UnusedOutputsHook

__all__ = ['ClusterMapHook', 'ClusterPurityHook', 'PreemptionHook', 'RNGStateHook',
           'SafeCheckpointHook', 'UnusedOutputsHook']
