"""Long runs through the command-line tools and mmfec's own configs, on tiny toy data.

1. kill -9 while training, then ``tools/train.py --resume``: the final weights equal the
   uninterrupted run's, tensor for tensor (Semantic FPN, iteration-based; Mask R-CNN,
   epoch-based), with 2 persistent data workers, the reference run having none.
2. SIGTERM in the middle of an epoch: a checkpoint, exit code 143, a message saying how to
   continue; ``--resume`` then ends with the uninterrupted weights.
3. A corrupt image / label map stops training with one line naming the file and the
   pre-flight command.
"""
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import pytest
from det_utils import (
    CONFIGS,
    ROOT,
    TOOLS,
    differing_keys,
    explain,
    load_checkpoint,
    run_tool,
    short_run_options,
    tool_env,
    toy_data_options,
)

from mmfec.datasets import ensure_toy_ade20k, ensure_toy_coco

pytestmark = pytest.mark.slow
SEG_ITERS = 6


def _seg_options(root, num_workers=0, *extra):
    options = []
    for loader in ('train', 'val', 'test'):
        options.append(f'{loader}_dataloader.dataset.data_root={root}')
    options += [
        f'train_dataloader.num_workers={num_workers}',
        f'train_dataloader.persistent_workers={num_workers > 0}',
        'train_dataloader.batch_size=2',
        'train_dataloader.dataset.pipeline.2.scale=(64,64)',  # RandomResize
        'train_dataloader.dataset.pipeline.3.crop_size=(48,48)',  # RandomCrop
        'model.data_preprocessor.size=(48,48)',
        f'train_cfg.max_iters={SEG_ITERS}', 'train_cfg.val_begin=1000',
        'default_hooks.checkpoint.interval=2', 'default_hooks.logger.interval=1',
        *extra]
    return ['--cfg-options', *options]


def _det_options(root, num_workers=0, *extra):
    options = toy_data_options(root) + short_run_options(2)
    options += [f'train_dataloader.num_workers={num_workers}',
                f'train_dataloader.persistent_workers={num_workers > 0}',
                'model.backbone.init_cfg=None', *extra]
    return ['--cfg-options', *options]


def _start(args, log_path):
    """A tool as a background process, its output in ``log_path``."""
    args = [str(a) for a in args]
    log = open(log_path, 'w')
    return subprocess.Popen([sys.executable] + args, cwd=ROOT, stdout=log,
                            stderr=subprocess.STDOUT, env=tool_env(PYTHONUNBUFFERED=1))


def _wait_for(process, predicate, log_path, timeout=300):
    start = time.monotonic()
    while not predicate():
        if process.poll() is not None:
            raise AssertionError(f'exited ({process.returncode}) before the moment to '
                                 f'interrupt it:\n{log_path.read_text()[-4000:]}')
        if time.monotonic() - start > timeout:
            process.kill()
            raise AssertionError(f'timed out:\n{log_path.read_text()[-4000:]}')
        time.sleep(0.05)


def _final_weights(path):
    return load_checkpoint(path)['state_dict']


def _assert_same(resumed, reference):
    differ = differing_keys(resumed, reference)
    assert not differ, f'{len(differ)} of {len(reference)} tensors differ, e.g. {differ[:5]}'


# ------------------------------------------------------------------ Semantic FPN
@pytest.fixture(scope='module')
def seg_root(tmp_path_factory):
    return ensure_toy_ade20k(tmp_path_factory.mktemp('long_seg'), num_train=8, num_val=2)


@pytest.fixture(scope='module')
def seg_reference(seg_root, tmp_path_factory):
    work = tmp_path_factory.mktemp('seg_reference')
    result = run_tool([TOOLS / 'train.py', CONFIGS / 'semfpn_fec_toy.py', '--work-dir', work,
                       *_seg_options(seg_root)])
    assert result.returncode == 0, explain(result)
    return work


def test_seg_kill_9_then_resume_equals_uninterrupted(seg_root, seg_reference, tmp_path):
    """Killed right after iteration 2's checkpoint (2 workers), resumed with 2 workers."""
    work, log = tmp_path / 'work', tmp_path / 'killed.log'
    args = [TOOLS / 'train.py', CONFIGS / 'semfpn_fec_toy.py', '--work-dir', work,
            *_seg_options(seg_root, 2)]
    process = _start(args, log)
    _wait_for(process, lambda: (work / 'iter_2.pth').exists(), log)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert not (work / 'iter_6.pth').exists()

    result = run_tool([TOOLS / 'train.py', CONFIGS / 'semfpn_fec_toy.py', '--work-dir', work,
                       '--resume', *_seg_options(seg_root, 2)])
    assert result.returncode == 0, explain(result)
    output = result.stdout + result.stderr
    assert re.search(r'resuming at iteration [24]: the sampler skips', output), explain(result)
    assert 'Advance dataloader' not in output
    _assert_same(_final_weights(work / f'iter_{SEG_ITERS}.pth'),
                 _final_weights(seg_reference / f'iter_{SEG_ITERS}.pth'))


