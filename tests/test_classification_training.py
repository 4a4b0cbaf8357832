"""Classification end to end through the command-line tools, on a small toy
ImageNet-layout set in tmp_path, and from pre-training to detection.

1. ``tools/train.py configs/fec_small_in1k_toy.py`` trains from scratch and evaluates
   top-1 (MMPretrain's ``Accuracy``); ``tools/test.py`` evaluates the checkpoint again.
2. A missing ImageNet folder stops before the Runner, with the layout and the toy command.
3. The toy classifier's checkpoint initialises a toy detector's backbone
   (``init_cfg=dict(type='Pretrained', prefix='backbone.')``): the loaded backbone is the
   trained one, tensor for tensor.
4. The fine-tuning config starts from an official-format ImageNet file with its head
   re-initialised for another number of classes, and trains.
"""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from mmengine.config import Config
from tool_utils import loader_options

from mmfec.datasets import ensure_toy_imagenet

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300


@pytest.fixture(scope='module')
def toy_root(tmp_path_factory):
    return ensure_toy_imagenet(tmp_path_factory.mktemp('cls_data'), num_train=16, num_val=8)


def _run(*args, cwd=ROOT):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True,
                          text=True, timeout=TIMEOUT, env={**os.environ, 'OMP_NUM_THREADS': '1'})


def _metrics(work_dir):
    """The metrics of the last evaluation a Runner logged under ``work_dir`` (a training
    run's ``<stamp>/vis_data/scalars.json``, a test run's ``<stamp>/<stamp>.json``)."""
    logs = sorted(Path(work_dir).glob('*/vis_data/scalars.json')) + \
        sorted(Path(work_dir).glob('*/*.json'))
    assert logs, f'no json log under {work_dir}'
    for log in sorted(logs, key=lambda p: p.stat().st_mtime, reverse=True):
        for line in reversed(log.read_text().splitlines()):
            record = json.loads(line)
            if any(k.startswith('accuracy/') for k in record):
                return record
    raise AssertionError(f'no accuracy in {logs}')


@pytest.fixture(scope='module')
def trained(toy_root, tmp_path_factory):
    """A toy classifier trained for one epoch (2 iterations of 8 images)."""
    work_dir = tmp_path_factory.mktemp('cls_work')
    result = _run('tools/train.py', 'configs/fec_small_in1k_toy.py', '--work-dir', work_dir,
                  '--cfg-options', *loader_options(toy_root), 'train_cfg.max_epochs=1',
                  'train_cfg.val_interval=1', 'train_dataloader.batch_size=8',
                  'default_hooks.checkpoint.interval=1')
    assert result.returncode == 0, result.stderr[-3000:]
    return work_dir


@pytest.mark.slow
def test_toy_classifier_trains_and_evaluates_top1_through_the_tools(trained, toy_root):
    checkpoint = trained / 'epoch_1.pth'
    assert checkpoint.is_file()
    metrics = _metrics(trained)
    assert 0.0 <= metrics['accuracy/top1'] <= 100.0
    test_dir = trained / 'test'
    result = _run('tools/test.py', 'configs/fec_small_in1k_toy.py', checkpoint,
                  '--work-dir', test_dir, '--cfg-options', *loader_options(toy_root))
    assert result.returncode == 0, result.stderr[-3000:]
    assert _metrics(test_dir)['accuracy/top1'] == metrics['accuracy/top1']


@pytest.mark.slow
def test_test_tool_refuses_a_detectors_checkpoint_for_a_classifier(trained, toy_root, tmp_path):
    state = torch.load(trained / 'epoch_1.pth', map_location='cpu', weights_only=False)
    weights = {k: v for k, v in state['state_dict'].items() if k.startswith('backbone.')}
    weights['neck.lateral_convs.0.conv.weight'] = torch.zeros(256, 32, 1, 1)
    weights['rpn_head.rpn_conv.weight'] = torch.zeros(256, 256, 3, 3)
    detector = tmp_path / 'detector.pth'
    torch.save({'state_dict': weights}, detector)
    result = _run('tools/test.py', 'configs/fec_small_in1k_toy.py', detector,
                  '--work-dir', tmp_path / 'work', '--cfg-options', *loader_options(toy_root))
    assert result.returncode == 2, result.stderr[-2000:]
    assert 'Traceback' not in result.stderr
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: ') and 'detector' in last, last


