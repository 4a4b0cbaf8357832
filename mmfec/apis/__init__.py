"""The one way in: build the model of a config, load a checkpoint, feed it an image.

    from mmfec.apis import init_model, inference_model
    model = init_model('configs/fec_small_in1k_toy.py', 'work_dirs/.../epoch_12.pth')
    result = inference_model(model, 'data/toy_imagenet/val/disc/disc_00001.JPEG')

Shaped like ``mmdet.apis``, ``mmseg.apis`` and ``mmpretrain.apis``, for a detector,
segmentor, classifier or bare FEC; every mmfec tool goes through it.
"""
from ..utils.tasks import BACKBONE, CLASSIFIER, DETECTOR, SEGMENTOR
from .checkpoint import (
    describe_state_dict,
    load_weights,
    read_checkpoint,
    read_state_dict,
    unwrap_model,
)
from .inference import NetworkInput, backbone_of, inference_model, prepare_input
from .model import build_model, choose_device, init_model, is_backbone_config, model_task

__all__ = [
    'init_model', 'inference_model', 'prepare_input', 'NetworkInput', 'backbone_of',
    'build_model', 'model_task', 'is_backbone_config', 'choose_device', 'load_weights',
    'read_checkpoint', 'read_state_dict', 'describe_state_dict', 'unwrap_model', 'BACKBONE',
    'DETECTOR', 'SEGMENTOR', 'CLASSIFIER'
]
