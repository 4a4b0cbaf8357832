"""check_data_exists: clear FileNotFoundError for missing data, silence for present data."""
import pytest

from mmfec.datasets import check_data_exists, ensure_toy_ade20k, ensure_toy_coco, find_missing_data


@pytest.fixture(scope='module')
def roots(tmp_path_factory):
    root = tmp_path_factory.mktemp('data')
    return dict(coco=ensure_toy_coco(root, num_train=2, num_val=1),
                ade=ensure_toy_ade20k(root, num_train=2, num_val=1), base=root)


def coco_ds(data_root, split='train2017', **kwargs):
    return dict(type='CocoDataset', data_root=f'{data_root}/',
                ann_file=f'annotations/instances_{split}.json',
                data_prefix=dict(img=f'{split}/'), **kwargs)


def ade_ds(data_root, split='training', type='ADE20KDataset'):
    return dict(type=type, data_root=str(data_root),
                data_prefix=dict(img_path=f'images/{split}',
                                 seg_map_path=f'annotations/{split}'))


def det_cfg(train, val=None, test=None):
    cfg = dict(default_scope='mmdet', train_dataloader=dict(batch_size=2, dataset=train))
    if val is not None:
        cfg['val_dataloader'] = dict(dataset=val)
    cfg['test_dataloader'] = None if test is None else dict(dataset=test)
    return cfg


def test_toy_data_passes(roots):
    check_data_exists(det_cfg(coco_ds(roots['coco']), coco_ds(roots['coco'], 'val2017'),
                              coco_ds(roots['coco'], 'val2017')))
    check_data_exists(dict(default_scope='mmseg',
                           train_dataloader=dict(dataset=ade_ds(roots['ade'])),
                           val_dataloader=dict(dataset=ade_ds(roots['ade'], 'validation'))))


def test_missing_coco_names_path_layout_and_toy_command(roots):
    cfg = det_cfg(coco_ds(roots['coco']), coco_ds(roots['base'] / 'coco', 'val2017'))
    with pytest.raises(FileNotFoundError) as err:
        check_data_exists(cfg)
    msg = str(err.value)
    assert str(roots['base'] / 'coco') in msg
    assert 'val_dataloader.dataset.data_root' in msg
    assert 'annotations/instances_train2017.json' in msg and 'train2017/*.jpg' in msg
    assert 'cocodataset.org' in msg
    assert 'python tools/make_toy_data.py' in msg and 'data/toy_coco' in msg


def test_missing_file_under_existing_root(roots):
    cfg = det_cfg(coco_ds(roots['coco']))
    cfg['train_dataloader']['dataset']['ann_file'] = 'annotations/instances_test.json'
    missing = find_missing_data(cfg)
    assert [m['where'] for m in missing] == ['train_dataloader.dataset.ann_file']
    assert missing[0]['path'] == f'{roots["coco"]}/annotations/instances_test.json'


def test_missing_ade_shows_ade_layout(roots):
    cfg = dict(train_dataloader=dict(dataset=ade_ds(roots['ade'], 'no_such_split',
                                                    type='BaseSegDataset')))
    with pytest.raises(FileNotFoundError) as err:
        check_data_exists(cfg)
    msg = str(err.value)
    assert 'images/no_such_split' in msg and 'annotations/no_such_split' in msg
    assert 'annotations/training/*.png' in msg and 'ADEChallengeData2016' in msg
    assert 'python tools/make_toy_data.py' in msg and 'data/toy_ade20k' in msg
    assert 'cocodataset.org' not in msg


def test_wrapped_datasets_are_walked(roots):
    good, bad = coco_ds(roots['coco']), coco_ds(roots['base'] / 'nowhere')
    cfg = det_cfg(dict(type='RepeatDataset', times=3, dataset=dict(
        type='ConcatDataset', datasets=[good, dict(type='ClassBalancedDataset',
                                                   oversample_thr=0.1, dataset=bad)])))
    missing = find_missing_data(cfg)
    assert [m['where'] for m in missing] == [
        'train_dataloader.dataset.dataset.datasets[1].dataset.data_root']
    with pytest.raises(FileNotFoundError, match='nowhere'):
        check_data_exists(cfg)


def test_absent_loaders_remote_paths_and_mmengine_config(roots, tmp_path):
    from mmengine.config import Config

    check_data_exists(dict(train_dataloader=None))
    check_data_exists(det_cfg(coco_ds('s3://bucket/coco')))
    check_data_exists(det_cfg(coco_ds(tmp_path / 'x', backend_args=dict(backend='petrel'))))
    check_data_exists(Config(det_cfg(coco_ds(roots['coco']))))
    cfg_file = tmp_path / 'cfg.py'
    cfg_file.write_text(f'train_dataloader = dict(dataset=dict(type="CocoDataset", '
                        f'data_root="{tmp_path}/gone/", ann_file="a.json"))\n')
    with pytest.raises(FileNotFoundError, match='gone'):
        check_data_exists(Config.fromfile(cfg_file))
    with pytest.raises(FileNotFoundError, match='gone'):
        check_data_exists(str(cfg_file))


def test_absolute_ann_file_is_not_joined(roots, tmp_path):
    ds = coco_ds(roots['coco'])
    ds['ann_file'] = str(tmp_path / 'abs.json')
    missing = find_missing_data(det_cfg(ds))
    assert [m['path'] for m in missing] == [str(tmp_path / 'abs.json')]
