"""Cluster purity against ground truth (mmfec.analysis): constructed cases with known
answers, the grid baseline on a known layout, ignore labels, real FEC records, and the
measurement through tools/analyze_clusters.py and ClusterPurityHook."""
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from det_utils import explain, run_tool, toy_data_options
from tool_utils import load_tool

from mmfec.analysis import (
    PurityMeter,
    cells_per_region,
    format_table,
    grid_partition,
    image_purities,
    instance_label_map,
    label_map,
    layer_grid,
    num_cells,
    purity,
    purity_dataloader_cfg,
)
from mmfec.visualization import cluster_maps, record_clusters

ROOT = Path(__file__).resolve().parents[1]
ROW_KEYS = {'layer', 'clusters', 'purity', 'grid_purity', 'advantage'}
FEC_SMALL_LAYERS = 3 + 4 + 5 + 2 + 3  # 14 encodings, 3 poolings


def objects_layout():
    """8x8 labels: background 0, object 1 in rows 0-3 / cols 0-2, object 2 in the lower
    right 4x4 quarter."""
    labels = np.zeros((8, 8), np.int64)
    labels[0:4, 0:3] = 1
    labels[4:8, 4:8] = 2
    return labels


# ------------------------------------------------------------------ purity itself
def test_one_cluster_per_object_is_perfectly_pure():
    labels = objects_layout()
    clusters = labels * 7 + 3  # any ids, one per object (and one for the background)
    assert purity(clusters, labels) == 1.0


def test_a_cluster_that_straddles_two_labels_counts_its_larger_one():
    labels = np.zeros((4, 4), np.int64)
    labels[:, 3] = 1  # a quarter of the pixels
    assert purity(np.zeros((4, 4), np.int64), labels) == 0.75
    halves = np.zeros((4, 4), np.int64)
    halves[:2] = 1  # two clusters, each 3/4 label 0
    assert purity(halves, labels) == 0.75


def test_ignored_pixels_are_not_counted():
    labels = objects_layout()
    labels[0:4, 3] = 255  # would make the object's cluster impure
    clusters = np.where(labels == 255, 1, labels)  # ignore pixels join object 1's cluster
    assert purity(clusters, labels) < 1.0
    assert purity(clusters, labels, labels != 255) == 1.0
    assert purity(clusters, labels, np.zeros_like(labels, bool)) is None


def test_sizes_must_agree():
    with pytest.raises(ValueError, match='differ in size'):
        purity(np.zeros((4, 4)), np.zeros((4, 5)))


