#!/usr/bin/env bash
# The prepared GPU check (docs/performance.md, "GPU check"): FEC-S/B/L exactness on CUDA,
# mixed-precision training steps and drift, the backbone benchmark (fp32 and AMP) and
# torch.compile, in one run of a few minutes. Report: OUT_DIR/gpu_check.md and .json.
#
#   tools/gpu_check.sh [--out-dir DIR] [--quick] [--sections ...] [--budget-s S]
#   tools/gpu_check.sh --fetch-wheels      # on a machine with PyPI: fill .whl/ (see below)
#
# Needs a CUDA torch, mmengine and mmcv (mmcv's pure-Python part is enough for the
# backbone). On a GPU machine without them and without a network, carry wheels: run
# `tools/gpu_check.sh --fetch-wheels` where PyPI is reachable (it writes .whl/ with
# mmengine, its small pure-Python needs and an mmcv built without ops), copy the checkout
# with .whl/, and run this script there: it installs .whl/ into a temporary folder first.
# Arguments other than --fetch-wheels go to `python -m mmfec.benchmark.gpu_check`.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ]; then PY=.venv/bin/python
else PY=python3
fi

if [ "${1:-}" = "--fetch-wheels" ]; then
    PYVER=${GPU_PYTHON_VERSION:-3.12}
    mkdir -p .whl
    "$PY" -m pip download -q --no-deps --only-binary=:all: --python-version "$PYVER" \
        --implementation cp --platform any --platform manylinux2014_x86_64 -d .whl \
        mmengine==0.10.7 addict==2.4.0 yapf==0.43.0 termcolor==3.1.0 platformdirs==4.3.8
    tmp=$(mktemp -d)
    "$PY" -m pip download -q --no-deps --no-binary :all: -d "$tmp" mmcv==2.1.0
    MMCV_WITH_OPS=0 "$PY" -m pip wheel -q --no-deps --no-build-isolation --no-cache-dir \
        -w .whl "$tmp"/mmcv-2.1.0.tar.gz
    rm -rf "$tmp"
    echo "[gpu_check] wheels in .whl/: $(ls .whl | tr '\n' ' ')"
    exit 0
fi

if ! "$PY" -c "import mmengine, mmcv" 2>/dev/null; then
    if ! ls .whl/*.whl >/dev/null 2>&1; then
        echo "[gpu_check] error: mmengine/mmcv are not importable and there are no wheels in" \
             ".whl/; run tools/gpu_check.sh --fetch-wheels on a machine with PyPI first" >&2
        exit 2
    fi
    SITE=${GPU_CHECK_SITE:-/tmp/mmfec-gpu-site}
    "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target "$SITE" .whl/*.whl
    export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PY" -m mmfec.benchmark.gpu_check "$@"
