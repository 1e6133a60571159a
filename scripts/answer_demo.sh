#!/usr/bin/env bash
# vidflow's main job on a package that ships with the repository: generate a short video, then
# answer a multiple-choice question about it and print the answer probabilities at the last position.
set -euo pipefail
cd "$(dirname "$0")/.."
PKG=${1:-tests/fixtures/tiny}
OUT=out/answer-demo
mkdir -p "$OUT"
VIDEO="$OUT/clip.mp4"
if [ ! -f "$VIDEO" ]; then
  ffmpeg -y -loglevel error -f lavfi -i testsrc2=size=160x120:rate=12 -t 3 -c:v libx264 -pix_fmt yuv420p "$VIDEO"
fi
./target/release/vidflow info "$PKG"
echo
./target/release/vidflow answer --model "$PKG" --video "$VIDEO" \
  --question "Which part of the picture changes over time?" \
  --option "The moving colour bars" --option "The frame counter" --option "Nothing changes" \
  --answer "The frame counter"
echo
echo "(the shipped test package has random weights: the probabilities exercise the engine, not a trained model)"
