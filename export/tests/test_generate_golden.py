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


# ---- the Qwen2.5-VL and LLaVA-OneVision packages ----------------------------------------------------------
# tests/fixtures/tiny-qwen2_5_vl (M-RoPE positions; `full` is the dense loop with vidflow's positions) and
# tests/fixtures/tiny-llava_onevision (the trailing newline; `full` is HF generate).

FAMILY_FIXTURES = {
    "qwen2_5_vl": FIXTURE_DIR.parent / "tiny-qwen2_5_vl",
    "llava_onevision": FIXTURE_DIR.parent / "tiny-llava_onevision",
}
FAMILIES = list(FAMILY_FIXTURES)


class Family:
    """One family's fixture package, its freshly built seed-0 HF model and its committed golden."""

    def __init__(self, name: str, tmp_path_factory):
        from vidflow_export import golden as gd

        self.name = name
        self.dir = FAMILY_FIXTURES[name]
        self.hf = str(tmp_path_factory.mktemp(f"{name}_hf"))
        if name == "qwen2_5_vl":
            from vidflow_export.qwen2_5_vl import build_tiny
        else:
            from vidflow_export.llava_onevision import build_tiny
        build_tiny(self.hf, seed=0)
        self.manifest = read_manifest(str(self.dir / c.MANIFEST_FILE))
        self.tok = Tokenizer.from_file(str(self.dir / self.manifest["tokenizer"]))
        self.model = gd.load_model(self.hf, self.manifest)
        with open(self.dir / c.GOLDEN_DIR / gg.GENERATE_FILE) as f:
            self.committed = json.load(f)

    def open_sequence(self, manifest=None):
        """(sequence, prompt embeddings, pixels) of the committed question."""
        import torch

        from vidflow_export import golden as gd

        manifest = manifest or self.manifest
        _, seq = gg.build_open_sequence(manifest, self.tok, self.committed["question"])
        pixel_values = torch.from_numpy(gd.synthetic_frames(manifest, 0))
        _, embeds = gd.spliced_embeddings(self.model, seq, pixel_values)
        return seq, embeds, pixel_values


_FAMILIES: dict = {}


def loaded(name: str, tmp_path_factory) -> Family:
    if name not in _FAMILIES:
        _FAMILIES[name] = Family(name, tmp_path_factory)
    return _FAMILIES[name]


@pytest.fixture(scope="module", params=FAMILIES)
def family(request, tmp_path_factory) -> Family:
    return loaded(request.param, tmp_path_factory)


@pytest.fixture(scope="module")
def qwen(tmp_path_factory) -> Family:
    return loaded("qwen2_5_vl", tmp_path_factory)


def test_family_open_prompt_and_ids(family):
    g, manifest = family.committed, family.manifest
    p = manifest["prompt"]
    assert g["prompt_text"] == render_open(p, g["question"])
    special = manifest["special_tokens"]
    assert special["bos_token_id"] is None
    ids = g["input_ids"]
    assert ids == family.tok.encode(g["prompt_text"], add_special_tokens=False).ids
    assert ids.count(special["video_token_id"]) == 1 and g["video_start"] == ids.index(special["video_token_id"])
    v = manifest["video"]
    n = v["num_frames"] * v["grid_h"] * v["grid_w"] + v.get("trailing_tokens", 0)
    assert n == (65 if family.name == "llava_onevision" else 64)
    assert g["seq_len"] == len(ids) - 1 + n
    assert g["eos_token_id"] == special["eos_token_id"]
    # The question's tokens come right after the video's closing text (all after the video).
    q = g["question_positions"]
    assert q == list(range(q[0], q[-1] + 1)) and q[0] == g["video_start"] + n + 1
    assert g["question"] in gg.QUESTIONS and g["generated_rule"] == gg.GENERATED_RULE
    # Same fields, in the same order, as the LLaVA-NeXT-Video golden that tests/generate.rs reads.
    with open(GOLDEN_FILE) as f:
        tiny = json.load(f)
    assert list(g) == list(tiny)
    assert [list(case) for case in g["cases"]] == [list(case) for case in tiny["cases"]]


def test_family_committed_golden_regenerates(family):
    """A recomputation (the question chosen afresh from QUESTIONS) gives the committed golden."""
    fresh = gg.compute_generate_golden(family.hf, str(family.dir), model=family.model)
    g = family.committed
    assert list(g) == list(fresh)
    for key in fresh:
        if key != "cases":
            assert g[key] == fresh[key], key
    assert [case["name"] for case in g["cases"]] == ["full", "knockout"]
    for want, got in zip(g["cases"], fresh["cases"]):
        for key in ("reference", "blocks", "tokens"):
            assert want[key] == got[key], (want["name"], key)
        assert len(want["margins"]) == len(want["tokens"])
        assert max(abs(a - b) for a, b in zip(want["margins"], got["margins"])) < 1e-3, want["name"]
    full, knock = g["cases"]
    assert full["blocks"] == [] and knock["blocks"] == gg.KNOCKOUT_BLOCKS
    assert knock["tokens"] != full["tokens"]
    for case in g["cases"]:
        assert 0 < len(case["tokens"]) <= g["max_new_tokens"]
        assert g["eos_token_id"] not in case["tokens"][:-1]
        assert case["min_margin"] == min(case["margins"]) and case["min_margin"] > gg.MIN_MARGIN, case["name"]
    if family.name == "qwen2_5_vl":
        assert full["reference"].startswith("dense greedy loop with no blocks") and "not HF" in full["reference"]
    else:
        assert full["reference"].startswith("HF LlavaOnevisionForConditionalGeneration.generate")