# ------------------------------------------------------------------ the grid baseline
def test_grid_with_the_layers_cells_per_fold_region_on_a_known_layout():
    # an encoding with 2x2 centers in each of 2x2 fold regions: 4x4 cells of 2x2 pixels
    assert cells_per_region((4, 4), (2, 2)) == ([2, 2], [2, 2])
    grid = layer_grid((8, 8), (4, 4), (2, 2))
    rows, cols = np.mgrid[0:8, 0:8]
    expected = (rows // 2) * 4 + cols // 2
    assert (np.unique(grid, return_inverse=True)[1].reshape(8, 8) ==
            np.unique(expected, return_inverse=True)[1].reshape(8, 8)).all()
    # object 1 covers columns 0-2 of rows 0-3: the two cells over columns 2-3 there hold
    # 2 object and 2 background pixels each, so 4 of the 64 pixels are in the minority
    assert purity(grid, objects_layout()) == 60 / 64


def test_grid_follows_uneven_fold_regions_of_a_pooling():
    # a pooling to 7x5 centers with a fold of 2 rows: regions of 3 and 4 center rows
    assert cells_per_region((7, 5), (2, 1)) == ([3, 4], [5])
    grid = grid_partition((14, 10), [3, 4], [5])
    assert np.unique(grid).size == 7 * 5
    row_cells = [np.unique(grid[r]).min() // 5 for r in range(14)]
    # rows 0-6 (region 1) in 3 cells of 2, 2, 3 rows; rows 7-13 in 4 cells of 1, 2, 2, 2
    assert row_cells == [0, 0, 1, 1, 2, 2, 2, 3, 4, 4, 5, 5, 6, 6]


def test_grid_has_no_more_cells_than_the_layer_has_points():
    # 7x7 centers over a 4x4 stage-4 map (a 128-px image): at most 4x4 clusters
    assert cells_per_region((7, 7), (1, 1), point_grid=(4, 4)) == ([4], [4])
    assert num_cells((7, 7), (1, 1), point_grid=(4, 4)) == 16
    assert num_cells((14, 14), (2, 2), point_grid=(32, 32)) == 196  # enough points: all
    assert np.unique(layer_grid((128, 128), (7, 7), (1, 1), (4, 4))).size == 16


# ------------------------------------------------------------------ ground truth
def test_instances_become_labels_smallest_on_top_crowds_left_out():
    big = np.zeros((6, 6), bool)
    big[0:4, 0:4] = True
    small = np.zeros((6, 6), bool)
    small[2:4, 2:5] = True  # overlaps the big one and sticks out of it
    crowd = np.zeros((6, 6), bool)
    crowd[4:6, :] = True
    crowd[3, 0] = True  # under the big instance: stays counted
    labels, valid = instance_label_map(np.stack([small, big]), crowd[None])
    assert (labels[small] == 1).all()  # instance 0 -> label 1, kept where they overlap
    assert (labels[big & ~small] == 2).all()
    assert (labels[~big & ~small] == 0).all()  # background
    assert valid[3, 0] and not valid[4:6].any() and valid[:4].all()


def test_label_map_of_segmentation_and_detection_samples():
    from mmdet.structures import DetDataSample
    from mmdet.structures.mask import BitmapMasks
    from mmengine.structures import InstanceData, PixelData
    from mmseg.structures import SegDataSample
    seg = SegDataSample()
    sem = torch.tensor([[0, 1], [255, 2]], dtype=torch.uint8)[None]
    seg.gt_sem_seg = PixelData(data=sem)
    labels, valid = label_map(seg)
    assert labels.tolist() == [[0, 1], [255, 2]]
    assert valid.tolist() == [[True, True], [False, True]]
    det = DetDataSample(metainfo=dict(ori_shape=(2, 3)))
    det.gt_instances = InstanceData(masks=BitmapMasks(np.array([[[1, 1, 0], [0, 0, 0]]]),
                                                      2, 3))
    labels, valid = label_map(det)
    assert labels.tolist() == [[1, 1, 0], [0, 0, 0]] and valid.all()
    with pytest.raises(ValueError, match='with_mask=True'):
        label_map(DetDataSample(metainfo=dict(ori_shape=(2, 3))))


def test_val_pipeline_is_asked_for_instance_masks():
    from mmengine.config import Config
    cfg = Config.fromfile(str(ROOT / 'configs' / 'retinanet_fec.py'))
    loader = purity_dataloader_cfg(cfg.val_dataloader, 'mmdet', num_workers=0)
    loads = [t for t in loader.dataset.pipeline if t['type'] == 'LoadAnnotations']
    assert loads and all(t['with_mask'] for t in loads)
    assert loader.num_workers == 0
    assert not any(t.get('with_mask') for t in cfg.val_dataloader.dataset.pipeline
                   if t['type'] == 'LoadAnnotations')  # the config itself is untouched
    cfg.val_dataloader.dataset.pipeline = [dict(type='LoadImageFromFile')]
    with pytest.raises(ValueError, match='loads no annotations'):
        purity_dataloader_cfg(cfg.val_dataloader, 'mmdet')


# ------------------------------------------------------------------ on real records
@pytest.fixture(scope='module')
def records():
    from mmfec.models import FEC
    torch.manual_seed(0)
    backbone = FEC('small', proposal_sizes=2, fold_sizes=(2, 2, 1, 1)).eval()
    return record_clusters(backbone, torch.randn(1, 3, 48, 64))


def test_pooling_clusters_are_pure_against_any_coarser_pooling(records):
    # every pool2 cluster lies inside one pool4 cluster (the hierarchy), so with pool4's
    # clusters as the ground truth pool2, pool3 and pool4 are all exactly pure
    labels = cluster_maps(records, (45, 61), layers=['pool4'])[0].ids
    rows = {r['layer']: r for r in image_purities(records, labels)}
    assert len(rows) == FEC_SMALL_LAYERS
    for name in ('pool2', 'pool3', 'pool4'):
        assert rows[name]['purity'] == 1.0
    assert rows['pool4']['clusters'] == 2 * 2 and rows['pool2']['clusters'] == 6 * 8
    assert rows['pool4']['grid_purity'] < 1.0  # the grid does not follow these clusters


def test_encoding_purity_is_the_mean_over_its_heads(records):
    labels = np.zeros((48, 64), np.int64)
    labels[10:30, 20:50] = 1
    rows = {r['layer']: r for r in image_purities(records, labels, layers=['stage3.block0'])}
    row = rows['stage3.block0']
    (record,) = [r for r in records if r['name'] == 'network.4.0.token_mixer']
    heads = record['assignment'].shape[1]
    per_head = [purity(cluster_maps(records, (48, 64), head=h, layers=['stage3.block0'])[0].ids,
                       labels) for h in range(heads)]
    assert heads == 8 and row['purity'] == pytest.approx(np.mean(per_head))
    assert row['clusters'] == 2 * 2  # proposal 2x2, one fold region in stage 3
    assert row['grid_purity'] == purity(layer_grid((48, 64), (2, 2), (1, 1)), labels)


def test_meter_averages_over_images_and_skips_images_with_nothing_counted():
    meter = PurityMeter()
    meter.add([dict(layer='pool2', clusters=4, purity=0.9, grid_purity=0.7)])
    meter.add([dict(layer='pool2', clusters=6, purity=0.5, grid_purity=0.5)])
    meter.add([dict(layer='pool2', clusters=6, purity=None, grid_purity=None)])
    (row,) = meter.rows()
    assert set(row) == ROW_KEYS and meter.images == 3
    assert row['purity'] == pytest.approx(0.7) and row['grid_purity'] == pytest.approx(0.6)
    assert row['advantage'] == pytest.approx(0.1) and row['clusters'] == 5
    text = format_table(meter.rows())
    assert 'grid purity' in text and '0.700' in text and '+0.100' in text


# ------------------------------------------------------------------ the tool
def _check_rows(rows, layers=FEC_SMALL_LAYERS):
    assert [set(r) for r in rows] == [ROW_KEYS] * layers
    for row in rows:
        assert 0.0 <= row['grid_purity'] <= 1.0 and 0.0 <= row['purity'] <= 1.0
        assert row['advantage'] == pytest.approx(row['purity'] - row['grid_purity'])
    return {r['layer']: r for r in rows}


@pytest.mark.slow
def test_tool_on_a_detection_config_with_a_checkpoint(tmp_path):
    from mmdet.registry import MODELS
    from mmdet.utils import register_all_modules
    from mmengine.config import Config

    from mmfec.datasets import ensure_toy_coco
    data = ensure_toy_coco(tmp_path / 'data', num_train=1, num_val=3, image_size=64)
    config = ROOT / 'configs' / 'maskrcnn_fec_toy.py'
    register_all_modules()
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(config)).model)
    torch.save({'state_dict': model.state_dict()}, tmp_path / 'det.pth')
    out = tmp_path / 'out' / 'purity.json'
    result = run_tool(['tools/analyze_clusters.py', config, tmp_path / 'det.pth',
                       '--num-images', 2, '--out', out,
                       '--cfg-options', *toy_data_options(data)])
    assert result.returncode == 0, explain(result)
    assert 'on 2 of 3 val images' in result.stdout and 'loaded' in result.stdout
    rows = _check_rows(json.loads(out.read_text()))
    assert rows['stage1.block0']['clusters'] == 2 * 2 * 7 * 7  # 2x2 regions of 7x7 centers
    assert rows['pool2']['clusters'] == 8 * 8  # 64-px images: an 8x8 stride-8 grid
    assert 'grid purity' in result.stdout and 'pool4' in result.stdout


