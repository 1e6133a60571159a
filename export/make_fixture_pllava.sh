#!/usr/bin/env bash
# Regenerates the committed test package tests/fixtures/tiny-pllava deterministically: the tiny
# random-weight PLLaVA checkpoint in the reference layout (pllava.write_random_checkpoint, seed 0) is
# written to a temporary directory, converted in float32 (pllava.export_package), and its golden files
# are computed with the reference-structure PyTorch model (pllava.load; golden.py's `Converted`).
# Run from anywhere; PYTHON overrides the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=tests/fixtures/tiny-pllava
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$PY" -c 'import sys; from vidflow_export import pllava; pllava.write_random_checkpoint(sys.argv[1], seed=0)' "$tmp/ckpt"
rm -rf "$OUT"
"$PY" -c 'import sys; from vidflow_export import pllava; pllava.export_package(sys.argv[1], sys.argv[2], name="tiny-pllava")' \
    "$tmp/ckpt" "$OUT"
"$PY" -m vidflow_export golden --hf "$tmp/ckpt" --package "$OUT"
du -sh "$OUT"
