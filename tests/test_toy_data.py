"""The toy data sets: deterministic, valid COCO/ADE20K, readable by mmdet and mmseg."""
import json
import subprocess
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from mmfec.datasets import (
    TOY_ADE20K_CLASSES,
    TOY_COCO_CAT_IDS,
    TOY_COCO_CLASSES,
    ensure_toy_ade20k,
    ensure_toy_coco,
    ensure_toy_data,
)
from mmfec.datasets.toy_coco import MARKER_NAME, SHAPES, _fill_convex, publish_once

REPO = Path(__file__).resolve().parents[1]
SMALL_COCO = dict(num_train=4, num_val=2)
SMALL_ADE = dict(num_train=4, num_val=3)


def make_small(root):
    return (ensure_toy_coco(root, **SMALL_COCO), ensure_toy_ade20k(root, **SMALL_ADE))


@pytest.fixture(scope='module')
def toy(tmp_path_factory):
    coco, ade = make_small(tmp_path_factory.mktemp('toy'))
    return dict(coco=coco, ade=ade)


def load_coco(coco_root, split):
    with open(coco_root / 'annotations' / f'instances_{split}.json') as f:
        return json.load(f)


def files_of(root):
    return {p.relative_to(root): p.read_bytes() for p in sorted(root.rglob('*'))
            if p.is_file()}


def polygon_mask(segmentation, h, w):
    """Decode like COCO does (pycocotools); without it, with the generator's rasteriser."""
    try:
        from pycocotools import mask as mask_utils
    except ImportError:
        assert h == w and len(segmentation) == 1
        return _fill_convex(np.array(segmentation[0]).reshape(-1, 2), h)
    return mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(segmentation, h, w)))


def test_same_bytes_every_run(toy, tmp_path):
    coco, ade = make_small(tmp_path)
    for first, second in ((toy['coco'], coco), (toy['ade'], ade)):
        a, b = files_of(first), files_of(second)
        assert a.keys() == b.keys()
        assert all(a[k] == b[k] for k in a), 'generator is not deterministic'


def test_coco_layout_and_json(toy):
    root = toy['coco']
    for split, num in (('train2017', 4), ('val2017', 2)):
        coco = load_coco(root, split)
        assert len(coco['images']) == num
        assert len(list((root / split).glob('*.jpg'))) == num
        cats = {c['id']: c['name'] for c in coco['categories']}
        assert len(cats) == 80  # all of COCO, so the 80-class config maps names right
        assert [cats[i] for i in TOY_COCO_CAT_IDS] == list(TOY_COCO_CLASSES)
        assert {cats[37], cats[38], cats[72]} == {'sports ball', 'kite', 'tv'}
        images = {im['id']: im for im in coco['images']}
        assert len({a['id'] for a in coco['annotations']}) == len(coco['annotations'])
        assert {a['image_id'] for a in coco['annotations']} == set(images)  # none empty
        for ann in coco['annotations']:
            assert ann['category_id'] in TOY_COCO_CAT_IDS and ann['iscrowd'] == 0
            im = images[ann['image_id']]
            x, y, w, h = ann['bbox']
            assert x >= 0 and y >= 0 and x + w <= im['width'] and y + h <= im['height']
            assert ann['area'] > 0