@pytest.mark.slow
def test_tool_on_a_segmentation_config_with_random_init(tmp_path):
    from mmfec.datasets import ensure_toy_ade20k
    data = ensure_toy_ade20k(tmp_path / 'data', num_train=1, num_val=2)
    out = tmp_path / 'purity.json'
    result = run_tool(['tools/analyze_clusters.py', ROOT / 'configs' / 'semfpn_fec_toy.py',
                       '--out', out, '--num-workers', 0, '--cfg-options',
                       f'val_dataloader.dataset.data_root={data}'])
    assert result.returncode == 0, explain(result)
    assert 'random initialisation' in result.stderr and 'on 2 of 2 val images' in result.stdout
    rows = _check_rows(json.loads(out.read_text()))
    assert rows['stage4.block1']['clusters'] == 2 * 2  # the toy config's proposal size 2


def test_tool_refuses_a_backbone_config_in_one_line(capsys):
    tool = load_tool('analyze_clusters.py')
    with pytest.raises(SystemExit) as exit_:
        tool.main([str(ROOT / 'configs' / 'fec_small_backbone.py')])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and 'Traceback' not in err
    assert err.strip().splitlines()[-1].startswith('error: this is a backbone-only config')


# ------------------------------------------------------------------ during training
HOOK_CONFIG = '''
_base_ = {base!r}
custom_imports = dict(imports=['mmfec', 'mmfec.engine'], allow_failed_imports=False)
custom_hooks = [dict(type='ClusterPurityHook', num_images=1, layers=['stage1.block2', 'pool4'])]
'''


