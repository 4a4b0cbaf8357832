"""Ground truth as one label per pixel, from mmdet's and mmseg's data samples.

Why: purity compares a partition of the pixels with a labelling of them. Segmentation
has one (the semantic map, ignore index left out). Detection has instance masks, which
are turned into one: every instance is its own label, pixels of no instance are the
background label 0, and where instances overlap the smallest one wins (in a photo the
smaller of two overlapping objects is usually the one in front, and this keeps small
objects from vanishing under big ones). Pixels of ignored instances (COCO crowds) that
no other instance covers are not counted.
"""
from typing import Optional, Tuple

import numpy as np

BACKGROUND = 0
DEFAULT_IGNORE_INDEX = 255


def _to_numpy(data) -> np.ndarray:
    if hasattr(data, 'detach'):
        data = data.detach().cpu().numpy()
    return np.asarray(data)


def mask_array(masks) -> np.ndarray:
    """mmdet ``BitmapMasks`` / ``PolygonMasks``, a tensor or an array -> bool ``[N, H, W]``."""
    if hasattr(masks, 'to_ndarray'):
        masks = masks.to_ndarray()
    masks = _to_numpy(masks)
    if masks.ndim != 3:
        raise ValueError(f'instance masks must be [N, H, W], got shape {masks.shape}')
    return masks.astype(bool)


def instance_label_map(masks: np.ndarray, ignore_masks: Optional[np.ndarray] = None,
                       image_size: Optional[Tuple[int, int]] = None
                       ) -> Tuple[np.ndarray, np.ndarray]:
    """Labels ``[H, W]`` int64 (0 = background, instance ``k`` -> ``k + 1``) and the
    ``[H, W]`` bool mask of the pixels to count.

    Args:
        masks: bool ``[N, H, W]``, one mask per instance.
        ignore_masks: bool ``[M, H, W]`` of regions not to count (crowds), or None.
        image_size: ``(H, W)``, needed only when there are no masks at all.
    """
    masks = np.asarray(masks, dtype=bool)
    if masks.ndim != 3:
        raise ValueError(f'instance masks must be [N, H, W], got shape {masks.shape}')
    size = tuple(masks.shape[1:])
    if 0 in size:
        if image_size is None:
            raise ValueError('no instance masks and no image_size: cannot tell the label '
                             "map's size")
        size = tuple(int(v) for v in image_size)
        masks = np.zeros((0,) + size, dtype=bool)
    labels = np.full(size, BACKGROUND, dtype=np.int64)
    # largest first, so that a smaller instance on top of a larger one keeps its pixels
    for k in np.argsort(-masks.reshape(masks.shape[0], -1).sum(1), kind='stable'):
        labels[masks[k]] = k + 1
    valid = np.ones(size, dtype=bool)
    if ignore_masks is not None and len(ignore_masks):
        ignore = np.asarray(ignore_masks, dtype=bool)
        if tuple(ignore.shape[1:]) != size:
            raise ValueError(f'ignore masks {tuple(ignore.shape[1:])} and instance masks '
                             f'{size} differ in size')
        valid &= ~(ignore.any(0) & (labels == BACKGROUND))
    return labels, valid


def label_map(sample, ignore_index: int = DEFAULT_IGNORE_INDEX
              ) -> Tuple[np.ndarray, np.ndarray]:
    """``(labels, valid)`` of one mmseg ``SegDataSample`` or mmdet ``DetDataSample``.

    Segmentation: ``gt_sem_seg``, pixels equal to ``ignore_index`` not counted.
    Detection: ``gt_instances.masks`` (and ``gt_instances_ignore.masks``), see
    :func:`instance_label_map`. Raises ``ValueError`` saying what to add to the
    pipeline when the sample has neither.
    """
    if 'gt_sem_seg' in sample:
        seg = _to_numpy(sample.gt_sem_seg.data)
        seg = seg[0] if seg.ndim == 3 else seg
        seg = seg.astype(np.int64)
        return seg, seg != ignore_index
    instances = sample.get('gt_instances') if hasattr(sample, 'get') else None
    if instances is not None and 'masks' in instances:
        ignored = sample.get('gt_instances_ignore')
        ignore = (mask_array(ignored.masks) if ignored is not None and 'masks' in ignored
                  and len(ignored) else None)
        size = tuple(sample.metainfo.get('ori_shape', ()))[:2] or None
        return instance_label_map(mask_array(instances.masks), ignore, size)
    raise ValueError('the data sample has no ground-truth masks: cluster purity needs '
                     "instance masks (mmdet: dict(type='LoadAnnotations', with_bbox=True, "
                     "with_mask=True) in the val pipeline) or a semantic map (mmseg: "
                     "dict(type='LoadAnnotations') in the val pipeline)")
