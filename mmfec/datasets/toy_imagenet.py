"""A tiny synthetic image-classification set, written in ImageNet's folder layout.

Why: the classification demo trains FEC-Small from scratch on 2 CPU cores in about a
minute and must still show real learning (top-1 well above chance). Each image holds one
large filled shape whose form (and, loosely, colour) is its class, on a textured
background. The layout is the one mmpretrain's ``ImageNet`` and ``CustomDataset`` read
without annotation files, so the ImageNet configs read it by only changing
``data_root``::

    toy_imagenet/
    ├── .mmfec_toy_version                marker: generator version + parameters
    ├── train/<class>/<class>_00001.JPEG ...
    └── val/<class>/<class>_00001.JPEG ...

Classes (one folder each, in this order: label i is the i-th sorted folder name):
:data:`TOY_IMAGENET_CLASSES`. Only numpy, cv2 and the standard library are used;
output is deterministic: same arguments, same bytes.
"""
from pathlib import Path

import cv2
import numpy as np

try:
    from .toy_coco import _fill_convex, _shape_polygon, marker_text, publish_once
except ImportError:  # loaded as a top-level module by tools/make_toy_data.py
    from toy_coco import _fill_convex, _shape_polygon, marker_text, publish_once

# Sorted, so that a folder's index (mmpretrain numbers folders in sorted order) is its
# position here.
TOY_IMAGENET_CLASSES = ('disc', 'ring', 'square', 'triangle')
DEFAULT_NUM_TRAIN = 240  # images in all, spread evenly over the classes
DEFAULT_NUM_VAL = 60
DEFAULT_IMAGE_SIZE = 64
# A base colour per class (BGR); every image jitters it strongly, so form matters too.
_COLOURS = {'disc': (40, 40, 215), 'ring': (200, 60, 200), 'square': (210, 110, 30),
            'triangle': (50, 190, 60)}
_SPLITS = {'train': 0, 'val': 1}  # rng stream


def _shape_mask(kind, rng, size):
    """uint8 mask of one large shape of ``kind`` somewhere in a ``size`` image."""
    r = rng.uniform(0.24, 0.38) * size
    cx, cy = rng.uniform(r + 1, size - r - 1, size=2)
    angle = rng.uniform(0, 2 * np.pi)
    if kind == 'ring':
        outer = _fill_convex(_shape_polygon('circle', cx, cy, r, angle), size)
        inner = _fill_convex(_shape_polygon('circle', cx, cy, r * 0.55, angle), size)
        return outer & (1 - inner)
    return _fill_convex(_shape_polygon('circle' if kind == 'disc' else kind,
                                       cx, cy, r * (1.0 if kind == 'disc' else 1.2), angle),
                        size)


def render_toy_image(kind, rng, size=DEFAULT_IMAGE_SIZE):
    """One toy image (uint8 BGR, ``size`` x ``size``) showing a shape of class ``kind``."""
    if kind not in _COLOURS:
        raise ValueError(f'kind must be one of {TOY_IMAGENET_CLASSES}, got {kind!r}')
    base = rng.uniform(90, 170) + rng.uniform(-15, 15, size=3)
    wash = rng.normal(0, 18, size=(4, 4, 3))
    img = base + cv2.resize(wash, (size, size), interpolation=cv2.INTER_CUBIC)
    mask = _shape_mask(kind, rng, size)
    colour = np.array(_COLOURS[kind]) + rng.uniform(-60, 60, size=3)
    img = np.where(mask[..., None] > 0, colour, img)
    img = img + rng.normal(0, 6, size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8)


def _write_split(root, split, num, seed, size):
    stream = _SPLITS[split]
    for label, kind in enumerate(TOY_IMAGENET_CLASSES):
        folder = root / split / kind
        folder.mkdir(parents=True)
        for i in range(label, num, len(TOY_IMAGENET_CLASSES)):
            # One rng per image: an image does not change when the counts change.
            rng = np.random.default_rng([seed, stream, i])
            path = folder / f'{kind}_{i // len(TOY_IMAGENET_CLASSES) + 1:05d}.JPEG'
            if not cv2.imwrite(str(path), render_toy_image(kind, rng, size),
                               [cv2.IMWRITE_JPEG_QUALITY, 95]):
                raise OSError(f'cv2 could not write {path}; check free disk space and '
                              'that opencv has JPEG support')


def generate_toy_imagenet(out_dir, num_train=DEFAULT_NUM_TRAIN, num_val=DEFAULT_NUM_VAL,
                          seed=0, image_size=DEFAULT_IMAGE_SIZE):
    """Write the toy classification set into ``out_dir`` (must not exist or be empty).

    Low level: no marker, no atomic swap. Use :func:`ensure_toy_imagenet` normally.
    """
    out_dir = Path(out_dir)
    classes = len(TOY_IMAGENET_CLASSES)
    if num_train < classes or num_val < classes:
        raise ValueError(f'num_train and num_val must be >= {classes} (one image per '
                         f'class), got {num_train}, {num_val}')
    if image_size < 32:
        raise ValueError(f'image_size must be >= 32 (FEC\'s smallest input), got '
                         f'{image_size}')
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_split(out_dir, 'train', num_train, seed, image_size)
    _write_split(out_dir, 'val', num_val, seed, image_size)
    return out_dir


def ensure_toy_imagenet(root='data', num_train=DEFAULT_NUM_TRAIN, num_val=DEFAULT_NUM_VAL,
                        seed=0, image_size=DEFAULT_IMAGE_SIZE, force=False, log=None):
    """Make ``<root>/toy_imagenet`` unless it already holds this exact set; return its
    path."""
    params = dict(num_train=num_train, num_val=num_val, seed=seed, image_size=image_size)
    target, _ = publish_once(
        Path(root) / 'toy_imagenet', marker_text('toy_imagenet', params, __file__),
        lambda tmp: generate_toy_imagenet(tmp, **params), force=force, log=log)
    return target
