"""The val dataloader of a config, set up to deliver the ground truth purity needs.

Why: a detection config's val pipeline may load boxes only (RetinaNet) while purity
needs instance masks; COCO annotations carry them, so the tool asks ``LoadAnnotations``
for them instead of making the user edit the config.
"""
import copy
from typing import Optional

LOAD_ANNOTATIONS = 'LoadAnnotations'


def _type_name(transform) -> str:
    return str(transform.get('type', '')).rpartition('.')[2]


def _pipelines(dataset):
    while dataset is not None:
        if dataset.get('pipeline') is not None:
            yield dataset['pipeline']
        dataset = dataset.get('dataset')


def purity_dataloader_cfg(loader_cfg, scope: str, num_workers: Optional[int] = None):
    """A copy of ``loader_cfg`` (a config's ``val_dataloader``) whose pipeline loads the
    ground truth: for mmdet, ``LoadAnnotations`` gets ``with_mask=True``.

    Raises ``ValueError`` saying what to add when the pipeline loads no annotations.
    """
    if loader_cfg is None:
        raise ValueError('the config has no val_dataloader; cluster purity is measured on '
                         'the val set')
    cfg = copy.deepcopy(loader_cfg)
    if num_workers is not None:
        cfg['num_workers'] = num_workers
        if num_workers == 0:
            cfg['persistent_workers'] = False
    found = False
    for pipeline in _pipelines(cfg.get('dataset')):
        for transform in pipeline:
            if _type_name(transform) == LOAD_ANNOTATIONS:
                found = True
                if scope == 'mmdet':
                    transform['with_mask'] = True
    if not found:
        what = ("dict(type='LoadAnnotations', with_bbox=True, with_mask=True)"
                if scope == 'mmdet' else "dict(type='LoadAnnotations')")
        raise ValueError(f'the val pipeline loads no annotations, so there is no ground '
                         f'truth to measure purity against; add {what} to it')
    return cfg
