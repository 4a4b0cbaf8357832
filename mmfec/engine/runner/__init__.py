"""mmengine training loops of mmfec; importing registers them in mmengine's, mmdet's and
mmseg's LOOPS."""
from .loops import BadSampleError, ExactEpochBasedTrainLoop, ExactIterBasedTrainLoop

__all__ = ['BadSampleError', 'ExactEpochBasedTrainLoop', 'ExactIterBasedTrainLoop']