def test_missing_imagenet_folder_stops_with_the_layout_and_the_toy_command(tmp_path):
    result = _run('tools/train.py', 'configs/fec_small_in1k.py', '--work-dir', tmp_path,
                  '--cfg-options', f'train_dataloader.dataset.data_root={tmp_path}/imagenet',
                  f'val_dataloader.dataset.data_root={tmp_path}/imagenet')
    assert result.returncode == 2
    assert 'Traceback' not in result.stderr
    assert 'ImageNet folder layout' in result.stderr
    assert 'train/<class or wnid>/*.JPEG' in result.stderr
    assert 'python tools/make_toy_data.py' in result.stderr


@pytest.mark.slow
def test_a_trained_classifier_initialises_a_detectors_backbone(trained):
    import mmfec  # noqa: F401
    from mmfec.apis import build_model
    cfg = Config.fromfile(str(ROOT / 'configs' / 'maskrcnn_fec_toy.py'))
    cfg.model.backbone.init_cfg = dict(type='Pretrained', checkpoint=str(trained /
                                                                         'epoch_1.pth'),
                                       prefix='backbone.')
    detector = build_model(cfg)
    detector.init_weights()
    trained_state = torch.load(trained / 'epoch_1.pth', map_location='cpu',
                               weights_only=False)['state_dict']
    backbone = detector.backbone.state_dict()
    shared = [k for k in backbone if 'backbone.' + k in trained_state]
    assert len(shared) > 100 and all(k.startswith(('patch_embed', 'network', 'norm6'))
                                     for k in shared)
    for key in shared:
        assert torch.equal(backbone[key], trained_state['backbone.' + key]), key


def test_fine_tuning_config_reinitialises_the_head_and_trains(toy_root, tmp_path):
    import mmfec  # noqa: F401
    from mmfec.models import FEC
    torch.manual_seed(0)
    official = {k: v for k, v in FEC('small', out_indices=(3, )).state_dict().items()
                if not k.startswith('norm')}
    official.update({'norm.weight': torch.ones(320), 'norm.bias': torch.zeros(320),
                     'head.weight': torch.randn(1000, 320), 'head.bias': torch.zeros(1000)})
    checkpoint = tmp_path / 'fec_small_imagenet.pth'
    torch.save({'model': official}, checkpoint)
    result = _run('tools/train.py', 'configs/fec_small_custom_finetune.py',
                  '--work-dir', tmp_path / 'work', '--cfg-options',
                  *loader_options(toy_root, ('train', 'val')), 'num_classes=4',
                  'model.head.num_classes=4', 'data_preprocessor.num_classes=4',
                  f'model.init_cfg.checkpoint={checkpoint}', 'train_cfg.max_epochs=1',
                  'train_dataloader.batch_size=8', 'val_dataloader.batch_size=8',
                  'model.train_cfg=None')
    assert result.returncode == 0, result.stderr[-3000:]
    log = result.stdout + result.stderr
    assert 'converted the official FEC checkpoint' in log
    assert 'left at its init' in log
    assert 0.0 <= _metrics(tmp_path / 'work')['accuracy/top1'] <= 100.0


@pytest.mark.slow
def test_cluster_maps_and_explorer_of_the_trained_classifier(trained, toy_root, tmp_path):
    image = sorted((toy_root / 'val' / 'ring').glob('*.JPEG'))[0]
    result = _run('tools/visualize_clusters.py', 'configs/fec_small_in1k_toy.py',
                  trained / 'epoch_1.pth', image, '--out', tmp_path / 'maps.png',
                  '--html', tmp_path / 'page.html')
    assert result.returncode == 0, result.stderr[-3000:]
    assert 'network input 64x64' in result.stdout  # the config's CenterCrop(64)
    assert (tmp_path / 'maps.png').stat().st_size > 1000
    assert b'<html' in (tmp_path / 'page.html').read_bytes()[:500].lower()
