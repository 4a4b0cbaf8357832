"""Toy data sets for the demos and tests, and a pre-flight check for real data paths.

Nothing here imports mmdet or mmseg: the toy data can be made before they are
installed.
"""
from pathlib import Path

from .checks import check_data_exists, find_missing_data, format_missing_data
from .toy_ade20k import TOY_ADE20K_CLASSES, ensure_toy_ade20k, generate_toy_ade20k
from .toy_coco import TOY_COCO_CAT_IDS, TOY_COCO_CLASSES, ensure_toy_coco, generate_toy_coco
from .toy_imagenet import (
    TOY_IMAGENET_CLASSES,
    ensure_toy_imagenet,
    generate_toy_imagenet,
    render_toy_image,
)


def ensure_toy_data(root='data', only=None, force=False, log=None, **sizes):
    """Make the toy sets under ``root`` unless they are already up to date.

    ``sizes`` (``num_train``, ``num_val``, ``seed``) apply to every set; each set's
    defaults otherwise. Returns ``{'coco': Path, 'ade20k': Path, 'imagenet': Path}``, or
    only the one named by ``only``.
    """
    makers = {'coco': ensure_toy_coco, 'ade20k': ensure_toy_ade20k,
              'imagenet': ensure_toy_imagenet}
    if only is not None and only not in makers:
        raise ValueError(f'only must be None or one of {sorted(makers)}, got {only!r}')
    names = [only] if only else list(makers)
    return {name: Path(makers[name](root, force=force, log=log, **sizes))
            for name in names}


__all__ = [
    'check_data_exists', 'find_missing_data', 'format_missing_data',
    'generate_toy_coco', 'ensure_toy_coco', 'TOY_COCO_CLASSES', 'TOY_COCO_CAT_IDS',
    'generate_toy_ade20k', 'ensure_toy_ade20k', 'TOY_ADE20K_CLASSES',
    'generate_toy_imagenet', 'ensure_toy_imagenet', 'TOY_IMAGENET_CLASSES',
    'render_toy_image', 'ensure_toy_data',
]
