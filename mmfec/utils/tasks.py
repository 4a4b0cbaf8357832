"""The four kinds of model mmfec's tools serve, and the OpenMMLab package of each."""
BACKBONE, DETECTOR, SEGMENTOR, CLASSIFIER = 'backbone', 'detector', 'segmentor', 'classifier'
TASK_OF_SCOPE = {'mmdet': DETECTOR, 'mmseg': SEGMENTOR, 'mmpretrain': CLASSIFIER}
