#!/usr/bin/env bash
# Installs everything vidflow needs on a fresh Debian machine (as root), idempotently:
# Debian packages (FFmpeg dev libraries, clang, pkg-config), the Python environment for export/,
# ONNX Runtime's shared library from the PyPI wheel into .ort/, and the release binary.
set -euo pipefail
cd "$(dirname "$0")/.."

ORT_VERSION=1.31.1
APT_PKGS="libavformat-dev libavcodec-dev libavutil-dev libswscale-dev clang libclang-dev pkg-config ffmpeg"

need_apt=0
for p in $APT_PKGS; do
  dpkg -s "$p" >/dev/null 2>&1 || need_apt=1
done
if [ "$need_apt" = 1 ]; then
  echo "[setup] installing Debian packages: $APT_PKGS"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq $APT_PKGS >/dev/null
fi

# Python environment for export/ and the PyTorch reference checks.
if [ ! -f .venv/.ready ] || [ export/requirements.txt -nt .venv/.ready ]; then
  echo "[setup] building the Python environment in .venv"
  [ -d .venv ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r export/requirements.txt
  .venv/bin/pip install -q -e export
  touch .venv/.ready
fi

# ONNX Runtime's shared library, taken from the PyPI wheel installed above.
if [ ! -f ".ort/lib/libonnxruntime.so.$ORT_VERSION" ]; then
  echo "[setup] copying libonnxruntime $ORT_VERSION into .ort/lib"
  src=$(.venv/bin/python -c "import onnxruntime, os; print(os.path.join(os.path.dirname(onnxruntime.__file__), 'capi'))")
  mkdir -p .ort/lib
  cp "$src/libonnxruntime.so.$ORT_VERSION" .ort/lib/
  ln -sf "libonnxruntime.so.$ORT_VERSION" .ort/lib/libonnxruntime.so
fi

echo "[setup] building vidflow (release)"
cargo build --release --quiet
