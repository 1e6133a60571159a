#!/usr/bin/env bash
# Installs what vidflow needs on a fresh Debian machine (as root), idempotently.
#
#   setup.sh runtime   what `make demo` runs: Debian's FFmpeg libraries (and clang, pkg-config for
#                      building against them), ONNX Runtime's shared library unpacked from the
#                      onnxruntime wheel into .ort/lib, and the release binary. No PyTorch.
#   setup.sh all       the runtime, plus the Python environment of export/ (PyTorch, transformers,
#                      ...) in .venv, which `make test` and the exporters need, and Debian's
#                      slurm-wlm and munge for the Slurm test.
set -euo pipefail
cd "$(dirname "$0")/.."

what=${1:-all}
case "$what" in
  runtime|all) ;;
  *) echo "setup.sh: unknown part '$what' (expected: runtime or all)" >&2; exit 2 ;;
esac

ORT_VERSION=1.31.1
APT_PKGS="libavformat-dev libavcodec-dev libavutil-dev libswscale-dev clang libclang-dev pkg-config ffmpeg"
# `make test` also runs `vidflow slurm` on a one-node Slurm cluster (tests/slurm.rs).
if [ "$what" = all ]; then
  APT_PKGS="$APT_PKGS slurm-wlm munge"
fi

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

# ONNX Runtime's shared library, unpacked from the PyPI wheel (about 17 MB): no Python
# environment is needed to run vidflow.
if [ ! -f ".ort/lib/libonnxruntime.so.$ORT_VERSION" ]; then
  echo "[setup] unpacking libonnxruntime $ORT_VERSION from the onnxruntime wheel into .ort/lib"
  rm -rf .ort/wheel
  python3 -m pip download -q --no-deps --only-binary=:all: -d .ort/wheel "onnxruntime==$ORT_VERSION"
  python3 - "$ORT_VERSION" <<'PY'
import glob, os, sys, zipfile
version = sys.argv[1]
wheel, = glob.glob(".ort/wheel/onnxruntime-*.whl")
member = f"onnxruntime/capi/libonnxruntime.so.{version}"
os.makedirs(".ort/lib", exist_ok=True)
with zipfile.ZipFile(wheel) as z, open(f".ort/lib/libonnxruntime.so.{version}.part", "wb") as out:
    out.write(z.read(member))
os.replace(f".ort/lib/libonnxruntime.so.{version}.part", f".ort/lib/libonnxruntime.so.{version}")
PY
  ln -sf "libonnxruntime.so.$ORT_VERSION" .ort/lib/libonnxruntime.so
  rm -rf .ort/wheel
fi

# Python environment for export/ and the PyTorch reference checks.
if [ "$what" = all ] && { [ ! -f .venv/.ready ] || [ export/requirements.txt -nt .venv/.ready ]; }; then
  echo "[setup] building the Python environment in .venv"
  [ -d .venv ] || python3 -m venv .venv
  .venv/bin/pip install -q --upgrade pip
  .venv/bin/pip install -q -r export/requirements.txt
  .venv/bin/pip install -q -e export
  touch .venv/.ready
fi

echo "[setup] building vidflow (release)"
cargo build --release --quiet
