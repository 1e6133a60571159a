#!/usr/bin/env bash
# Regenerates the committed test package tests/fixtures/tiny-internvl deterministically: the tiny
# random-weight Mini-InternVL-FT checkpoint (InternViT + Phi-3) in the reference layout (internvl.write_random_checkpoint, seed 0) is
# written to a temporary directory, converted in float32 (internvl.export_package), and its golden files
# are computed with the reference-structure PyTorch model (internvl.load; golden.py's `Converted`, with the
# short-factor rotary module the rope graph is traced from).
# Run from anywhere; PYTHON overrides the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=tests/fixtures/tiny-internvl
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$PY" -c 'import sys; from vidflow_export import internvl; internvl.write_random_checkpoint(sys.argv[1], seed=0)' "$tmp/ckpt"
rm -rf "$OUT"
"$PY" -c 'import sys; from vidflow_export import internvl; internvl.export_package(sys.argv[1], sys.argv[2], name="tiny-internvl")' \
    "$tmp/ckpt" "$OUT"
"$PY" -m vidflow_export golden --hf "$tmp/ckpt" --package "$OUT"
du -sh "$OUT"
