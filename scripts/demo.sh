#!/usr/bin/env bash
# `make demo` (README.md, docs/demo.md): `vidflow demo` on the shipped toy models (models/toy-video and
# models/toy-image). Writes out/demo/report.md; a rerun resumes from out/demo.
set -euo pipefail
cd "$(dirname "$0")/.."
./target/release/vidflow demo "$@"
