#!/usr/bin/env bash
# Creates .venv (if missing) and installs the pinned OpenMMLab stack plus mmfec.
#
# Idempotent: a stamp file records the hash of this script; when it matches, nothing
# is reinstalled, so a second run takes a second. The slow step (building mmcv 2.1.0
# with ops from source, ~7-9 min on 2 cores) is kept as a wheel in ~/.cache/mmfec.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${MMFEC_VENV:-$ROOT/.venv}"
PY="${PYTHON:-python3}"
STAMP="$VENV/.mmfec-setup-stamp"
WANT="$(cat "$ROOT/tools/setup_env.sh" "$ROOT/pyproject.toml" | sha256sum | cut -c1-16)"

step() { echo "[mmfec setup] $*"; }
fail() {
    echo "[mmfec setup] FAILED at step: $CURRENT" >&2
    echo "[mmfec setup] what to do: $1" >&2
    exit 1
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && [ -x "$VENV/bin/python" ]; then
    step "environment in $VENV is up to date (delete $STAMP to force a reinstall)"
    exit 0
fi

CURRENT="create the virtual environment"
if [ ! -x "$VENV/bin/python" ]; then
    step "$CURRENT ($VENV)"
    "$PY" -m venv "$VENV" || fail "install Python 3.11 with the venv module (Debian: apt-get install python3-venv), or set PYTHON=/path/to/python3.11"
fi
PIP=("$VENV/bin/python" -m pip install --disable-pip-version-check)
TORCH=2.14.1
TORCHVISION=0.29.1
WHEELS="${MMFEC_WHEEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/mmfec/wheels/torch-$TORCH}"

CURRENT="pin setuptools (torch needs >=77.0.3; mmcv and mmengine need pkg_resources, gone in 81)"
step "$CURRENT"
"${PIP[@]}" "setuptools>=77.0.3,<81" wheel ninja psutil \
    || fail "check that PyPI is reachable (pip install setuptools)"

CURRENT="install torch 2.14.1, torchvision 0.29.1 and mmengine 0.10.7"
step "$CURRENT"
# torchvision (which mmpretrain imports) needs a torch it was built with: PyPI's
# torchvision does not import beside the local torch 2.13.0+cpu wheel. torch 2.14.1 and
# torchvision 0.29.1 are the pair on this machine kind's disk (pip finds them there in
# about a minute); elsewhere pip downloads them from PyPI (a CUDA build, several GB, that
# runs on the CPU).
"${PIP[@]}" "torch==$TORCH" "torchvision==$TORCHVISION" "mmengine==0.10.7" "numpy>=1.24" \
    || fail "check that PyPI is reachable (or that torch $TORCH and torchvision $TORCHVISION wheels for $("$VENV/bin/python" -V) are on pip's find-links); a pip constraint file capping torch below $TORCH (pip config list) must allow it"

CURRENT="build mmcv 2.1.0 with ops against torch $TORCH (first time: ~7-9 minutes on 2 cores; later runs reuse the built wheel)"
step "$CURRENT"
# mmcv 2.1.0's setup.py compiles its ops as C++17 (C++14 in some branches), but torch
# >= 2.14's headers require C++20. The sdist is patched to -std=c++20 and built once; the
# wheel is kept in $WHEELS (keyed by the torch version it was built against).
if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
    MMCV_WHEEL="$(ls "$WHEELS"/mmcv-2.1.0-*.whl 2>/dev/null | head -n1 || true)"
    if [ -z "$MMCV_WHEEL" ]; then
        BUILD="$(mktemp -d)"
        "$VENV/bin/python" -m pip download --disable-pip-version-check --no-deps --no-binary :all: \
            "mmcv==2.1.0" -d "$BUILD" \
            || fail "check that PyPI is reachable (pip download --no-binary :all: mmcv==2.1.0)"
        tar -xzf "$BUILD"/mmcv-2.1.0.tar.gz -C "$BUILD"
        sed -i -e 's/-std=c++14/-std=c++20/g' -e 's/-std=c++17/-std=c++20/g' "$BUILD/mmcv-2.1.0/setup.py"
        mkdir -p "$WHEELS"
        (cd "$BUILD/mmcv-2.1.0" && MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" \
            "$VENV/bin/python" -m pip wheel --disable-pip-version-check --no-build-isolation \
            --no-deps . -w "$BUILD/dist") \
            || fail "mmcv needs a C++20 compiler (g++ >= 10) and the Python headers (Debian: apt-get install build-essential python3-dev); read the compiler error above"
        mv "$BUILD"/dist/mmcv-2.1.0-*.whl "$WHEELS/"
        rm -rf "$BUILD"
        MMCV_WHEEL="$(ls "$WHEELS"/mmcv-2.1.0-*.whl | head -n1)"
    fi
    "${PIP[@]}" --no-deps "$MMCV_WHEEL" \
        || fail "the cached mmcv wheel $MMCV_WHEEL does not install: delete $WHEELS and rerun"
fi

CURRENT="install mmdet 3.3.0, mmsegmentation 1.2.2, mmpretrain 1.2.0 and test tools"
step "$CURRENT"
"${PIP[@]}" "torch==$TORCH" "torchvision==$TORCHVISION" "mmcv==2.1.0" "mmdet==3.3.0" \
    "mmsegmentation==1.2.2" "mmpretrain==1.2.0" ftfy regex pycocotools pytest ruff \
    || fail "check that PyPI is reachable; read pip's resolver message above"

CURRENT="install the deployment extra (onnx, onnxruntime, onnxscript)"
step "$CURRENT"
"${PIP[@]}" "onnx==1.23.2" "onnxruntime==1.32.0" "onnxscript==0.7.2" \
    || fail "check that PyPI is reachable; pip install onnx onnxruntime onnxscript"

# The cluster explorer's browser test needs a headless Chromium (Debian's package). It is
# installed where that is possible (root with apt-get); elsewhere the test says why it
# is skipped. Not a failure of the set-up.
CURRENT="install Chromium for the cluster explorer test (optional)"
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
        step "$CURRENT"
        { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } \
            >/dev/null 2>&1 || step "Chromium could not be installed; the browser test will be skipped"
    else
        step "no Chromium and no root apt-get: the cluster explorer's browser test will be skipped"
    fi
fi

CURRENT="install mmfec in editable mode"
step "$CURRENT"
"${PIP[@]}" --no-build-isolation --no-deps -e "$ROOT" \
    || fail "pyproject.toml of mmfec is broken; run: $VENV/bin/pip install -e . and read its error"

CURRENT="check the stack imports"
step "$CURRENT"
"$VENV/bin/python" - <<'PY' || fail "a package imports wrongly; rerun after: rm -rf .venv"
import torch, torchvision, mmengine, mmcv, mmcv.ops, mmdet, mmseg, mmpretrain, onnxruntime, mmfec
print(f"[mmfec setup] torch {torch.__version__}, torchvision {torchvision.__version__}, "
      f"mmpretrain {mmpretrain.__version__}, mmengine {mmengine.__version__}, "
      f"mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, "
      f"onnxruntime {onnxruntime.__version__}")
PY
echo "$WANT" > "$STAMP"
step "done"
