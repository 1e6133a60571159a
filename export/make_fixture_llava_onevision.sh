#!/usr/bin/env bash
# Regenerates the committed test package tests/fixtures/tiny-llava_onevision deterministically: the tiny
# random-weight LLaVA-OneVision (SigLIP + Qwen2, seed 0) is built in a temporary directory, exported in
# float32, and its golden files are computed with PyTorch (generate.json included: HF generate with
# the trailing newline embedding). Run from anywhere; PYTHON overrides the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=tests/fixtures/tiny-llava_onevision
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

"$PY" -m vidflow_export build-tiny --family llava_onevision --out "$tmp/hf" --seed 0
rm -rf "$OUT"
"$PY" -m vidflow_export export --hf "$tmp/hf" --out "$OUT" --dtype float32 --name tiny-llava_onevision
"$PY" -m vidflow_export golden --hf "$tmp/hf" --package "$OUT"
"$PY" -m vidflow_export golden-generate --hf "$tmp/hf" --package "$OUT"
du -sh "$OUT"
