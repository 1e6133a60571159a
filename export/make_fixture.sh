#!/usr/bin/env bash
# Regenerates the committed test packages deterministically (byte-identical):
#   bash export/make_fixture.sh [FAMILY ...]     (default: every family; `make fixture`)
# FAMILY: llava_next_video (tests/fixtures/tiny), qwen2_5_vl, llava_onevision, videollama3, internvl_hf
# (transformers' native InternVL), pllava, internvl (tests/fixtures/tiny-FAMILY). The HF families are
# built by `build-tiny --seed 0` and exported in float32; the paper's converted layouts (pllava,
# internvl) start from a seed-0 random checkpoint in the reference layout. Golden files come from
# PyTorch (`golden`; `golden-generate` for the HF families). Run from anywhere; PYTHON overrides
# the interpreter.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

fixture() {
    local family=$1 src out name
    case "$family" in
        llava_next_video)
            out=tests/fixtures/tiny name=tiny-llava-next-video src="$tmp/$family"
            "$PY" -m vidflow_export build-tiny --out "$src" --seed 0 ;;
        qwen2_5_vl|llava_onevision|videollama3|internvl_hf)
            out=tests/fixtures/tiny-$family name=tiny-$family src="$tmp/$family"
            "$PY" -m vidflow_export build-tiny --family "$family" --out "$src" --seed 0 ;;
        pllava|internvl)
            out=tests/fixtures/tiny-$family name=tiny-$family src="$tmp/$family"
            "$PY" -m vidflow_export "$family-random" --out "$src" --seed 0 ;;
        *)
            echo "make_fixture.sh: unknown family $family; expected llava_next_video, qwen2_5_vl," \
                 "llava_onevision, videollama3, internvl_hf, pllava or internvl" >&2
            exit 2 ;;
    esac
    rm -rf "$out"
    case "$family" in
        pllava|internvl) "$PY" -m vidflow_export "$family" --ckpt "$src" --out "$out" --name "$name" ;;
        *) "$PY" -m vidflow_export export --hf "$src" --out "$out" --dtype float32 --name "$name" ;;
    esac
    "$PY" -m vidflow_export golden --hf "$src" --package "$out"
    case "$family" in
        pllava|internvl) ;;
        *) "$PY" -m vidflow_export golden-generate --hf "$src" --package "$out" ;;
    esac
    du -sh "$out"
}

families=("$@")
[ ${#families[@]} -gt 0 ] || families=(llava_next_video qwen2_5_vl llava_onevision videollama3 internvl_hf pllava internvl)
for f in "${families[@]}"; do
    fixture "$f"
done