def test_family_generated_positions_join_last(family):
    """Had generated positions stayed out of `last`, the knockout would generate other tokens."""
    seq, embeds, _ = family.open_sequence()
    g = family.committed
    assert seq.question == g["question_positions"] and seq.seq_len == g["seq_len"]
    knock = g["cases"][1]
    wrong, _, _ = gg.dense_greedy(family.model, embeds, replace(seq, generated_join_last=False), knock["blocks"],
                                  g["max_new_tokens"], g["eos_token_id"])
    assert wrong != knock["tokens"]


def test_qwen_generated_positions_continue_after_the_largest(qwen):
    """Qwen2.5-VL: generated tokens sit one after the largest position so far on all three axes
    (= the text rule of mrope_positions over the longer sequence); had they restarted at their token
    index, the full case's tokens or logits would differ."""
    import numpy as np
    import torch

    from vidflow_export.qwen2_5_vl import manifest_positions

    family = qwen
    g = family.committed
    seq, embeds, _ = family.open_sequence()
    T = seq.prompt_len + 5
    got = replace(seq, seq_len=T).positions()[:, 0].numpy()
    assert np.array_equal(got, manifest_positions(family.manifest, T, seq.video_start))
    top = int(manifest_positions(family.manifest, seq.prompt_len, seq.video_start).max())
    # The 64 video tokens span 7 positions, so the largest position lags the token index: the two
    # rules differ on this fixture.
    assert top + 1 < seq.prompt_len
    assert np.array_equal(got[:, seq.prompt_len:], np.broadcast_to(top + 1 + np.arange(5), (3, 5)))

    full = g["cases"][0]
    tokens, _, logits = gg.dense_greedy(family.model, embeds, seq, [], g["max_new_tokens"], g["eos_token_id"])
    assert tokens == full["tokens"]
    wrong, _, wrong_logits = gg.dense_greedy(family.model, embeds, replace(seq, generated_at_index=True), [],
                                             g["max_new_tokens"], g["eos_token_id"])
    # The first step reads the prompt's positions only; the later ones see the rule.
    assert wrong[0] == tokens[0] and torch.equal(wrong_logits[0], logits[0])
    n = min(len(wrong), len(tokens))
    assert wrong != tokens or float((wrong_logits[:n] - logits[:n]).abs().max()) > 1e-2


def test_qwen_hf_generate_equals_the_dense_loop_where_the_rules_agree(qwen):
    """Qwen2.5-VL at 0.5 s per group (t = s + 0..3 below s + max(grid) = s + 4): transformers 5.23's
    get_rope_index and vidflow's rule give the same positions, and HF generate gives the dense loop's
    tokens and logits; at the fixture's 1 s per group HF generate's logits leave the dense loop's."""
    family = qwen
    g = family.committed
    agree = dict(family.manifest, mrope=dict(family.manifest["mrope"], seconds_per_group=0.5))
    seq, embeds, pixels = family.open_sequence(agree)
    special = family.manifest["special_tokens"]
    tokens, margins = gg.check_hf_generate(family.model, seq, embeds, pixels, g["max_new_tokens"],
                                           special["eos_token_id"], special["pad_token_id"], seconds_per_group=0.5)
    assert len(tokens) == g["max_new_tokens"] and min(margins) > gg.MIN_MARGIN

    # The fixture's own layout: HF's positions are not vidflow's, and neither are its logits.
    seq, embeds, pixels = family.open_sequence()
    spg = family.manifest["mrope"]["seconds_per_group"]
    _, hf_logits = gg.hf_generate(family.model, seq, pixels, g["max_new_tokens"], special["eos_token_id"],
                                  special["pad_token_id"], seconds_per_group=spg)
    _, _, dense_logits = gg.dense_greedy(family.model, embeds, seq, [], g["max_new_tokens"], special["eos_token_id"])
    n = min(len(hf_logits), len(dense_logits))
    assert float((hf_logits[:n] - dense_logits[:n]).abs().max()) > 1e-2
    assert family.model.model.rope_deltas is None


def test_the_first_usable_question_is_chosen(monkeypatch):
    """With no question given, the first of QUESTIONS whose golden passes the checks is taken, in
    order; none passing is an error naming each failure."""
    rejected = set(gg.QUESTIONS[:2])

    def fake(model, manifest, tok, question, *args):
        if question in rejected:
            raise gg.QuestionRejected("near-tie")
        return {"question": question}

    monkeypatch.setattr(gg, "check_package_model", lambda *args: 0.0)
    monkeypatch.setattr(gg, "_generate_golden", fake)
    for pkg in [FIXTURE_DIR, *FAMILY_FIXTURES.values()]:
        assert gg.compute_generate_golden("unused", str(pkg), model=object())["question"] == gg.QUESTIONS[2]
    assert gg.compute_generate_golden("unused", str(FIXTURE_DIR), gg.QUESTIONS[3], model=object()) == {
        "question": gg.QUESTIONS[3]}
    rejected.update(gg.QUESTIONS)
    with pytest.raises(AssertionError, match="no question") as e:
        gg.compute_generate_golden("unused", str(FIXTURE_DIR), model=object())
    assert all(repr(q) in str(e.value) for q in gg.QUESTIONS)
