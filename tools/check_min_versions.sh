#!/usr/bin/env bash
# Run mmfec's tests against the oldest pure-Python OpenMMLab packages it admits.
#
#   bash tools/check_min_versions.sh [pytest arguments...]
#
# Builds a throwaway venv (MIN_VENV, default /tmp/mmfec-min-versions) that reuses the
# compiled part of an existing environment (BASE_VENV, default .venv: its torch, its mmcv
# built with ops, numpy, OpenCV, pycocotools...) through a .pth file, installs the oldest
# mmengine / mmdet / mmsegmentation over it (pure Python, seconds) and mmfec in editable
# mode, then runs the tests that exercise those packages. Nothing in BASE_VENV changes.
#
# Versions (environment variables): MMENGINE (default 0.10.4), MMDET (default 3.2.0),
# MMSEG (default 1.2.1). mmdet 3.2 and mmseg 1.2.1 are the oldest that accept mmcv 2.1, the
# mmcv of .venv, and work (mmseg 1.2.0's wheel lacks a data file that `import mmseg.utils`
# reads, so pyproject.toml excludes it). mmdet 3.1 and mmseg 1.1 assert mmcv < 2.1, and
# mmcv 2.0.x cannot be built against torch 2.13 (its build uses -std=c++14; torch's headers
# need C++17), so checking those two needs a BASE_VENV with an older torch and mmcv 2.0.x:
#   MMDET=3.1.0 MMSEG=1.1.0 BASE_VENV=/path/to/that/venv bash tools/check_min_versions.sh
# Such a BASE_VENV was made here (2026-12-01) with torch 2.1.2 (PyPI's CUDA build, run on
# the CPU), numpy<2, opencv-python<4.11, mmengine 0.10.4, mmdet 3.1.0, mmsegmentation
# 1.1.0, pycocotools, ftfy, regex, pytest, and mmcv 2.0.1 built with ops from its sdist
# after changing '-std=c++14' to '-std=c++17' on line 204 of its setup.py (torch 2.1's
# headers need C++17): `MMCV_WITH_OPS=1 pip install --no-build-isolation .` (7 min).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
BASE_VENV="${BASE_VENV:-$ROOT/.venv}"
MIN_VENV="${MIN_VENV:-/tmp/mmfec-min-versions}"
MMENGINE="${MMENGINE:-0.10.4}"
MMDET="${MMDET:-3.2.0}"
MMSEG="${MMSEG:-1.2.1}"
TESTS=(tests/test_packaging.py tests/test_user_errors.py tests/test_model_index.py
       tests/test_demo_summary.py tests/test_fec_checkpoints.py tests/test_safe_checkpoint.py
       tests/test_detection_configs.py tests/test_segmentation_configs.py
       tests/test_detection_training.py tests/test_segmentation_training.py
       tests/test_fec_backbone.py tests/test_fec_matches_dense_reference.py
       tests/test_mixed_precision.py tests/test_gpu_check.py)

step() { echo "[check_min_versions] $*"; }
if [ ! -x "$BASE_VENV/bin/python" ]; then
    echo "[check_min_versions] no environment at $BASE_VENV: run make setup, or set BASE_VENV" >&2
    exit 2
fi
BASE_SITE="$("$BASE_VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"

step "venv $MIN_VENV reusing $BASE_SITE"
rm -rf "$MIN_VENV"
"$("$BASE_VENV/bin/python" -c 'import os, sys; print(os.path.join(sys.base_prefix, "bin", "python3"))')" \
    -m venv "$MIN_VENV"
MIN_PY="$MIN_VENV/bin/python"
MIN_SITE="$("$MIN_PY" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
echo "$BASE_SITE" > "$MIN_SITE/zz_mmfec_base_venv.pth"  # after the venv's own packages

PIP=("$MIN_PY" -m pip install -q --disable-pip-version-check)
step "install mmengine==$MMENGINE mmdet==$MMDET mmsegmentation==$MMSEG (no dependencies: reused)"
"${PIP[@]}" "setuptools>=77.0.3,<81" wheel
"${PIP[@]}" --no-deps "mmengine==$MMENGINE" "mmdet==$MMDET" "mmsegmentation==$MMSEG"
step "install mmfec (editable)"
"${PIP[@]}" --no-deps --no-build-isolation -e "$ROOT"

step "versions"
(cd /tmp && "$MIN_PY" - <<'PY')
import mmcv, mmdet, mmengine, mmseg, torch, mmfec
print(f'[check_min_versions] torch {torch.__version__}, mmengine {mmengine.__version__} '
      f'({mmengine.__file__}), mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, '
      f'mmseg {mmseg.__version__}, mmfec from {mmfec.__file__}')
PY

step "pytest ${TESTS[*]} $*"
cd "$ROOT"
OMP_NUM_THREADS=1 exec "$MIN_PY" -m pytest -q -p no:cacheprovider "${TESTS[@]}" "$@"
