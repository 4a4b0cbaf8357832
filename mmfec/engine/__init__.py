"""Training-time additions for mmengine Runners (hooks, loops). Importing this registers them."""
from .hooks import (ClusterMapHook, ClusterPurityHook, PreemptionHook, RNGStateHook,
                    SafeCheckpointHook)
from .runner import ExactEpochBasedTrainLoop, ExactIterBasedTrainLoop

__all__ = ['ClusterMapHook', 'ClusterPurityHook', 'PreemptionHook', 'RNGStateHook',
           'SafeCheckpointHook', 'ExactEpochBasedTrainLoop', 'ExactIterBasedTrainLoop']
