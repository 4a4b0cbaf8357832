"""A tiny synthetic COCO instance-segmentation set, written in COCO's own layout.

Why: the Mask R-CNN demo has to train on 2 CPU cores in minutes and still show real
learning (box AP50 > 0.5). Three filled shapes of distinct colour and form on a mild
textured background are learnable that fast, and because the files mirror COCO 2017
exactly, the unchanged mmdet COCO configs read them by only changing ``data_root``::

    toy_coco/
    ├── .mmfec_toy_version                 marker: generator version + parameters
    ├── annotations/instances_train2017.json
    ├── annotations/instances_val2017.json
    ├── train2017/000000000001.jpg ...
    └── val2017/000001000001.jpg ...

Only numpy, cv2 and the standard library are used, so the data can be made before
mmdet is installed. Output is deterministic: same arguments, same bytes.

Note on class order: mmdet's ``CocoDataset`` numbers labels in the order of the
category ids in the annotation file, not in the order of ``metainfo['classes']``.
Pass the classes in COCO id order, i.e. :data:`TOY_COCO_CLASSES`.
"""
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path

import cv2
import numpy as np

GENERATOR_VERSION = 2
MARKER_NAME = '.mmfec_toy_version'

# The 80 official COCO 2017 categories (id, name), in id order, and their
# supercategories by first id. Listing all 80 lets the default 80-class config map
# the toy labels to the right class names.
_COCO_IDS = (list(range(1, 12)) + list(range(13, 26)) + [27, 28] +
             list(range(31, 45)) + list(range(46, 66)) + [67, 70] +
             list(range(72, 83)) + list(range(84, 91)))
_COCO_NAMES = (
    'person', 'bicycle', 'car', 'motorcycle', 'airplane', 'bus', 'train', 'truck',
    'boat', 'traffic light', 'fire hydrant', 'stop sign', 'parking meter', 'bench',
    'bird', 'cat', 'dog', 'horse', 'sheep', 'cow', 'elephant', 'bear', 'zebra',
    'giraffe', 'backpack', 'umbrella', 'handbag', 'tie', 'suitcase', 'frisbee',
    'skis', 'snowboard', 'sports ball', 'kite', 'baseball bat', 'baseball glove',
    'skateboard', 'surfboard', 'tennis racket', 'bottle', 'wine glass', 'cup',
    'fork', 'knife', 'spoon', 'bowl', 'banana', 'apple', 'sandwich', 'orange',
    'broccoli', 'carrot', 'hot dog', 'pizza', 'donut', 'cake', 'chair', 'couch',
    'potted plant', 'bed', 'dining table', 'toilet', 'tv', 'laptop', 'mouse',
    'remote', 'keyboard', 'cell phone', 'microwave', 'oven', 'toaster', 'sink',
    'refrigerator', 'book', 'clock', 'vase', 'scissors', 'teddy bear',
    'hair drier', 'toothbrush')
_SUPERCATEGORY_FROM_ID = ((1, 'person'), (2, 'vehicle'), (10, 'outdoor'),
                          (16, 'animal'), (27, 'accessory'), (34, 'sports'),
                          (44, 'kitchen'), (52, 'food'), (62, 'furniture'),
                          (72, 'electronic'), (78, 'appliance'), (84, 'indoor'))

# shape -> (COCO name, COCO id, BGR colour). Distinct colour *and* form per class.
SHAPES = {
    'circle': ('sports ball', 37, (40, 40, 215)),    # red disc
    'triangle': ('kite', 38, (50, 190, 60)),         # green triangle
    'square': ('tv', 72, (210, 110, 30)),            # blue square
}
# Squares and triangles fill less of their circumscribed circle than discs do.
_RADIUS_SCALE = {'circle': 1.0, 'square': 1.2, 'triangle': 1.25}
# Class names in COCO id order: use these as metainfo['classes'] (see module doc).
TOY_COCO_CLASSES = ('sports ball', 'kite', 'tv')
TOY_COCO_CAT_IDS = (37, 38, 72)

DEFAULT_NUM_TRAIN = 200
DEFAULT_NUM_VAL = 50
DEFAULT_IMAGE_SIZE = 128
_SPLITS = {'train2017': (0, 1), 'val2017': (1, 1_000_001)}  # rng stream, first id


def coco_categories():
    """All 80 COCO categories as they appear in the official annotation files."""
    cats = []
    for cat_id, name in zip(_COCO_IDS, _COCO_NAMES):
        sup = [s for first, s in _SUPERCATEGORY_FROM_ID if cat_id >= first][-1]
        cats.append({'supercategory': sup, 'id': cat_id, 'name': name})
    return cats


