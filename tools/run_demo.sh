#!/usr/bin/env bash
# The README's main command (`make demo`): on the bundled toy data, train an FEC classifier
# and print top-1, train FEC Mask R-CNN and print COCO box/mask AP, train FEC Semantic FPN
# and print mIoU, draw the cluster maps of one val image with the trained detector, then
# end with one summary screen (results, wall time of each part, where the checkpoints and
# the PNG are). No download needed.
#
# Environment: WORK_DIR (default work_dirs), PYTHON (default .venv/bin/python).
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
WORK=${WORK_DIR:-work_dirs}
TIMES="$WORK/demo_times.tsv"
CLS=configs/fec_small_in1k_toy.py
DET=configs/maskrcnn_fec_toy.py
SEG=configs/semfpn_fec_toy.py
IMAGE=data/toy_coco/val2017/000001000022.jpg  # the toy val image of the README's picture
MAPS="$WORK/maskrcnn_fec_toy/cluster_maps.png"

mkdir -p "$WORK"
: > "$TIMES"
# timed KEY COMMAND...: run COMMAND and append "KEY<TAB>seconds" to $TIMES.
timed() {
    local key=$1 start ms
    shift
    start=$(date +%s%N)
    "$@"
    ms=$(( ($(date +%s%N) - start) / 1000000 ))
    printf '%s\t%d.%03d\n' "$key" $((ms / 1000)) $((ms % 1000)) >> "$TIMES"
}
# last_of CONFIG KEY: train_cfg.KEY of CONFIG (max_epochs / max_iters), for the checkpoint name.
last_of() {
    $PY -c "from mmengine import Config; print(Config.fromfile('$1').train_cfg.$2)"
}

timed toy_data $PY tools/make_toy_data.py

echo "== [1/4] FEC-Small classifier on the toy ImageNet-layout set ($CLS)"
timed cls_train $PY tools/train.py "$CLS" --work-dir "$WORK/fec_small_in1k_toy"
CLS_CKPT="$WORK/fec_small_in1k_toy/epoch_$(last_of "$CLS" max_epochs).pth"
timed cls_test $PY tools/test.py "$CLS" "$CLS_CKPT" --work-dir "$WORK/fec_small_in1k_toy"

echo "== [2/4] FEC-Small Mask R-CNN on toy COCO ($DET)"
timed det_train $PY tools/train.py "$DET" --work-dir "$WORK/maskrcnn_fec_toy"
DET_CKPT="$WORK/maskrcnn_fec_toy/epoch_$(last_of "$DET" max_epochs).pth"
timed det_test $PY tools/test.py "$DET" "$DET_CKPT" --work-dir "$WORK/maskrcnn_fec_toy"

echo "== [3/4] FEC-Small Semantic FPN on toy ADE20K ($SEG)"
timed seg_train $PY tools/train.py "$SEG" --work-dir "$WORK/semfpn_fec_toy"
SEG_CKPT="$WORK/semfpn_fec_toy/iter_$(last_of "$SEG" max_iters).pth"
timed seg_test $PY tools/test.py "$SEG" "$SEG_CKPT" --work-dir "$WORK/semfpn_fec_toy"

echo "== [4/4] Cluster maps of $IMAGE by the trained detector"
timed cluster_maps $PY tools/visualize_clusters.py "$DET" "$DET_CKPT" "$IMAGE" --out "$MAPS"

echo
$PY -m mmfec.utils.demo_summary "$WORK" --cluster-maps "$MAPS"
