"""End to end through the command-line tools, on a small toy ADE20K set in tmp_path.

1. ``tools/train.py configs/semfpn_fec.py`` (the real ADE20K config, pointed at the toy
   data by ``--cfg-options``) trains 2 iterations and saves ``iter_2.pth``.
2. ``tools/test.py`` evaluates it with the config's own ADE20K test pipeline (short side
   resized to 512, aspect ratio kept) and prints mIoU. A test-only wrapper around
   ``FEC.forward`` records what the backbone received: the resized images themselves,
   not padded, and not multiples of 32. The saved predictions have the original sizes.
3. ``tools/dist_train.sh`` runs the demo config on 2 CPU processes (gloo): 2 iterations
   and a distributed evaluation, and both ranks finish.
"""
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import pytest
from mmcv.image import rescale_size
from tool_utils import loader_options

from mmfec.datasets import ensure_toy_ade20k

ROOT = Path(__file__).resolve().parents[1]
TIMEOUT = 300
NUM_VAL = 2

# Runs a tool as `python tools/X.py ...` would, after wrapping FEC.forward so that every
# input size the backbone sees is appended to the JSON file named by $FEC_INPUT_SHAPES.
RECORDING_DRIVER = r'''
import json, os, runpy, sys
from mmfec.models.backbones.fec import FEC
shapes, out, forward = [], os.environ['FEC_INPUT_SHAPES'], FEC.forward
def recording_forward(self, x):
    shapes.append(list(x.shape[-2:]))
    with open(out, 'w') as f:
        json.dump(shapes, f)
    return forward(self, x)
FEC.forward = recording_forward
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
'''


@pytest.fixture(scope='module')
def toy_root(tmp_path_factory):
    return ensure_toy_ade20k(tmp_path_factory.mktemp('seg_data'), num_train=8,
                             num_val=NUM_VAL)


def _env(**extra):
    # one thread per process: on a busy 2-core runner more threads only fight
    env = {'OMP_NUM_THREADS': '1', **os.environ, 'PYTHONWARNINGS': 'ignore', **extra}
    env['PYTHONPATH'] = os.pathsep.join(filter(None, [str(ROOT), env.get('PYTHONPATH')]))
    return env


def _run(args, **env):
    result = subprocess.run([str(a) for a in args], cwd=ROOT, capture_output=True,
                            text=True, timeout=TIMEOUT, env=_env(**env))
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-6000:]
    return output


def _free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_train_and_test_real_config_on_toy_data(toy_root, tmp_path):
    work = tmp_path / 'work'
    _run([sys.executable, 'tools/train.py', 'configs/semfpn_fec.py', '--work-dir', work,
          '--cfg-options', *loader_options(toy_root, ('train', 'val')),
          'model.backbone.init_cfg=None',
          'train_dataloader.batch_size=2',
          'train_dataloader.dataset.pipeline.2.scale=(256,64)',  # RandomResize
          'train_dataloader.dataset.pipeline.3.crop_size=(64,64)',  # RandomCrop
          'model.data_preprocessor.size=(64,64)',
          'train_cfg.max_iters=2',
          'default_hooks.logger.interval=1'])
    checkpoint = work / 'iter_2.pth'
    assert checkpoint.is_file()

    shapes_file, pred_dir = tmp_path / 'shapes.json', tmp_path / 'pred'
    output = _run([sys.executable, '-c', RECORDING_DRIVER, 'tools/test.py',
                   'configs/semfpn_fec.py', checkpoint, '--work-dir', work,
                   '--out', pred_dir,
                   '--cfg-options', *loader_options(toy_root, ('test', )),
                   'model.backbone.init_cfg=None'],
                  FEC_INPUT_SHAPES=str(shapes_file))
    assert 'mIoU' in output and 'aAcc' in output, output[-3000:]

    # what the ADE20K test pipeline makes of each val image: short side 512, ratio kept
    originals = {}
    for ann in sorted((toy_root / 'annotations' / 'validation').glob('*.png')):
        height, width = cv2.imread(str(ann), cv2.IMREAD_UNCHANGED).shape[:2]
        assert height % 32 and width % 32
        originals[ann.name] = (height, width)
    resized = sorted(tuple(rescale_size((w, h), (2048, 512))[::-1])
                     for h, w in originals.values())
    seen = sorted(tuple(s) for s in json.loads(shapes_file.read_text()))
    assert seen == resized, f'backbone inputs {seen} != resized images {resized} (padded?)'
    assert any(h % 32 or w % 32 for h, w in seen), seen

    # predictions come back at each image's original size
    preds = sorted(pred_dir.glob('*.png'))
    assert [p.name for p in preds] == sorted(originals)
    for pred in preds:
        assert cv2.imread(str(pred), cv2.IMREAD_UNCHANGED).shape[:2] == originals[pred.name]


def test_dist_train_demo_config_two_cpu_processes(toy_root, tmp_path):
    work = tmp_path / 'dist'
    output = _run(['bash', 'tools/dist_train.sh', 'configs/semfpn_fec_toy.py', '2',
                   '--work-dir', work,
                   '--cfg-options', 'env_cfg.dist_cfg.backend=gloo',
                   *loader_options(toy_root, ('train', 'val')),
                   'train_dataloader.batch_size=2',
                   'train_cfg.max_iters=2', 'train_cfg.val_interval=2',
                   'default_hooks.logger.interval=1'],
                  PORT=str(_free_port()))
    # torchrun exits 0 only when every rank did; the log is rank 0's
    assert 'Distributed training: True' in output and 'GPU number: 2' in output, \
        output[-3000:]
    assert 'Iter(train) [2/2]' in output, output[-3000:]
    # 2 val images, one per rank, results gathered over gloo
    assert 'Iter(val) [1/1]' in output and 'mIoU' in output, output[-3000:]
    assert (work / 'iter_2.pth').is_file()
