"""The last screen of ``make demo``: what the demo measured, how long each part took, and
where its checkpoints and cluster maps are.

    python -m mmfec.utils.demo_summary WORK_DIR [--cluster-maps FILE.png]

``tools/run_demo.sh`` trains and tests the toy classifier in
``WORK_DIR/fec_small_in1k_toy``, the toy detector in ``WORK_DIR/maskrcnn_fec_toy`` and the
toy segmentor in ``WORK_DIR/semfpn_fec_toy``, and writes the wall time of each part to
``WORK_DIR/demo_times.tsv``. This module reads what the OpenMMLab tools left
there and prints one screen:

* the metrics of the latest test run of each work dir: mmengine's ``LoggerHook`` writes
  them to ``<work dir>/<timestamp>/<timestamp>.json`` at the end of ``tools/test.py``
  (mmpretrain's ``Accuracy``: ``accuracy/top1``, ...; mmdet's ``CocoMetric``:
  ``coco/bbox_mAP``, ...; mmseg's ``IoUMetric``: ``mIoU``, ...);
* the checkpoint named in ``<work dir>/last_checkpoint`` (mmengine's ``CheckpointHook``);
* the times, one ``part<TAB>seconds`` line each.
"""
import argparse
import json
import os
import os.path as osp
import re
import sys
from typing import Dict, List, Optional, Tuple

TIMES_FILE = 'demo_times.tsv'
CLASSIFIER_DIR = 'fec_small_in1k_toy'
DETECTOR_DIR = 'maskrcnn_fec_toy'
SEGMENTOR_DIR = 'semfpn_fec_toy'
# (label in the summary, key written by tools/run_demo.sh)
PARTS = (
    ('toy data', 'toy_data'),
    ('classifier: train', 'cls_train'),
    ('classifier: test', 'cls_test'),
    ('detector: train', 'det_train'),
    ('detector: test', 'det_test'),
    ('segmentor: train', 'seg_train'),
    ('segmentor: test', 'seg_test'),
    ('cluster maps', 'cluster_maps'),
)
_TIMESTAMP = re.compile(r'^\d{8}_\d{6}$')
WIDTH = 78


class DemoResultsError(Exception):
    """A part of the demo left nothing to summarise (it failed or did not run)."""


def latest_test_metrics(work_dir: str) -> Tuple[Dict[str, float], str]:
    """``(metrics, json path)`` of the latest ``tools/test.py`` run in ``work_dir``."""
    runs = []
    if osp.isdir(work_dir):
        for name in os.listdir(work_dir):
            path = osp.join(work_dir, name, f'{name}.json')
            if _TIMESTAMP.match(name) and osp.isfile(path):
                runs.append((name, path))
    if not runs:
        raise DemoResultsError(f'no test results in {work_dir} (no <timestamp>/<timestamp>.json'
                               ' of tools/test.py): did the test step run?')
    _, path = max(runs)
    with open(path, encoding='utf-8') as file:
        metrics = json.load(file)
    return metrics, path


def last_checkpoint(work_dir: str) -> Optional[str]:
    """The path mmengine's ``CheckpointHook`` recorded in ``work_dir/last_checkpoint``."""
    path = osp.join(work_dir, 'last_checkpoint')
    if not osp.isfile(path):
        return None
    with open(path, encoding='utf-8') as file:
        checkpoint = file.read().strip()
    return checkpoint or None


def read_times(path: str) -> Dict[str, float]:
    """``{part: seconds}`` from ``tools/run_demo.sh``'s ``part<TAB>seconds`` lines."""
    times = {}
    if osp.isfile(path):
        with open(path, encoding='utf-8') as file:
            for line in file:
                fields = line.rstrip('\n').split('\t')
                if len(fields) == 2:
                    try:
                        times[fields[0]] = float(fields[1])
                    except ValueError:
                        continue
    return times


