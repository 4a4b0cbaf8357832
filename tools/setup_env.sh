#!/usr/bin/env bash
# Creates .venv (if missing) and installs the pinned OpenMMLab stack plus mmfec.
#
# Idempotent: a stamp file records the hash of this script; when it matches, nothing
# is reinstalled, so a second run takes a second. The slow step (building mmcv 2.1.0
# with ops from source, ~9 min on 2 cores) is cached by pip as a wheel.
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

CURRENT="pin setuptools (torch 2.13 needs >=77.0.3; mmcv and mmengine need pkg_resources, gone in 81)"
step "$CURRENT"
"${PIP[@]}" "setuptools>=77.0.3,<81" wheel ninja psutil \
    || fail "check that PyPI is reachable (pip install setuptools)"

CURRENT="install torch 2.13.0 and mmengine 0.10.7"
step "$CURRENT"
"${PIP[@]}" "torch==2.13.0" "mmengine==0.10.7" "numpy>=1.24" \
    || fail "check that PyPI is reachable; torch 2.13.0 must exist for this Python ($("$VENV/bin/python" -V))"

CURRENT="build mmcv 2.1.0 with ops (first time: ~9 minutes on 2 cores; later runs use pip's wheel cache)"
step "$CURRENT"
if ! "$VENV/bin/python" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" 2>/dev/null; then
    MMCV_WITH_OPS=1 MAX_JOBS="${MAX_JOBS:-$(nproc)}" "${PIP[@]}" --no-build-isolation "mmcv==2.1.0" \
        || fail "mmcv needs a C++ compiler and the Python headers (Debian: apt-get install build-essential python3-dev); read the compiler error above"
fi

CURRENT="install mmdet 3.3.0, mmsegmentation 1.2.2 and test tools"
step "$CURRENT"
"${PIP[@]}" "torch==2.13.0" "mmcv==2.1.0" "mmdet==3.3.0" "mmsegmentation==1.2.2" \
    ftfy regex pycocotools pytest \
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
import torch, mmengine, mmcv, mmcv.ops, mmdet, mmseg, onnxruntime, mmfec
print(f"[mmfec setup] torch {torch.__version__}, mmengine {mmengine.__version__}, "
      f"mmcv {mmcv.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, "
      f"onnxruntime {onnxruntime.__version__}")
PY
echo "$WANT" > "$STAMP"
step "done"
