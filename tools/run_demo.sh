#!/usr/bin/env bash
# The README's main command (`make demo`): on the bundled toy data, train FEC Mask R-CNN and
# print COCO box/mask AP, then train FEC Semantic FPN and print mIoU. No download needed.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
WORK=${WORK_DIR:-work_dirs}

$PY tools/make_toy_data.py

echo "== [1/2] FEC-Small Mask R-CNN on toy COCO (configs/maskrcnn_fec_toy.py)"
$PY tools/train.py configs/maskrcnn_fec_toy.py --work-dir "$WORK/maskrcnn_fec_toy"
$PY tools/test.py configs/maskrcnn_fec_toy.py "$WORK/maskrcnn_fec_toy/epoch_$($PY -c "
from mmengine import Config; print(Config.fromfile('configs/maskrcnn_fec_toy.py').train_cfg.max_epochs)").pth" \
    --work-dir "$WORK/maskrcnn_fec_toy"

echo "== [2/2] FEC-Small Semantic FPN on toy ADE20K (configs/semfpn_fec_toy.py)"
$PY tools/train.py configs/semfpn_fec_toy.py --work-dir "$WORK/semfpn_fec_toy"
$PY tools/test.py configs/semfpn_fec_toy.py "$WORK/semfpn_fec_toy/iter_$($PY -c "
from mmengine import Config; print(Config.fromfile('configs/semfpn_fec_toy.py').train_cfg.max_iters)").pth" \
    --work-dir "$WORK/semfpn_fec_toy"