def _shape_polygon(kind, cx, cy, r, angle):
    """Vertices (float, COCO coordinates) of one filled shape, counter-clockwise."""
    if kind == 'circle':
        t = angle + np.linspace(0, 2 * np.pi, 48, endpoint=False)
    elif kind == 'square':
        t = angle + np.pi / 4 + np.arange(4) * np.pi / 2
    else:
        t = angle + np.arange(3) * 2 * np.pi / 3
    return np.stack([cx + r * np.cos(t), cy + r * np.sin(t)], axis=1)


def _fill_convex(poly, size):
    """Mask of the pixels whose centre lies inside a convex polygon.

    Why not cv2.fillPoly: it also fills pixels the outline merely touches, ~1 px more
    on every side than COCO's rasteriser (pycocotools), where pixel (x, y) covers
    [x, x+1) x [y, y+1). Sampling pixel centres matches COCO, so the drawn shape and
    the decoded annotation agree.
    """
    mask = np.zeros((size, size), np.uint8)
    x0, y0 = np.maximum(np.floor(poly.min(axis=0)).astype(int), 0)
    x1, y1 = np.minimum(np.ceil(poly.max(axis=0)).astype(int), size)
    ys, xs = np.mgrid[y0:y1, x0:x1] + 0.5
    inside = np.ones(xs.shape, bool)
    for (ax, ay), (bx, by) in zip(poly, np.roll(poly, -1, axis=0)):
        inside &= (bx - ax) * (ys - ay) - (by - ay) * (xs - ax) >= 0
    mask[y0:y1, x0:x1] = inside
    return mask


def _background(rng, size):
    """Muted grey with slow light/dark blotches (little colour, so shapes stand out)."""
    base = rng.uniform(95, 165) + rng.uniform(-12, 12, size=3)
    wash = rng.normal(0, 14, size=(5, 5, 1)) + rng.normal(0, 4, size=(5, 5, 3))
    return base + cv2.resize(wash, (size, size), interpolation=cv2.INTER_CUBIC)


def render_scene(rng, size):
    """One image (uint8 BGR) and its objects as (shape kind, uint8 mask, polygon)."""
    img = _background(rng, size)
    objects, placed = [], []
    kinds = list(SHAPES)
    for _ in range(int(rng.integers(1, 5))):
        kind = kinds[int(rng.integers(len(kinds)))]
        for _try in range(50):
            r = rng.uniform(11, 26) * size / 128 * _RADIUS_SCALE[kind]
            cx, cy = rng.uniform(r + 2, size - r - 3, size=2)
            # Circumscribed circles never touch: objects do not overlap at all.
            if all(np.hypot(cx - x, cy - y) >= r + q + 3 for x, y, q in placed):
                break
        else:
            continue
        placed.append((cx, cy, r))
        angle = rng.uniform(-0.35, 0.35) if kind == 'square' else rng.uniform(0, 2 * np.pi)
        poly = _shape_polygon(kind, cx, cy, r, angle)
        mask = _fill_convex(poly, size)
        colour = np.array(SHAPES[kind][2]) + rng.uniform(-25, 25, size=3)
        shade = 1 + 0.12 * np.linspace(-1, 1, size)[None, :, None] * rng.uniform(-1, 1)
        img = np.where(mask[..., None] > 0, colour * shade, img)
        objects.append((kind, mask, poly))
    img = img + rng.normal(0, 5, size=img.shape)
    return np.clip(np.round(img), 0, 255).astype(np.uint8), objects


def _annotation(ann_id, image_id, kind, mask, poly):
    """COCO annotation: polygon from the shape, bbox and area from its raster."""
    ys, xs = np.nonzero(mask)
    x0, x1, y0, y1 = int(xs.min()), int(xs.max()), int(ys.min()), int(ys.max())
    return {
        'id': ann_id,
        'image_id': image_id,
        'category_id': SHAPES[kind][1],
        'segmentation': [[round(float(v), 2) for v in poly.reshape(-1)]],
        'area': float(mask.sum()),
        'bbox': [float(x0), float(y0), float(x1 - x0 + 1), float(y1 - y0 + 1)],
        'iscrowd': 0,
    }


