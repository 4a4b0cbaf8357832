"""Training-time additions for mmengine Runners (hooks, loops). Importing this registers them."""
from .hooks import (
                    ClusterMapHook,
                    ClusterPurityHook,
                    PreemptionHook,
                    RNGStateHook,
                    SafeCheckpointHook,
                    UnusedOutputsHook,
)
from .runner import ExactEpochBasedTrainLoop, ExactIterBasedTrainLoop

__all__ = ['ClusterMapHook', 'ClusterPurityHook', 'PreemptionHook', 'RNGStateHook',
           'SafeCheckpointHook', 'UnusedOutputsHook', 'ExactEpochBasedTrainLoop',
           'ExactIterBasedTrainLoop']
