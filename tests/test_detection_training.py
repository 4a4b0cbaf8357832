"""Detection end to end through the command-line tools, on a tiny toy COCO in tmp.

1. ``tools/train.py configs/maskrcnn_fec.py`` (the real COCO config, pointed at the toy
   data and 64x64 images by ``--cfg-options``, no pretrained weights) trains 2
   iterations and saves a checkpoint; ``tools/test.py`` evaluates it and prints box
   and mask AP.
2. Resume: that run stopped after epoch 1 (iteration 2); ``--resume`` continues with
   iterations 3-4 and ends with exactly the weights of an uninterrupted 2-epoch run
   (RNGStateHook restores the RNG states; the checkpoint loads through mmfec's
   data-only loader).
3. ``tools/dist_train.sh`` runs the toy demo config on 2 CPU processes (gloo):
   2 iterations, both ranks finish, the checkpoint and log are written.
"""
import re
import shutil

import pytest
from det_utils import (
    CONFIGS,
    TOOLS,
    differing_keys,
    explain,
    free_port,
    load_checkpoint,
    run_tool,
    short_run_options,
    tool_env,
    toy_data_options,
)

from mmfec.datasets import ensure_toy_coco

pytestmark = pytest.mark.slow
CONFIG = CONFIGS / 'maskrcnn_fec.py'
NUM_TRAIN = 4  # batch 2 -> 2 iterations per epoch
NUM_VAL = 2


@pytest.fixture(scope='module')
def toy_root(tmp_path_factory):
    root = tmp_path_factory.mktemp('det_data')
    return ensure_toy_coco(root, num_train=NUM_TRAIN, num_val=NUM_VAL, image_size=64)


def _options(toy_root, *extra):
    return ['--cfg-options', *toy_data_options(toy_root), 'model.backbone.init_cfg=None',
            *extra]


def _train(work_dir, toy_root, max_epochs, *args):
    result = run_tool([TOOLS / 'train.py', CONFIG, '--work-dir', work_dir, *args,
                       *_options(toy_root, *short_run_options(max_epochs))])
    assert result.returncode == 0, explain(result)
    return result


@pytest.fixture(scope='module')
def one_epoch(tmp_path_factory, toy_root):
    """The real config, 1 epoch = 2 iterations: the 'interrupted' run of the resume test."""
    work_dir = tmp_path_factory.mktemp('det_one_epoch')
    result = _train(work_dir, toy_root, 1)
    return work_dir, result


def test_train_two_iterations_then_test(one_epoch, toy_root, tmp_path):
    work_dir, result = one_epoch
    log = result.stdout + result.stderr
    assert re.search(r'Epoch\(train\) \[1\]\[2/2\]', log), explain(result)
    checkpoint = work_dir / 'epoch_1.pth'
    assert checkpoint.is_file()
    saved = load_checkpoint(checkpoint)
    assert saved['meta']['iter'] == 2 and saved['meta']['epoch'] == 1
    assert any(k.startswith('backbone.network.') for k in saved['state_dict'])

    # score_thr 0: two iterations from scratch score every box low; evaluate them anyway
    result = run_tool([TOOLS / 'test.py', CONFIG, checkpoint, '--work-dir', tmp_path,
                       *_options(toy_root, 'model.test_cfg.rcnn.score_thr=0.0')])
    assert result.returncode == 0, explain(result)
    log = result.stdout + result.stderr
    for metric in ('bbox', 'segm'):
        assert re.search(rf'{metric}_mAP_copypaste: [\d.]+ [\d.]+', log), explain(result)
        assert re.search(rf'coco/{metric}_mAP: [\d.]+', log), explain(result)


def test_resume_ends_with_the_uninterrupted_weights(one_epoch, toy_root, tmp_path):
    interrupted, _ = one_epoch
    checkpoint = interrupted / 'epoch_1.pth'
    saved = load_checkpoint(checkpoint)  # the RNG states load as data, too
    assert saved['rng_state']['iter'] == 2 and len(saved['rng_state']['ranks']) == 1

    resumed_dir = tmp_path / 'resumed'
    shutil.copytree(interrupted, resumed_dir)
    # --resume without a path: the latest checkpoint of the work dir (epoch_1.pth)
    resumed = _train(resumed_dir, toy_root, 2, '--resume')
    log = resumed.stdout + resumed.stderr
    assert 'resumed epoch: 1, iter: 2' in log, explain(resumed)
    assert 'RNGStateHook: restored the RNG states of iteration 2' in log, explain(resumed)
    assert re.search(r'Epoch\(train\) \[2\]\[2/2\]', log), explain(resumed)
    assert not re.search(r'Epoch\(train\) \[1\]\[', log), 'epoch 1 ran again after resume'

    uninterrupted_dir = tmp_path / 'uninterrupted'
    _train(uninterrupted_dir, toy_root, 2)

    resumed_ckpt = load_checkpoint(resumed_dir / 'epoch_2.pth')
    reference = load_checkpoint(uninterrupted_dir / 'epoch_2.pth')
    assert resumed_ckpt['meta']['iter'] == reference['meta']['iter'] == 4
    first = load_checkpoint(checkpoint)['state_dict']
    changed = differing_keys(first, reference['state_dict'])
    assert changed, 'epoch 2 did not change the weights: the comparison would prove nothing'
    differ = differing_keys(resumed_ckpt['state_dict'], reference['state_dict'])
    assert not differ, f'{len(differ)} weights differ after resume, e.g. {differ[:5]}'


def test_dist_train_two_processes_gloo(toy_root, tmp_path):
    """The demo config on 2 CPU processes: 2 images each per epoch = 2 iterations."""
    work_dir = tmp_path / 'dist'
    env = tool_env(PORT=free_port())
    options = toy_data_options(toy_root, batch_size=1) + short_run_options(1) + [
        'env_cfg.dist_cfg.backend=gloo']
    result = run_tool(['bash', TOOLS / 'dist_train.sh', CONFIGS / 'maskrcnn_fec_toy.py', 2,
                       '--work-dir', work_dir, '--cfg-options', *options], env=env)
    assert result.returncode == 0, explain(result)
    log = result.stdout + result.stderr
    assert re.search(r'Epoch\(train\) \[1\]\[2/2\]', log), explain(result)
    assert (work_dir / 'epoch_1.pth').is_file()
    logs = list(work_dir.glob('*/*.log'))
    assert logs and 'Epoch(train) [1][2/2]' in logs[0].read_text()
    saved = load_checkpoint(work_dir / 'epoch_1.pth')
    assert saved['meta']['iter'] == 2
    assert len(saved['rng_state']['ranks']) == 2  # each rank's RNG states, gathered
