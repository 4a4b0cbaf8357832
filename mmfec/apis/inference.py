"""Feed one image to a model the way ``tools/test.py`` feeds it: the config's own test
pipeline, then the model's data preprocessor.

As ``mmdet.apis.inference_detector``, ``mmseg.apis.inference_model`` and
``mmpretrain.apis.inference_model`` do, so that the inspection tools (cluster maps,
explorer page, ONNX verification) see exactly the network input that testing sees.
"""
import copy
from dataclasses import dataclass
from typing import Any, List, Optional, Union

import numpy as np
import torch
import torch.nn as nn
from mmengine.dataset import Compose, pseudo_collate
from mmengine.model import ImgDataPreprocessor
from mmengine.registry import DefaultScope

from ..models.find_backbone import find_backbone
from ..utils.cli import UsageError
from ..utils.images import read_image
from ..utils.tasks import BACKBONE
from .model import model_task

ImageLike = Union[str, np.ndarray]
# What a pipeline for inference leaves out: the file is read here, and there is no
# ground truth.
_DROPPED = ('LoadImageFromFile', 'LoadAnnotations', 'LoadImageFromNDArray')
_RESIZING = ('Resize', 'ResizeEdge', 'RandomResize', 'CenterCrop', 'RandomCrop',
             'RandomResizedCrop', 'Pad')
IMAGENET_PREPROCESSOR = dict(mean=[123.675, 116.28, 103.53], std=[58.395, 57.12, 57.375],
                             bgr_to_rgb=True)


@dataclass
class NetworkInput:
    """One image as the network gets it: ``inputs`` ``[1, 3, h, w]`` (normalised, on the
    model's device, padded as the preprocessor pads), ``data_samples`` (the task's, or
    ``None`` for a bare backbone), ``image_rgb`` (uint8 ``[h0, w0, 3]``: the image after
    the test pipeline, before normalisation and padding) and ``size`` ``(h0, w0)``."""
    inputs: torch.Tensor
    data_samples: Optional[List[Any]]
    image_rgb: np.ndarray
    size: tuple


def _type_name(transform) -> str:
    return str(transform.get('type', '')).rpartition('.')[2]


def test_pipeline_cfg(cfg, native_size: bool = False) -> list:
    """The config's test pipeline (``test_dataloader.dataset.pipeline``, else
    ``test_pipeline``), without file/annotation loading; with ``native_size`` also
    without its resizing and cropping steps."""
    pipeline = None
    dataset = (cfg.get('test_dataloader') or {}).get('dataset')
    while dataset is not None and pipeline is None:
        pipeline = dataset.get('pipeline')
        dataset = dataset.get('dataset')
    pipeline = pipeline if pipeline is not None else cfg.get('test_pipeline') or []
    dropped = _DROPPED + (_RESIZING if native_size else ())
    return [copy.deepcopy(t) for t in pipeline if _type_name(t) not in dropped]


def backbone_preprocessor(model: nn.Module):
    """A bare FEC's data preprocessor: the config's ``data_preprocessor`` statistics
    (mean, std, channel order, padding), else FEC's ImageNet ones, as mmengine's
    ``ImgDataPreprocessor``."""
    settings = dict(IMAGENET_PREPROCESSOR)
    own = {k: v for k, v in (model.cfg.get('data_preprocessor') or {}).items()
           if k in ('mean', 'std', 'bgr_to_rgb', 'rgb_to_bgr', 'pad_size_divisor',
                    'pad_value')}
    if own.get('rgb_to_bgr'):
        settings.pop('bgr_to_rgb')
    settings.update(own)
    return ImgDataPreprocessor(**settings).to(next(model.parameters()).device)


def prepare_input(model: nn.Module, image: ImageLike, native_size: bool = False) \
        -> NetworkInput:
    """Run ``image`` (a path, or a uint8 BGR array as cv2 reads it) through ``model``'s
    config test pipeline and data preprocessor; see :class:`NetworkInput`. With
    ``native_size`` the pipeline's resizing and cropping steps are left out."""
    cfg = getattr(model, 'cfg', None)
    if cfg is None:
        raise UsageError('the model has no `cfg`: build it with mmfec.apis.init_model')
    path = image if isinstance(image, str) else None
    array = read_image(image) if path is not None else image
    if not isinstance(array, np.ndarray) or array.ndim != 3 or array.shape[2] != 3:
        raise UsageError('the image must be a path or a uint8 BGR array [H, W, 3]')
    height, width = array.shape[:2]
    data = dict(img=array, img_shape=(height, width), ori_shape=(height, width),
                img_path=path, img_id=0)
    task = model_task(model)
    scope = None if task == BACKBONE else cfg.get('default_scope')
    with DefaultScope.overwrite_default_scope(scope):
        data = Compose(test_pipeline_cfg(cfg, native_size))(data)
    if task == BACKBONE:  # no Pack transform: the image tensor as a Pack would make it
        img = np.ascontiguousarray(data['img'])
        data = dict(inputs=torch.from_numpy(img).permute(2, 0, 1).contiguous(),
                    data_samples=None)
    batch = pseudo_collate([data])
    preprocessor = backbone_preprocessor(model) if task == BACKBONE else model.data_preprocessor
    with torch.no_grad():
        processed = preprocessor(batch, False)
    inputs = processed['inputs']
    raw = batch['inputs'][0]
    size = tuple(int(s) for s in raw.shape[-2:])
    image_rgb = raw.permute(1, 2, 0).numpy()
    if not _is_rgb(preprocessor):
        image_rgb = image_rgb[..., ::-1]
    return NetworkInput(inputs, processed.get('data_samples'),
                        np.ascontiguousarray(image_rgb.astype(np.uint8)), size)


def _is_rgb(preprocessor) -> bool:
    """Whether the preprocessor flips the pipeline's BGR images to RGB."""
    return bool(getattr(preprocessor, '_channel_conversion', False))


def inference_model(model: nn.Module, image: ImageLike):
    """The task's result for one image: a ``DetDataSample`` (detector), ``SegDataSample``
    (segmentor), mmpretrain ``DataSample`` (classifier) or the stage features of a bare
    FEC, computed from the config's test pipeline and data preprocessor."""
    prepared = prepare_input(model, image)
    with torch.no_grad():
        if model_task(model) == BACKBONE:
            return model(prepared.inputs)
        return model.forward(prepared.inputs, prepared.data_samples, mode='predict')[0]


def backbone_of(model: nn.Module):
    """The FEC inside ``model`` (a one-line error when there is none)."""
    try:
        return find_backbone(model)
    except ValueError as error:
        raise UsageError(str(error)) from None