def format_duration(seconds: Optional[float]) -> str:
    """``3 min 49 s``, ``39 s``; 'not measured' for a part without a time."""
    if seconds is None:
        return 'not measured'
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    return f'{minutes} min {seconds:02d} s' if minutes else f'{seconds} s'


def _metric(metrics: Dict[str, float], key: str, digits: int = 3) -> str:
    value = metrics.get(key)
    return 'n/a' if not isinstance(value, (int, float)) else f'{value:.{digits}f}'


def _path(path: Optional[str]) -> str:
    if path is None:
        return 'not found'
    relative = osp.relpath(path)
    return relative if not relative.startswith('..') else path


def summary_lines(work_dir: str, cluster_maps: Optional[str] = None) -> List[str]:
    """The summary screen, as lines. Raises :class:`DemoResultsError` when a test result
    is missing (a part of the demo failed)."""
    cls_dir = osp.join(work_dir, CLASSIFIER_DIR)
    det_dir = osp.join(work_dir, DETECTOR_DIR)
    seg_dir = osp.join(work_dir, SEGMENTOR_DIR)
    cls, cls_json = latest_test_metrics(cls_dir)
    det, det_json = latest_test_metrics(det_dir)
    seg, seg_json = latest_test_metrics(seg_dir)
    times = read_times(osp.join(work_dir, TIMES_FILE))
    total = sum(times.get(key, 0.0) for _, key in PARTS) if times else None
    rule = '=' * WIDTH
    lines = [rule, 'mmfec demo: FEC-Small trained from scratch on the toy data (CPU)', rule,
             'Classifier on the toy ImageNet-layout val set (configs/fec_small_in1k_toy.py)',
             f'  top-1 {_metric(cls, "accuracy/top1", 2)}   top-2 '
             f'{_metric(cls, "accuracy/top2", 2)}   (%, 4 classes)',
             f'  checkpoint  {_path(last_checkpoint(cls_dir))}',
             f'  metrics     {_path(cls_json)}',
             '',
             'Mask R-CNN on toy COCO val (configs/maskrcnn_fec_toy.py)',
             f'  box AP   {_metric(det, "coco/bbox_mAP")}   AP50 '
             f'{_metric(det, "coco/bbox_mAP_50")}   AP75 {_metric(det, "coco/bbox_mAP_75")}',
             f'  mask AP  {_metric(det, "coco/segm_mAP")}   AP50 '
             f'{_metric(det, "coco/segm_mAP_50")}   AP75 {_metric(det, "coco/segm_mAP_75")}',
             f'  checkpoint  {_path(last_checkpoint(det_dir))}',
             f'  metrics     {_path(det_json)}',
             '',
             'Semantic FPN on toy ADE20K val (configs/semfpn_fec_toy.py)',
             f'  mIoU {_metric(seg, "mIoU", 2)}   aAcc {_metric(seg, "aAcc", 2)}   '
             f'mAcc {_metric(seg, "mAcc", 2)}   (%)',
             f'  checkpoint  {_path(last_checkpoint(seg_dir))}',
             f'  metrics     {_path(seg_json)}',
             '']
    if cluster_maps is not None:
        found = '' if osp.isfile(cluster_maps) else '   (not written)'
        lines += ['Cluster maps of one toy val image, by the trained detector',
                  f'  {_path(cluster_maps)}{found}', '']
    lines.append('Wall time')
    for label, key in PARTS:
        if key in times:
            lines.append(f'  {label:<18}{format_duration(times[key]):>12}')
    lines += [f'  {"total":<18}{format_duration(total):>12}', rule]
    return lines


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('work_dir', help='the demo\'s work dir (tools/run_demo.sh: work_dirs)')
    parser.add_argument('--cluster-maps', metavar='FILE.png',
                        help='the PNG of cluster maps the demo drew')
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    try:
        lines = summary_lines(args.work_dir, args.cluster_maps)
    except DemoResultsError as error:
        print(f'error: {error}', file=sys.stderr)
        return 1
    print('\n'.join(lines))
    return 0


if __name__ == '__main__':
    sys.exit(main())
