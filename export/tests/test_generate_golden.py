"""The committed greedy-generation golden tests/fixtures/tiny/golden/generate.json: a fresh
recomputation (seed-0 tiny model, HF generate + the dense masked loop) gives the same tokens, the
knockout changes the generated tokens, and no step is a near-tie."""

import json
from dataclasses import replace

import pytest
from conftest import FIXTURE_DIR
from tokenizers import Tokenizer

from vidflow_export import contract as c
from vidflow_export import golden_generate as gg
from vidflow_export.manifest import read as read_manifest
from vidflow_export.prompt import render_open

GOLDEN_FILE = FIXTURE_DIR / c.GOLDEN_DIR / gg.GENERATE_FILE


@pytest.fixture(scope="module")
def committed() -> dict:
    with open(GOLDEN_FILE) as f:
        return json.load(f)


@pytest.fixture(scope="module")
def fresh(tiny_hf, tiny_model) -> dict:
    # The committed package is only read (manifest, tokenizer, golden.safetensors).
    return gg.compute_generate_golden(tiny_hf, str(FIXTURE_DIR), model=tiny_model)


def test_open_prompt_and_ids(committed):
    manifest = read_manifest(str(FIXTURE_DIR / c.MANIFEST_FILE))
    p = manifest["prompt"]
    text = render_open(p, committed["question"])
    assert text == (p["system"] + p["user_prefix"] + p["video_placeholder"] + p["after_video"]
                    + committed["question"] + p["assistant_prefix"])
    assert committed["prompt_text"] == text
    tok = Tokenizer.from_file(str(FIXTURE_DIR / manifest["tokenizer"]))
    special = manifest["special_tokens"]
    ids = committed["input_ids"]
    assert ids == [special["bos_token_id"]] + tok.encode(text, add_special_tokens=False).ids
    assert ids.count(special["video_token_id"]) == 1
    v = manifest["video"]
    assert committed["seq_len"] == len(ids) - 1 + v["num_frames"] * v["grid_h"] * v["grid_w"]
    assert committed["eos_token_id"] == special["eos_token_id"]
    assert committed["generated_rule"] == gg.GENERATED_RULE


def test_committed_golden_regenerates(committed, fresh):
    assert list(committed) == list(fresh)
    for key in fresh:
        if key != "cases":
            assert committed[key] == fresh[key], key
    assert [case["name"] for case in committed["cases"]] == ["full", "knockout"]
    for want, got in zip(committed["cases"], fresh["cases"]):
        assert want["blocks"] == got["blocks"], want["name"]
        assert want["tokens"] == got["tokens"], want["name"]
        assert len(want["margins"]) == len(want["tokens"])
        assert max(abs(a - b) for a, b in zip(want["margins"], got["margins"])) < 1e-3, want["name"]


def test_knockout_changes_tokens_and_no_near_ties(committed):
    full, knock = committed["cases"]
    assert full["blocks"] == [] and knock["blocks"]
    assert knock["tokens"] != full["tokens"]
    for case in committed["cases"]:
        assert 0 < len(case["tokens"]) <= committed["max_new_tokens"]
        eos = committed["eos_token_id"]
        assert eos not in case["tokens"][:-1], case["name"]
        if len(case["tokens"]) < committed["max_new_tokens"]:
            assert case["tokens"][-1] == eos, case["name"]
        assert case["min_margin"] == min(case["margins"]) and case["min_margin"] > gg.MIN_MARGIN, case["name"]


def test_generated_positions_rule_matters(tiny_hf, tiny_model, committed):
    """Had generated positions stayed out of `last`, the knockout would generate other tokens: the
    golden tells the two rules apart."""
    import torch

    from vidflow_export import golden as gd

    manifest = read_manifest(str(FIXTURE_DIR / c.MANIFEST_FILE))
    tok = Tokenizer.from_file(str(FIXTURE_DIR / manifest["tokenizer"]))
    _, seq = gg.build_open_sequence(manifest, tok, committed["question"])
    assert seq.question == committed["question_positions"]
    pixel_values = torch.from_numpy(gd.synthetic_frames(manifest, 0))
    _, embeds = gd.spliced_embeddings(tiny_model, seq, pixel_values)
    knock = committed["cases"][1]
    wrong, _, _ = gg.dense_greedy(tiny_model, embeds, replace(seq, generated_join_last=False), knock["blocks"],
                                  committed["max_new_tokens"], committed["eos_token_id"])
    assert wrong != knock["tokens"]
