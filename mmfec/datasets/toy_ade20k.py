"""A tiny synthetic ADE20K semantic-segmentation set, written in ADE20K's own layout.

Why: the Semantic FPN demo has to reach mIoU > 0.7 within minutes on a CPU. Each
image is a few large, wavy Voronoi regions, each painted with a class-specific colour
and texture, so the classes are learnable fast. The layout and label convention match
ADEChallengeData2016, so the unchanged mmseg ADE20K config reads it by only changing
``data_root``::

    toy_ade20k/
    ├── .mmfec_toy_version                      marker: generator version + parameters
    ├── images/training/ADE_train_00000001.jpg ...
    ├── images/validation/ADE_val_00000001.jpg ...
    ├── annotations/training/ADE_train_00000001.png ...     (uint8, one channel)
    └── annotations/validation/ADE_val_00000001.png ...

Labels: 0 = "other"/ignore (ADE20K's convention; 255 after ``reduce_zero_label``),
1 wall, 2 building, 3 sky, 4 floor, i.e. ADE20K's first four classes. Region seams are
labelled 0. Training images are square; validation images have sizes that are not
multiples of 32 and varied aspect ratios, to show the model needs no padding.

Only numpy, cv2 and the standard library are used; output is deterministic.
"""
from pathlib import Path

import cv2
import numpy as np

try:
    from .toy_coco import marker_text, publish_once
except ImportError:  # loaded as a top-level module by tools/make_toy_data.py
    from toy_coco import marker_text, publish_once

TOY_ADE20K_CLASSES = ('wall', 'building', 'sky', 'floor')  # labels 1..4
DEFAULT_NUM_TRAIN = 120
DEFAULT_NUM_VAL = 30
DEFAULT_IMAGE_SIZE = 128
VAL_SIZE_RANGE = (90, 224)  # inclusive range of validation heights and widths
_SPLITS = {'training': (0, 'train'), 'validation': (1, 'val')}  # rng stream, stem


def _texture(label, rng, h, w):
    """BGR float image of one class's look: colour + a texture the model can key on."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy += rng.uniform(0, 32)
    xx += rng.uniform(0, 32)
    jitter = rng.uniform(-15, 15, size=3)
    if label == 1:    # wall: warm beige, fine horizontal stripes
        base = np.array([165.0, 195, 222])
        tex = 10 * np.sin(yy * 2 * np.pi / 6)[..., None]
    elif label == 2:  # building: red-brown bricks with light mortar lines
        base = np.array([55.0, 75, 150])
        row = np.floor(yy / 8)
        mortar = (yy % 8 < 1.5) | ((xx + 8 * (row % 2)) % 16 < 1.5)
        tex = 60 * mortar[..., None]
    elif label == 3:  # sky: light blue, smooth vertical gradient
        base = np.array([230.0, 185, 135])
        tex = (-20 * (yy - yy.mean()) / max(h, 1))[..., None]
    else:             # floor: grey checkerboard
        base = np.array([105.0, 112, 120])
        tex = 28 * (((np.floor(yy / 10) + np.floor(xx / 10)) % 2) - 0.5)[..., None]
    return base + jitter + tex


def _render(rng, h, w):
    """One (BGR uint8 image, uint8 label map) pair."""
    n = int(rng.integers(3, 7))
    seeds = rng.uniform(0, 1, size=(n, 2)) * (h, w)
    classes = rng.integers(1, 5, size=n)
    if np.all(classes == classes[0]):
        classes[0] = classes[0] % 4 + 1
    # Warp the coordinates with a slow random field so region borders are wavy.
    amp = 0.08 * min(h, w)
    warp = [cv2.resize(rng.normal(0, amp, size=(4, 4)), (w, h),
                       interpolation=cv2.INTER_CUBIC) for _ in range(2)]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float64)
    yy, xx = yy + warp[0], xx + warp[1]
    dist = (yy[None] - seeds[:, 0, None, None]) ** 2 + \
        (xx[None] - seeds[:, 1, None, None]) ** 2
    labels = classes[np.argmin(dist, axis=0)].astype(np.uint8)
    img = np.zeros((h, w, 3))
    for label in np.unique(labels):
        region = labels == label
        img[region] = _texture(int(label), rng, h, w)[region]
    # Thin seams between different classes: dark paint, label 0 ("other", ignored).
    edge = np.zeros((h, w), np.uint8)
    edge[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    edge[1:, :] |= labels[1:, :] != labels[:-1, :]
    edge = cv2.dilate(edge, np.ones((2, 2), np.uint8)) > 0
    labels[edge] = 0
    img[edge] = rng.uniform(25, 55)
    img += rng.normal(0, 4, size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), labels


def _val_size(rng):
    """A (height, width) with neither side a multiple of 32."""
    lo, hi = VAL_SIZE_RANGE
    sides = []
    while len(sides) < 2:
        side = int(rng.integers(lo, hi + 1))
        if side % 32:
            sides.append(side)
    return tuple(sides)


def _write_split(root, split, num, seed, size):
    stream, stem_part = _SPLITS[split]
    img_dir, ann_dir = root / 'images' / split, root / 'annotations' / split
    img_dir.mkdir(parents=True)
    ann_dir.mkdir(parents=True)
    for i in range(num):
        # One rng per image: an image does not change when the counts change.
        rng = np.random.default_rng([seed, stream, i])
        h, w = (size, size) if split == 'training' else _val_size(rng)
        img, labels = _render(rng, h, w)
        stem = f'ADE_{stem_part}_{i + 1:08d}'
        ok = cv2.imwrite(str(img_dir / f'{stem}.jpg'), img, [cv2.IMWRITE_JPEG_QUALITY, 95])
        ok &= cv2.imwrite(str(ann_dir / f'{stem}.png'), labels)
        if not ok:
            raise OSError(f'cv2 could not write {stem} under {root}; check free disk '
                          'space and that opencv has JPEG/PNG support')


def generate_toy_ade20k(out_dir, num_train=DEFAULT_NUM_TRAIN, num_val=DEFAULT_NUM_VAL,
                        seed=0, image_size=DEFAULT_IMAGE_SIZE):
    """Write the toy ADE20K set into ``out_dir`` (must not exist or be empty).

    Low level: no marker, no atomic swap. Use :func:`ensure_toy_ade20k` normally.
    """
    out_dir = Path(out_dir)
    if num_train < 1 or num_val < 1:
        raise ValueError(f'num_train and num_val must be >= 1, got {num_train}, {num_val}')
    if image_size < 32:
        raise ValueError(f'image_size must be >= 32, got {image_size}')
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_split(out_dir, 'training', num_train, seed, image_size)
    _write_split(out_dir, 'validation', num_val, seed, image_size)
    return out_dir


def ensure_toy_ade20k(root='data', num_train=DEFAULT_NUM_TRAIN, num_val=DEFAULT_NUM_VAL,
                      seed=0, image_size=DEFAULT_IMAGE_SIZE, force=False, log=None):
    """Make ``<root>/toy_ade20k`` unless it already holds this exact set; return its path."""
    params = dict(num_train=num_train, num_val=num_val, seed=seed, image_size=image_size,
                  val_size_range=list(VAL_SIZE_RANGE))
    gen_params = {k: v for k, v in params.items() if k != 'val_size_range'}
    target, _ = publish_once(
        Path(root) / 'toy_ade20k', marker_text('toy_ade20k', params, __file__),
        lambda tmp: generate_toy_ade20k(tmp, **gen_params), force=force, log=log)
    return target
