#!/usr/bin/env bash
# Regenerates the committed test package tests/fixtures/tiny-qwen2_5_vl deterministically: the tiny
# random-weight Qwen2.5-VL (seed 0) is built in a temporary directory, exported in float32, and its
# golden files are computed with PyTorch (generate.json: the dense greedy loop with M-RoPE positions).
# Run from anywhere; PYTHON overrides the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=tests/fixtures/tiny-qwen2_5_vl
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$PY" -m vidflow_export build-tiny --family qwen2_5_vl --out "$tmp/hf" --seed 0
rm -rf "$OUT"
"$PY" -m vidflow_export export --hf "$tmp/hf" --out "$OUT" --dtype float32 --name tiny-qwen2_5_vl
"$PY" -m vidflow_export golden --hf "$tmp/hf" --package "$OUT"
"$PY" -m vidflow_export golden-generate --hf "$tmp/hf" --package "$OUT"
du -sh "$OUT"