def _write_split(root, split, num, seed, size):
    stream, first_id = _SPLITS[split]
    (root / split).mkdir(parents=True)
    images, anns = [], []
    jpeg = [cv2.IMWRITE_JPEG_QUALITY, 95]
    if hasattr(cv2, 'IMWRITE_JPEG_SAMPLING_FACTOR'):  # keep colour edges crisp
        jpeg += [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    for i in range(num):
        # One rng per image: an image does not change when the counts change.
        rng = np.random.default_rng([seed, stream, i])
        image_id = first_id + i
        file_name = f'{image_id:012d}.jpg'
        img, objects = render_scene(rng, size)
        if not cv2.imwrite(str(root / split / file_name), img, jpeg):
            raise OSError(f'cv2 could not write {root / split / file_name}; '
                          'check free disk space and that opencv has JPEG support')
        images.append({'id': image_id, 'file_name': file_name,
                       'height': size, 'width': size})
        for kind, mask, poly in objects:
            anns.append(_annotation(len(anns) + 1, image_id, kind, mask, poly))
    coco = {
        'info': {'description': 'mmfec toy COCO: synthetic shapes (sports ball = '
                                'circle, kite = triangle, tv = square)',
                 'version': str(GENERATOR_VERSION)},
        'licenses': [],
        'images': images,
        'annotations': anns,
        'categories': coco_categories(),
    }
    (root / 'annotations').mkdir(exist_ok=True)
    with open(root / 'annotations' / f'instances_{split}.json', 'w') as f:
        json.dump(coco, f, separators=(',', ':'))


def generate_toy_coco(out_dir, num_train=DEFAULT_NUM_TRAIN, num_val=DEFAULT_NUM_VAL,
                      seed=0, image_size=DEFAULT_IMAGE_SIZE):
    """Write the toy COCO set into ``out_dir`` (must not exist or be empty).

    Low level: no marker, no atomic swap. Use :func:`ensure_toy_coco` normally.
    """
    out_dir = Path(out_dir)
    if num_train < 1 or num_val < 1:
        raise ValueError(f'num_train and num_val must be >= 1, got {num_train}, {num_val}')
    if image_size < 64:
        raise ValueError(f'image_size must be >= 64 so shapes fit, got {image_size}')
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_split(out_dir, 'train2017', num_train, seed, image_size)
    _write_split(out_dir, 'val2017', num_val, seed, image_size)
    return out_dir


def marker_text(name, params, source_file):
    """The marker file's content: generator name, version, parameters, code digest.

    The digest of the generator's source makes an edited generator rewrite old data.
    """
    code = hashlib.sha256(Path(source_file).read_bytes()).hexdigest()[:16]
    return json.dumps({'generator': name, 'version': GENERATOR_VERSION, 'code': code,
                       **params}, sort_keys=True) + '\n'


def _pid_alive(pid):
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def publish_once(target, marker, build, force=False, log=None):
    """Build a folder in a temp dir next to ``target`` and rename it into place.

    Why: an interrupted run must never leave a half-written data set that looks
    complete. ``target`` counts as up to date only when its marker file holds exactly
    ``marker`` (written last); then nothing is done. Returns ``(target, built)``.
    """
    target = Path(target)
    marker_path = target / MARKER_NAME
    if not force and marker_path.is_file() and marker_path.read_text() == marker:
        if log:
            log(f'{target}: up to date')
        return target, False
    if target.exists() and not marker_path.is_file() and any(target.iterdir()) \
            and not force:
        raise FileExistsError(
            f'{target} exists but was not written by tools/make_toy_data.py (it has no '
            f'{MARKER_NAME}). Move it away, or pass --force (force=True) to replace it.')
    target.parent.mkdir(parents=True, exist_ok=True)
    prefix = f'.{target.name}.tmp-'
    for stale in target.parent.glob(prefix + '*'):  # left by a killed run
        pid = stale.name[len(prefix):].split('-')[0]
        if pid.isdigit() and not _pid_alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    tmp = Path(tempfile.mkdtemp(prefix=f'{prefix}{os.getpid()}-', dir=target.parent))
    old = tmp.with_name(tmp.name + '-old')
    try:
        build(tmp)
        (tmp / MARKER_NAME).write_text(marker)
        os.chmod(tmp, 0o755)  # mkdtemp makes it private
        if target.exists():
            os.rename(target, old)
        try:
            os.rename(tmp, target)
        except OSError:
            # A concurrent run won the race; accept its result if it is the same.
            if not (marker_path.is_file() and marker_path.read_text() == marker):
                if old.exists() and not target.exists():
                    os.rename(old, target)
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        shutil.rmtree(old, ignore_errors=True)
    if log:
        log(f'{target}: written')
    return target, True


def ensure_toy_coco(root='data', num_train=DEFAULT_NUM_TRAIN, num_val=DEFAULT_NUM_VAL,
                    seed=0, image_size=DEFAULT_IMAGE_SIZE, force=False, log=None):
    """Make ``<root>/toy_coco`` unless it already holds this exact set; return its path."""
    params = dict(num_train=num_train, num_val=num_val, seed=seed, image_size=image_size)
    target, _ = publish_once(
        Path(root) / 'toy_coco', marker_text('toy_coco', params, __file__),
        lambda tmp: generate_toy_coco(tmp, **params), force=force, log=log)
    return target