@pytest.mark.slow
def test_hook_logs_the_scalars_at_validation(tmp_path):
    from mmfec.datasets import ensure_toy_ade20k
    data = ensure_toy_ade20k(tmp_path / 'data', num_train=2, num_val=2)
    config = tmp_path / 'semfpn_purity.py'
    config.write_text(HOOK_CONFIG.format(base=str(ROOT / 'configs' / 'semfpn_fec_toy.py')))
    options = ['train_cfg.max_iters=1', 'train_cfg.val_interval=1', 'train_dataloader.batch_size=2',
               'default_hooks.logger.interval=1', 'default_hooks.checkpoint.interval=1']
    for loader in ('train', 'val'):
        options += [f'{loader}_dataloader.dataset.data_root={data}',
                    f'{loader}_dataloader.num_workers=0',
                    f'{loader}_dataloader.persistent_workers=False']
    work = tmp_path / 'work'
    result = run_tool(['tools/train.py', config, '--work-dir', work, '--cfg-options', *options])
    assert result.returncode == 0, explain(result)
    log = result.stdout + result.stderr
    val_lines = [line for line in log.splitlines() if 'Iter(val)' in line and 'mIoU' in line]
    assert val_lines, log[-3000:]
    for name in ('cluster_purity/stage1.block2', 'cluster_grid_purity/pool4',
                 'cluster_purity_advantage/pool4'):
        assert name in val_lines[-1], val_lines[-1]
    (scalars,) = work.glob('*/vis_data/scalars.json')
    logged = [json.loads(line) for line in scalars.read_text().splitlines()]
    val = [entry for entry in logged if 'cluster_purity/pool4' in entry]
    assert len(val) == 1 and 0.0 <= val[0]['cluster_purity/pool4'] <= 1.0
    assert val[0]['cluster_purity_advantage/pool4'] == pytest.approx(
        val[0]['cluster_purity/pool4'] - val[0]['cluster_grid_purity/pool4'], abs=1e-6)
