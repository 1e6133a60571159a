#!/usr/bin/env bash
# One command for the analyses on the shipped test package: knockout sweeps of the four reference
# targets (plots per target), the layer-wise answer probability and logit-lens concepts (plots), and
# an attention-map grid over the frames (baseline and knockout side by side).
set -euo pipefail
cd "$(dirname "$0")/.."
PKG=${1:-tests/fixtures/tiny}
DATA=${2:-tests/fixtures/knockout/samples.json}
OUT=${3:-out/analysis}
VF=./target/release/vidflow
# The shipped package has random weights, so it answers most samples wrongly: --all-samples.
$VF knockout --model "$PKG" --data "$DATA" --all-samples --window 3 \
  --targets cross-frame,vql-to-ql,question-and-options-to-last,vq-to-true-opt --out "$OUT/knockout"
$VF lens --model "$PKG" --data "$DATA" --all-samples \
  --keywords configs/keywords/action_sequence.yaml --out "$OUT/lens"
$VF attention --model "$PKG" --data "$DATA" --query last \
  --targets vql-to-ql --flow "video ↛ last" --block-layers 1-3 --out "$OUT/attention"
echo
echo "knockout plots:  $OUT/knockout/plots/"
echo "lens plots:      $OUT/lens/plots/"
echo "attention grids: $OUT/attention/heatmaps/"
