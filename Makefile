# The two commands of the README:
#   make demo   installs what the demo runs (no PyTorch), then `vidflow demo` on the shipped toy models
#               -> out/demo/report.md
#   make test   installs everything (the Python environment of export/ too), then runs the whole test
#               suite (Rust and Python)
# Both are idempotent; the second run only rebuilds what changed.

PKG ?= tests/fixtures/tiny
# Extra flags for `vidflow demo`, e.g. DEMO_ARGS="--per-task 20".
DEMO_ARGS ?=
VIDFLOW = target/release/vidflow

.PHONY: setup setup-runtime demo answer-demo analysis test test-rust test-python fixture lint

setup:
	bash scripts/setup.sh all

setup-runtime:
	bash scripts/setup.sh runtime

demo: setup-runtime
	bash scripts/demo.sh $(DEMO_ARGS)

# The earlier demo: one answer about a generated test-pattern video with the shipped test package.
answer-demo: setup-runtime
	bash scripts/answer_demo.sh $(PKG)

# Knockout, lens and attention-map plots for the shipped test package, into out/analysis.
analysis: setup-runtime
	bash scripts/analysis.sh

test: setup test-rust test-python

test-rust:
	cargo test --release

test-python:
	.venv/bin/python -m pytest -q export/tests

# Regenerates the committed test packages and their golden files (deterministic).
fixture: setup
	bash export/make_fixture.sh

lint:
	cargo fmt --check
	cargo clippy --all-targets -- -D warnings
