"""The last screen of `make demo` (mmfec.utils.demo_summary): results, wall times and paths,
read from what the OpenMMLab tools leave in the demo's work dirs."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmfec.utils.demo_summary import (
    DemoResultsError,
    format_duration,
    latest_test_metrics,
    main,
    summary_lines,
)

ROOT = Path(__file__).resolve().parents[1]
DET_METRICS = {'coco/bbox_mAP': 0.444, 'coco/bbox_mAP_50': 0.846, 'coco/bbox_mAP_75': 0.407,
               'coco/segm_mAP': 0.592, 'coco/segm_mAP_50': 0.889, 'coco/segm_mAP_75': 0.738,
               'data_time': 0.01, 'time': 0.5}
SEG_METRICS = {'aAcc': 98.73999786376953, 'mIoU': 97.5, 'mAcc': 98.72, 'data_time': 0.01,
               'time': 0.4}
CLS_METRICS = {'accuracy/top1': 93.3333, 'accuracy/top2': 100.0, 'data_time': 0.01}
TIMES = {'toy_data': 2.1, 'cls_train': 61.0, 'cls_test': 5.4, 'det_train': 229.4,
         'det_test': 39.0, 'seg_train': 353.0,
         'seg_test': 32.2, 'cluster_maps': 9.6}


def _test_run(work_dir, timestamp, metrics):
    """What mmengine's LoggerHook writes at the end of tools/test.py."""
    run = work_dir / timestamp
    run.mkdir(parents=True)
    (run / f'{timestamp}.json').write_text(json.dumps(metrics))
    (run / f'{timestamp}.log').write_text('log\n')


def _finished_demo(tmp_path, times=TIMES):
    work = tmp_path / 'work_dirs'
    cls, det, seg = (work / 'fec_small_in1k_toy', work / 'maskrcnn_fec_toy',
                     work / 'semfpn_fec_toy')
    _test_run(cls, '20261201_101000', CLS_METRICS)
    _test_run(det, '20261201_101500', dict(DET_METRICS, **{'coco/bbox_mAP': 0.1}))  # older
    _test_run(det, '20261201_102000', DET_METRICS)
    _test_run(seg, '20261201_103000', SEG_METRICS)
    (det / 'vis_data').mkdir()  # a training run's scalars live elsewhere: not a test result
    for folder, name in ((cls, 'epoch_12.pth'), (det, 'epoch_2.pth'), (seg, 'iter_100.pth')):
        (folder / name).write_bytes(b'')
        (folder / 'last_checkpoint').write_text(str(folder / name))
    (det / 'cluster_maps.png').write_bytes(b'\x89PNG')
    (work / 'demo_times.tsv').write_text(''.join(f'{k}\t{v}\n' for k, v in times.items()))
    return work


def test_summary_shows_results_times_and_paths(tmp_path):
    work = _finished_demo(tmp_path)
    maps = work / 'maskrcnn_fec_toy' / 'cluster_maps.png'
    screen = '\n'.join(summary_lines(str(work), str(maps)))
    assert 'top-1 93.33   top-2 100.00   (%, 4 classes)' in screen
    assert 'box AP   0.444   AP50 0.846   AP75 0.407' in screen  # the latest test run
    assert 'mask AP  0.592   AP50 0.889   AP75 0.738' in screen
    assert 'mIoU 97.50   aAcc 98.74   mAcc 98.72' in screen
    assert str(work / 'maskrcnn_fec_toy' / 'epoch_2.pth') in screen
    assert str(work / 'semfpn_fec_toy' / 'iter_100.pth') in screen
    assert str(maps) in screen and '(not written)' not in screen
    assert re.search(r'detector: train +3 min 49 s', screen)
    assert re.search(r'segmentor: test +32 s', screen)
    assert re.search(r'classifier: train +1 min 01 s', screen)
    assert re.search(r'total +12 min 12 s', screen)  # 731.7 s


def test_summary_says_when_the_png_is_missing(tmp_path):
    work = _finished_demo(tmp_path)
    screen = '\n'.join(summary_lines(str(work), str(work / 'nowhere.png')))
    assert 'nowhere.png   (not written)' in screen


def test_missing_test_result_is_an_error_naming_the_work_dir(tmp_path, capsys):
    work = _finished_demo(tmp_path)
    for run in (work / 'semfpn_fec_toy').glob('2026*'):
        for file in run.iterdir():
            file.unlink()
        run.rmdir()
    with pytest.raises(DemoResultsError, match='no test results in .*semfpn_fec_toy'):
        summary_lines(str(work))
    assert main([str(work)]) == 1
    assert 'error: no test results' in capsys.readouterr().err


@pytest.mark.parametrize('seconds, text', [(0.4, '0 s'), (59.6, '1 min 00 s'),
                                           (229.4, '3 min 49 s'), (None, 'not measured')])
def test_durations(seconds, text):
    assert format_duration(seconds) == text


@pytest.mark.slow
def test_reads_the_metrics_a_real_test_run_writes(tmp_path):
    """tools/test.py on the toy segmentor (random weights, 2 val images): the summary
    finds exactly the mIoU that the run printed."""
    from mmengine.config import Config
    from mmseg.registry import MODELS
    from mmseg.utils import register_all_modules

    from mmfec.datasets import ensure_toy_ade20k
    data = ensure_toy_ade20k(tmp_path / 'data', num_train=1, num_val=2)
    register_all_modules(init_default_scope=True)
    cfg = Config.fromfile(str(ROOT / 'configs' / 'semfpn_fec_toy.py'))
    torch.manual_seed(0)
    checkpoint = tmp_path / 'iter_1.pth'
    torch.save({'state_dict': MODELS.build(cfg.model).state_dict(), 'meta': {}}, checkpoint)
    work = tmp_path / 'semfpn_fec_toy'
    env = dict(os.environ, OMP_NUM_THREADS='1', PYTHONWARNINGS='ignore')
    result = subprocess.run(
        [sys.executable, 'tools/test.py', 'configs/semfpn_fec_toy.py', str(checkpoint),
         '--work-dir', str(work), '--cfg-options', f'test_dataloader.dataset.data_root={data}',
         'test_dataloader.num_workers=0', 'test_dataloader.persistent_workers=False'],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-4000:]
    metrics, path = latest_test_metrics(str(work))
    printed = re.search(r'mIoU: ([\d.]+)', result.stdout + result.stderr)
    assert printed and metrics['mIoU'] == pytest.approx(float(printed.group(1)))
    assert Path(path).parent.parent == work


def test_run_demo_script_parses():
    result = subprocess.run(['bash', '-n', str(ROOT / 'tools' / 'run_demo.sh')],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
