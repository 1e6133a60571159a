"""`vidflow knockout` against the PyTorch reference of the published knockout method.

vidflow (the release binary, built by the test command's setup step) sweeps the committed samples
of tests/fixtures/knockout on the committed tiny package and dumps its exact inputs; the reference
(vidflow_export.reference_knockout) runs the seed-0 HF model those packages were exported from, one
full forward per knockout with the attention mask replaced in the window's layers. Every record's
%change must agree within 0.01 percentage points, for all four targets and window styles. The
committed reference records (what tests/knockout_sweep.rs checks vidflow against) must equal a
fresh reference run.
"""

import json
import subprocess
from pathlib import Path

import pytest
import torch
from conftest import REPO

from vidflow_export.reference_knockout import FIXTURE_FIELDS, STYLES, TARGETS, run_reference

VIDFLOW = REPO / "target" / "release" / "vidflow"
FIXTURE = REPO / "tests" / "fixtures" / "knockout"
PACKAGE = REPO / "tests" / "fixtures" / "tiny"
WINDOW = 3
# vidflow's %change vs the reference's, in percentage points.
PP_TOL = 0.01


def run_vidflow(out: Path, style: str, dump: Path | None = None) -> list:
    if not VIDFLOW.exists():
        pytest.fail(f"{VIDFLOW} is missing: build it first (make test runs `cargo build --release`)")
    cmd = [str(VIDFLOW), "knockout", "--model", str(PACKAGE), "--data", str(FIXTURE / "samples.json"),
           "--targets", ",".join(TARGETS), "--window", str(WINDOW), "--window-style", style,
           "--all-samples", "--out", str(out), "--quiet", "--threads", "1"]
    if dump is not None:
        cmd += ["--dump-inputs", str(dump)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True)
    assert done.returncode == 0, f"vidflow failed:\n{done.stdout}\n{done.stderr}"
    with open(out / "knockouts.jsonl") as f:
        return [json.loads(line) for line in f]


def key(r: dict):
    return (r["sample_id"], r["window_style"], r["flow"], r["layer"])


@pytest.fixture(scope="module")
def knockout_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("knockout")


@pytest.fixture(scope="module")
def reference(tiny_model, knockout_dir):
    """(vidflow records, reference records) over every style."""
    tmp = knockout_dir
    dump = tmp / "dump"
    ours = []
    for i, style in enumerate(STYLES):
        ours += run_vidflow(tmp / style, style, dump if i == 0 else None)
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many tiny forwards: threads only add overhead
    try:
        ref = run_reference(tiny_model, str(dump), TARGETS, WINDOW, STYLES, all_samples=True)
    finally:
        torch.set_num_threads(threads)
    return ours, ref


def test_vidflow_matches_the_reference_method(reference):
    ours, ref = reference
    assert len(ref) == 2 * 11 * 4 * len(STYLES), "2 samples, 11 flows, 4 layers, 4 styles"
    by_key = {key(r): r for r in ours}
    assert len(by_key) == len(ours) == len(ref)
    worst = 0.0
    for r in ref:
        v = by_key[key(r)]
        what = f"{key(r)}"
        assert v["window_layers"] == r["window_layers"], what
        assert v["edges_blocked"] == r["edges_blocked"], what
        assert v["base_token"] == r["base_token"] and v["true_token"] == r["true_token"], what
        assert v["new_token"] == r["new_token"], what
        assert v["p_base"] == pytest.approx(r["p_base"], rel=1e-4), what
        for field in ("pct_change_pred", "pct_change_true"):
            d = abs(v[field] - r[field])
            worst = max(worst, d)
            assert d <= PP_TOL, f"{what} {field}: vidflow {v[field]} vs reference {r[field]}"
    print(f"largest %change difference: {worst:.2e} percentage points")


def test_reference_from_dumped_embeddings(reference, tiny_model, knockout_dir):
    """The inputs_embeds mode (used on the SmolLM2 package, whose vision tower exists only as ONNX)
    fed vidflow's dumped spliced embeddings gives the records of the input_ids + pixels mode."""
    _, ref = reference
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        timing = {}
        emb = run_reference(tiny_model, str(knockout_dir / "dump"), TARGETS, WINDOW, ["center"],
                            all_samples=True, from_embeds=True, timing=timing)
    finally:
        torch.set_num_threads(threads)
    assert timing["knockouts"] == len(emb) == 2 * 11 * 4 and timing["baselines"] == 2
    by_key = {key(r): r for r in ref}
    for r in emb:
        p = by_key[key(r)]
        assert r["new_token"] == p["new_token"] and r["base_token"] == p["base_token"], key(r)
        for field in ("pct_change_pred", "pct_change_true"):
            assert abs(r[field] - p[field]) <= PP_TOL, (key(r), field, r[field], p[field])


def test_knockouts_move_the_answer(reference):
    """The comparison is not vacuous: knockouts change probabilities by more than the tolerance."""
    _, ref = reference
    moved = [r for r in ref if abs(r["pct_change_pred"]) > 100 * PP_TOL]
    assert len(moved) > len(ref) // 4


def test_committed_reference_records_are_current(reference):
    """The committed records were written on another processor: PyTorch picks its CPU kernels by
    instruction set (AVX2, AVX-512, ...), so floats are held to the knockout contract (0.01
    percentage points for %change, 1e-4 relative for probabilities), never to their last bits."""
    _, ref = reference
    with open(FIXTURE / "reference_records.jsonl") as f:
        committed = [json.loads(line) for line in f]
    assert len(committed) == len(ref)
    for c, r in zip(committed, ref):
        assert set(c) == set(FIXTURE_FIELDS)
        for field in FIXTURE_FIELDS:
            if field.startswith("pct_change"):
                assert abs(c[field] - r[field]) <= PP_TOL, (key(c), field, c[field], r[field])
            elif isinstance(c[field], float):
                assert c[field] == pytest.approx(r[field], rel=1e-4), (key(c), field)
            else:
                assert c[field] == r[field], (key(c), field)