def test_coco_masks_match_boxes_and_pixels(toy):
    root = toy['coco']
    colours = {coco_id: np.array(bgr) for _, coco_id, bgr in SHAPES.values()}
    for split in ('train2017', 'val2017'):
        coco = load_coco(root, split)
        images = {im['id']: im for im in coco['images']}
        for ann in coco['annotations']:
            im = images[ann['image_id']]
            img = cv2.imread(str(root / split / im['file_name']))
            assert img.shape == (im['height'], im['width'], 3)
            mask = polygon_mask(ann['segmentation'], im['height'], im['width'])
            ys, xs = np.nonzero(mask)
            box = [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
            assert np.allclose(box, ann['bbox'], atol=1), (box, ann['bbox'])
            assert abs(int(mask.sum()) - ann['area']) <= 0.05 * ann['area']
            inner = cv2.erode(mask, np.ones((3, 3), np.uint8)) > 0
            mean = img[inner].mean(axis=0)
            assert np.abs(mean - colours[ann['category_id']]).max() < 45, \
                'the annotated mask is not where the coloured shape is drawn'


def test_ade_layout_and_labels(toy):
    root = toy['ade']
    for split, num in (('training', 4), ('validation', 3)):
        images = sorted((root / 'images' / split).glob('*.jpg'))
        labels = sorted((root / 'annotations' / split).glob('*.png'))
        assert len(images) == num
        assert [p.stem for p in images] == [p.stem for p in labels]
        for img_path, label_path in zip(images, labels):
            img = cv2.imread(str(img_path))
            label = cv2.imread(str(label_path), cv2.IMREAD_UNCHANGED)
            assert label.dtype == np.uint8 and label.ndim == 2
            assert label.shape == img.shape[:2]
            assert set(np.unique(label)) <= {0, 1, 2, 3, 4}
            assert (label == 0).any(), 'expected a thin ignore (0) seam'
            h, w = label.shape
            if split == 'training':
                assert (h, w) == (128, 128)
            else:
                assert h % 32 and w % 32, f'{label_path.name}: {h}x{w} is a multiple of 32'


def test_second_call_is_a_noop(toy):
    before = {p: p.stat().st_mtime_ns for p in toy['coco'].rglob('*')}
    messages = []
    start = time.perf_counter()
    assert ensure_toy_coco(toy['coco'].parent, **SMALL_COCO, log=messages.append) \
        == toy['coco']
    assert time.perf_counter() - start < 0.5
    assert messages == [f'{toy["coco"]}: up to date']
    assert {p: p.stat().st_mtime_ns for p in toy['coco'].rglob('*')} == before


def test_changed_parameters_or_force_regenerate(tmp_path):
    messages = []
    ensure_toy_coco(tmp_path, num_train=2, num_val=1, log=messages.append)
    ensure_toy_coco(tmp_path, num_train=3, num_val=1, log=messages.append)
    ensure_toy_coco(tmp_path, num_train=3, num_val=1, force=True, log=messages.append)
    assert [m.rsplit(': ', 1)[1] for m in messages] == ['written'] * 3
    assert len(load_coco(tmp_path / 'toy_coco', 'train2017')['images']) == 3
    assert [p.name for p in tmp_path.iterdir()] == ['toy_coco']  # no temp folders left


def test_interrupted_build_leaves_nothing(tmp_path):
    def broken_build(folder):
        (folder / 'half.json').write_text('{')
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        publish_once(tmp_path / 'toy_coco', 'marker\n', broken_build)
    assert list(tmp_path.iterdir()) == []


def test_foreign_folder_is_not_overwritten(tmp_path):
    (tmp_path / 'toy_coco').mkdir()
    (tmp_path / 'toy_coco' / 'mine.txt').write_text('keep me')
    with pytest.raises(FileExistsError, match='--force'):
        ensure_toy_coco(tmp_path, num_train=1, num_val=1)
    assert (tmp_path / 'toy_coco' / 'mine.txt').read_text() == 'keep me'


def test_ensure_toy_data_and_cli(tmp_path):
    paths = ensure_toy_data(tmp_path, only='ade20k', num_train=2, num_val=1)
    assert paths == {'ade20k': tmp_path / 'toy_ade20k'}
    assert (paths['ade20k'] / MARKER_NAME).is_file()
    cmd = [sys.executable, str(REPO / 'tools' / 'make_toy_data.py'), '--out-dir',
           str(tmp_path), '--only', 'coco', '--num-train', '2', '--num-val', '1']
    first = subprocess.run(cmd, capture_output=True, text=True, check=True)
    second = subprocess.run(cmd, capture_output=True, text=True, check=True)
    assert 'written' in first.stdout and 'up to date' in second.stdout


def test_mmdet_reads_toy_coco(toy):
    pytest.importorskip('mmdet')
    from mmcv.transforms import LoadImageFromFile
    from mmdet.datasets import CocoDataset
    from mmdet.datasets.transforms import LoadAnnotations

    pipeline = [LoadImageFromFile(), LoadAnnotations(with_bbox=True, with_mask=True)]
    coco = load_coco(toy['coco'], 'train2017')
    names = {c['id']: c['name'] for c in coco['categories']}
    for metainfo in (dict(classes=TOY_COCO_CLASSES), None,
                     dict(classes=('sports ball', 'tv', 'kite'))):
        ds = CocoDataset(data_root=str(toy['coco']),
                         ann_file='annotations/instances_train2017.json',
                         data_prefix=dict(img='train2017/'), metainfo=metainfo,
                         filter_cfg=dict(filter_empty_gt=True, min_size=32),
                         pipeline=pipeline)
        assert len(ds) == 4, 'toy images were filtered out'
        n_anns = sum(len(ds.get_data_info(i)['instances']) for i in range(len(ds)))
        assert n_anns == len(coco['annotations'])
        if metainfo is None or metainfo['classes'] == TOY_COCO_CLASSES:
            # label -> class name agrees with the annotation's COCO category
            classes = ds.metainfo['classes']
            for i in range(len(ds)):
                info = ds.get_data_info(i)
                for inst in info['instances']:
                    assert classes[inst['bbox_label']] in names.values()
                    assert ds.cat_ids[inst['bbox_label']] in TOY_COCO_CAT_IDS
                    assert classes[inst['bbox_label']] == \
                        names[ds.cat_ids[inst['bbox_label']]]
        sample = ds[0]
        masks = sample['gt_masks'].masks
        for mask, box in zip(masks, sample['gt_bboxes'].numpy()):
            ys, xs = np.nonzero(mask)
            assert np.allclose([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1], box, atol=1)


def test_mmseg_reads_toy_ade20k(toy):
    pytest.importorskip('mmseg')
    from mmcv.transforms import LoadImageFromFile
    from mmseg.datasets import ADE20KDataset, BaseSegDataset
    from mmseg.datasets.transforms import LoadAnnotations

    common = dict(data_root=str(toy['ade']), pipeline=[LoadImageFromFile(),
                                                       LoadAnnotations()])
    splits = (('training', 4), ('validation', 3))
    for split, num in splits:
        prefix = dict(img_path=f'images/{split}', seg_map_path=f'annotations/{split}')
        for ds in (ADE20KDataset(data_prefix=prefix, reduce_zero_label=True, **common),
                   BaseSegDataset(data_prefix=prefix, img_suffix='.jpg',
                                  seg_map_suffix='.png', reduce_zero_label=True,
                                  metainfo=dict(classes=TOY_ADE20K_CLASSES), **common)):
            assert len(ds) == num
            assert tuple(ds.metainfo['classes'][:4]) == TOY_ADE20K_CLASSES
            sample = ds[0]
            seg = sample['gt_seg_map']
            assert seg.shape == sample['img'].shape[:2]
            assert set(np.unique(seg)) <= {0, 1, 2, 3, 255}
            assert (seg == 255).any()
