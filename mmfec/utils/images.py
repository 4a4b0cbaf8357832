"""Read an image the way the tools do, with a one-line error for a bad file.

Why: ``tools/visualize_clusters.py`` and ``tools/deployment/pytorch2onnx.py --image``
both read user images with OpenCV (as mmcv's ``LoadImageFromFile`` does, BGR) and must
say what is wrong with a path instead of failing later on ``None``.
"""
import os.path as osp

import cv2
import numpy as np

from .cli import UsageError


def read_image(path: str) -> np.ndarray:
    """uint8 BGR ``[H, W, 3]`` as ``cv2.imread`` gives it; :class:`UsageError` naming the
    file when it is missing, a directory, or not an image OpenCV can decode."""
    if not osp.isfile(path):
        what = 'is a directory' if osp.isdir(path) else 'does not exist'
        raise UsageError(f'cannot read image {path}: the file {what}')
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None or image.size == 0:
        raise UsageError(f'cannot read image {path}: OpenCV cannot decode it (use a JPEG, '
                         'PNG, BMP, TIFF or WebP file)')
    return image


def resize_image(image: np.ndarray, size) -> np.ndarray:
    """``image`` resized to ``(h, w)``: area averaging when shrinking, bilinear when
    enlarging (cv2)."""
    height, width = (int(s) for s in size)
    if (height, width) == image.shape[:2]:
        return image
    shrink = height < image.shape[0]
    return cv2.resize(image, (width, height),
                      interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)


_IMAGE_MAGIC = (b'\xff\xd8\xff', b'\x89PNG', b'BM', b'II*\x00', b'MM\x00*', b'GIF8')


def looks_like_image(path: str) -> bool:
    """Whether the file at ``path`` starts like an image OpenCV reads (JPEG, PNG, BMP,
    TIFF, GIF, WebP), whatever its name says."""
    try:
        with open(path, 'rb') as file:
            head = file.read(12)
    except OSError:
        return False
    return head.startswith(_IMAGE_MAGIC) or (head[:4] == b'RIFF' and head[8:12] == b'WEBP')