def test_seg_corrupt_label_map_stops_with_one_line(seg_root, tmp_path):
    root = tmp_path / 'toy_ade20k'
    shutil.copytree(seg_root, root)
    bad = sorted((root / 'annotations' / 'training').glob('*.png'))[3]
    bad.write_bytes(b'\x89PNG\r\n\x1a\n' + b'\0' * 40)
    result = run_tool([TOOLS / 'train.py', CONFIGS / 'semfpn_fec_toy.py', '--work-dir',
                       tmp_path / 'work', *_seg_options(root, 2)])
    assert result.returncode == 2, explain(result)
    assert 'Traceback' not in result.stderr, explain(result)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: cannot load training sample') and bad.name in last, last
    assert 'python tools/check_data.py' in last and 'bad_samples=skip' in last


# ------------------------------------------------------------------ Mask R-CNN
@pytest.fixture(scope='module')
def det_root(tmp_path_factory):
    # 6 images, batch 2: 3 iterations per epoch
    return ensure_toy_coco(tmp_path_factory.mktemp('long_det'), num_train=6, num_val=2,
                           image_size=64)


@pytest.fixture(scope='module')
def det_reference(det_root, tmp_path_factory):
    work = tmp_path_factory.mktemp('det_reference')
    result = run_tool([TOOLS / 'train.py', CONFIGS / 'maskrcnn_fec.py', '--work-dir', work,
                       *_det_options(det_root)])
    assert result.returncode == 0, explain(result)
    return work


def test_det_kill_9_then_resume_equals_uninterrupted(det_root, det_reference, tmp_path):
    """Killed in epoch 2 (2 persistent workers), resumed from epoch_1.pth."""
    work, log = tmp_path / 'work', tmp_path / 'killed.log'
    args = [TOOLS / 'train.py', CONFIGS / 'maskrcnn_fec.py', '--work-dir', work,
            *_det_options(det_root, 2)]
    process = _start(args, log)
    _wait_for(process, lambda: (work / 'epoch_1.pth').exists(), log)
    process.send_signal(signal.SIGKILL)
    process.wait()
    result = run_tool([TOOLS / 'train.py', CONFIGS / 'maskrcnn_fec.py', '--work-dir', work,
                       '--resume', *_det_options(det_root, 2)])
    assert result.returncode == 0, explain(result)
    _assert_same(_final_weights(work / 'epoch_2.pth'),
                 _final_weights(det_reference / 'epoch_2.pth'))


def test_det_sigterm_mid_epoch_saves_exits_and_resumes(det_root, det_reference, tmp_path):
    work, log = tmp_path / 'work', tmp_path / 'preempted.log'
    args = [TOOLS / 'train.py', CONFIGS / 'maskrcnn_fec.py', '--work-dir', work,
            *_det_options(det_root, 2)]
    process = _start(args, log)
    _wait_for(process, lambda: 'Epoch(train) [1][1/3]' in log.read_text(), log)
    process.send_signal(signal.SIGTERM)
    assert process.wait(timeout=300) == 128 + signal.SIGTERM, log.read_text()[-4000:]
    text = log.read_text()
    assert 'Traceback' not in text, text[-4000:]
    message = [line for line in text.splitlines() if line.startswith('SIGTERM: stopped')]
    assert message and message[-1].endswith(f'--work-dir {work} --resume'), text[-3000:]
    saved = list(work.glob('epoch_1_iter_*.pth')) or list(work.glob('epoch_1.pth'))
    assert saved, sorted(p.name for p in work.iterdir())

    result = run_tool([TOOLS / 'train.py', CONFIGS / 'maskrcnn_fec.py', '--work-dir', work,
                       '--resume', *_det_options(det_root, 2)])
    assert result.returncode == 0, explain(result)
    _assert_same(_final_weights(work / 'epoch_2.pth'),
                 _final_weights(det_reference / 'epoch_2.pth'))


def test_det_corrupt_image_stops_with_one_line(det_root, tmp_path):
    root = tmp_path / 'toy_coco'
    shutil.copytree(det_root, root)
    bad = sorted((root / 'train2017').glob('*.jpg'))[2]
    bad.write_bytes(b'\xff\xd8\xff\xe0 not a jpeg')
    result = run_tool([TOOLS / 'train.py', CONFIGS / 'maskrcnn_fec.py', '--work-dir',
                       tmp_path / 'work', *_det_options(root)])
    assert result.returncode == 2, explain(result)
    assert 'Traceback' not in result.stderr, explain(result)
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith('error: cannot load training sample') and bad.name in last, last
    assert f'python tools/check_data.py {os.path.relpath(CONFIGS / "maskrcnn_fec.py")}' \
        in last or 'tools/check_data.py' in last
