#!/usr/bin/env bash
# One-command, idempotent install of dgsamp and its stack into a project-local venv (.venv).
#
#   bash scripts/install.sh          # or: make install
#
# A warm machine re-runs this in seconds: a stamp file records the hash of every input to the
# install (this script, pyproject.toml), and the compiled mmcv wheel is cached per machine in
# $DGSAMP_CACHE (default ~/.cache/dgsamp) so its ~8 minute build happens once.
#
# GPU users: set DGSAMP_MMCV_WITH_CUDA=1 (with nvcc on PATH) before the first run; mmcv's ops
# are then compiled with CUDA kernels (FORCE_CUDA=1) and the cached wheel is keyed accordingly.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
VENV="$ROOT/.venv"
CACHE="${DGSAMP_CACHE:-$HOME/.cache/dgsamp}"
WITH_CUDA="${DGSAMP_MMCV_WITH_CUDA:-0}"

# --- Pins, each with its reason --------------------------------------------------------------
# torch/torchvision: a matching pair from the registry. The CPU torch file on this disk has no
# matching torchvision (torchvision then fails with 'operator torchvision::nms does not exist').
TORCH_PINS="torch==2.14.1 torchvision==0.29.1"
# mmcv 2.1.0: the newest release accepted by both mmdet 3.3 (<2.2.0) and mmseg 1.2 (<2.2.0).
MMCV_VERSION="2.1.0"
# setuptools<81: mmcv's setup.py imports pkg_resources, removed from setuptools 81.
BUILD_PINS="setuptools<81 wheel ninja"
# mmengine 0.10.x is the line mmdet 3.3 / mmseg 1.2 are built against; 0.10.7 is its last.
# ftfy and regex: mmseg imports them (via its CLIP tokenizer) without declaring them.
MMENGINE_PIN="mmengine==0.10.7"
STACK_PINS="$MMENGINE_PIN mmdet==3.3.0 mmsegmentation==1.2.2 ftfy regex"

stamp_inputs() { cat "$ROOT/scripts/install.sh" "$ROOT/pyproject.toml"; echo "$WITH_CUDA"; }
STAMP="$VENV/.dgsamp-install-stamp"
WANT="$(stamp_inputs | sha256sum | cut -d' ' -f1)"
if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && "$VENV/bin/python" -c "import dgsamp, mmcv.ops" 2>/dev/null; then
  echo "[install] up to date ($VENV)"; exit 0
fi

[ -x "$VENV/bin/python" ] || "$PY" -m venv "$VENV"
PIP=(pip_quiet "$VENV/bin/python" -m pip --disable-pip-version-check)
# This machine's pip config lists local index folders that lack most packages; pip warns once
# per package. Drop that noise, keep every other line.
pip_quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }
"${PIP[@]}" install -q --upgrade "pip<26" $BUILD_PINS
# shellcheck disable=SC2086
"${PIP[@]}" install -q $TORCH_PINS

# mmcv's runtime requirements before mmcv itself: its wheel goes in with --no-deps, and any pip
# run while they are missing prints a dependency-resolver ERROR. mmengine (pinned above) brings
# opencv-python, which mmcv and mmengine both require; a second OpenCV (-headless) would only
# overwrite the same cv2 package.
MMCV_RUNTIME="addict packaging pillow pyyaml yapf"
# shellcheck disable=SC2086
"${PIP[@]}" install -q $MMCV_RUNTIME "$MMENGINE_PIN" $TORCH_PINS

# --- mmcv with compiled ops --------------------------------------------------------------------
TORCH_VER="$("$VENV/bin/python" -c 'import torch; print(torch.__version__.split("+")[0])')"
WHEEL_DIR="$CACHE/wheels/torch$TORCH_VER-cuda$WITH_CUDA"
mmcv_ok() { "$VENV/bin/python" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '$MMCV_VERSION'" 2>/dev/null; }
if ! mmcv_ok; then
  if ! ls "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl >/dev/null 2>&1; then
    echo "[install] building mmcv $MMCV_VERSION with compiled ops (about 8 minutes on 2 cores, once per machine)"
    BUILD="$(mktemp -d)"
    "${PIP[@]}" download -q --no-deps --no-binary :all: --no-build-isolation "mmcv==$MMCV_VERSION" -d "$BUILD"
    tar -xzf "$BUILD"/mmcv-"$MMCV_VERSION".tar.gz -C "$BUILD"
    # Recent torch headers need C++20; mmcv's setup.py hard-codes -std=c++14/-std=c++17.
    sed -i -E 's/-std=c\+\+1[47]/-std=c++20/g' "$BUILD/mmcv-$MMCV_VERSION/setup.py"
    mkdir -p "$WHEEL_DIR"
    (cd "$BUILD/mmcv-$MMCV_VERSION" && \
      MMCV_WITH_OPS=1 FORCE_CUDA="$WITH_CUDA" MAX_JOBS="$(nproc)" \
      "${PIP[@]}" wheel -q --no-deps --no-build-isolation -w "$WHEEL_DIR" .)
    rm -rf "$BUILD"
  fi
  "${PIP[@]}" install -q --no-deps --force-reinstall "$WHEEL_DIR"/mmcv-"$MMCV_VERSION"-*.whl
fi

# --- the OpenMMLab stack and dgsamp itself -------------------------------------------------------
# shellcheck disable=SC2086
"${PIP[@]}" install -q $STACK_PINS $TORCH_PINS "mmcv==$MMCV_VERSION"
"${PIP[@]}" install -q -e ".[dev]" $TORCH_PINS "mmcv==$MMCV_VERSION"

"$VENV/bin/python" - <<'PY'
import torch, torchvision, mmcv, mmcv.ops, mmengine, mmdet, mmseg, timm, dgsamp
print(f"[install] torch {torch.__version__}, torchvision {torchvision.__version__}, mmcv {mmcv.__version__}, "
      f"mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, mmseg {mmseg.__version__}, "
      f"timm {timm.__version__}, dgsamp {dgsamp.__version__}")
PY
echo "$WANT" > "$STAMP"
