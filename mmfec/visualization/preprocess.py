"""Images in and out of the network the way a config's model sees them.

Why: cluster maps only mean something when the image is normalised (and sized) like the
images the model was trained on. Detection and segmentation configs say so in their
``data_preprocessor`` and test ``Resize``; a backbone-only config may name its own, and
otherwise the ImageNet statistics of FEC's pre-training apply.
"""
from dataclasses import dataclass
from typing import Optional, Sequence, Tuple

import numpy as np
import torch

IMAGENET_MEAN = (123.675, 116.28, 103.53)  # RGB, 0-255, as FEC's ImageNet training
IMAGENET_STD = (58.395, 57.12, 57.375)
MIN_INPUT_SIDE = 32  # FEC.min_input_size: smaller images are enlarged to this


@dataclass
class Normalization:
    """``(x - mean) / std`` per channel; ``bgr_to_rgb``: flip cv2's BGR to RGB first."""
    mean: Tuple[float, float, float] = IMAGENET_MEAN
    std: Tuple[float, float, float] = IMAGENET_STD
    bgr_to_rgb: bool = True
    source: str = 'ImageNet defaults'


def _get(cfg, key, default=None):
    if cfg is None:
        return default
    try:
        return cfg.get(key, default)
    except AttributeError:
        return getattr(cfg, key, default)


def normalization_from_config(cfg) -> Normalization:
    """Mean/std/channel order from ``model.data_preprocessor``, else a top-level
    ``data_preprocessor``, else ImageNet defaults (RGB)."""
    model = _get(cfg, 'model') or {}
    for where, pre in (('model.data_preprocessor', _get(model, 'data_preprocessor')),
                       ('data_preprocessor', _get(cfg, 'data_preprocessor'))):
        if pre and _get(pre, 'mean') is not None and _get(pre, 'std') is not None:
            mean, std = tuple(map(float, pre['mean'])), tuple(map(float, pre['std']))
            if len(mean) != 3 or len(std) != 3:
                raise ValueError(f'{where}: mean and std need 3 values (one per colour '
                                 f'channel), got mean={mean} std={std}')
            return Normalization(mean, std,
                                 bool(_get(pre, 'bgr_to_rgb') or _get(pre, 'rgb_to_bgr')),
                                 f'the config ({where})')
    return Normalization()


def _pipelines(cfg):
    yield _get(cfg, 'test_pipeline')
    for key in ('test_dataloader', 'val_dataloader'):
        dataset = _get(_get(cfg, key), 'dataset')
        while dataset is not None:
            yield _get(dataset, 'pipeline')
            dataset = _get(dataset, 'dataset')


def config_test_resize(cfg) -> Optional[dict]:
    """The first test-time ``Resize`` with a ``scale`` (``dict(scale, keep_ratio)``), if any."""
    for pipeline in _pipelines(cfg):
        for transform in pipeline or []:
            kind = str(_get(transform, 'type', '')).rpartition('.')[2]
            if kind == 'Resize' and _get(transform, 'scale') is not None:
                return dict(scale=transform['scale'],
                            keep_ratio=bool(_get(transform, 'keep_ratio', False)))
    return None


def resized_size(image_hw: Tuple[int, int], resize: Optional[dict]) -> Tuple[int, int]:
    """``(h, w)`` the network gets: mmcv's ``Resize`` rule, then at least 32 px a side."""
    height, width = image_hw
    if resize is not None:
        scale = resize['scale']
        scale = tuple(scale) if isinstance(scale, (list, tuple)) else scale
        if resize.get('keep_ratio'):
            import mmcv
            width, height = mmcv.rescale_size((width, height), scale)
        else:
            width, height = (scale, scale) if np.isscalar(scale) else tuple(scale)
    short = min(height, width)
    if short < MIN_INPUT_SIDE:
        factor = MIN_INPUT_SIDE / short
        height, width = int(np.ceil(height * factor)), int(np.ceil(width * factor))
    return int(height), int(width)


def to_input(image_bgr: np.ndarray, norm: Normalization,
             size: Optional[Tuple[int, int]] = None) -> torch.Tensor:
    """uint8 BGR ``[H, W, 3]`` (as cv2 reads it) -> normalised float ``[1, 3, h, w]``."""
    import cv2
    image = image_bgr
    if size is not None and tuple(size) != image.shape[:2]:
        shrink = size[0] < image.shape[0]
        image = cv2.resize(image, (size[1], size[0]),
                           interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
    if norm.bgr_to_rgb:
        image = image[..., ::-1]
    x = torch.from_numpy(np.ascontiguousarray(image)).permute(2, 0, 1).float()
    mean = torch.tensor(norm.mean).view(3, 1, 1)
    std = torch.tensor(norm.std).view(3, 1, 1)
    return ((x - mean) / std).unsqueeze(0)


def from_input(inputs: torch.Tensor, mean: Sequence[float], std: Sequence[float],
               is_rgb: bool = True) -> np.ndarray:
    """Normalised ``[3, h, w]`` -> uint8 RGB ``[h, w, 3]`` for drawing (undo ``to_input``)."""
    mean = torch.as_tensor(mean, dtype=torch.float32).reshape(-1, 1, 1)
    std = torch.as_tensor(std, dtype=torch.float32).reshape(-1, 1, 1)
    image = inputs.detach().float().cpu() * std + mean
    image = image.clamp(0, 255).round().byte().permute(1, 2, 0).numpy()
    return np.ascontiguousarray(image if is_rgb else image[..., ::-1])
