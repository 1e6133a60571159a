"""`golden-generate`: PyTorch reference of greedy token generation on a package (golden/generate.json).

The prompt is the open-ended one (`prompt.render_open`), tokenized like `golden.build_sequence`
(bos prepended, one video placeholder spliced into F*h*w video embeddings); the frames are
`golden.synthetic_frames(manifest, 0)`, the pixels of golden.safetensors. Two cases:

- `full`: HF's own `generate` (greedy) on the real HF path: the video placeholder expanded to F*h*w
  video tokens as the LLaVA-NeXT-Video processor does, `pixel_values_videos`, HF's causal mask and KV
  cache. It is cross-checked against the dense loop below with no blocks (same tokens, same logits).
- `knockout`: a dense masked greedy loop. Every step recomputes the whole sequence (prompt + the
  tokens generated so far, no KV cache) through each HF decoder layer under its own 4D additive mask
  (golden.run_layers / case_blocked / additive), then final norm + LM head at the last position,
  argmax, and appends that token's embedding. Generated positions join the group `last` (which
  starts at the prompt's final position S-1), so "X -> last" blocks them from reading X and
  "last -> last" blocks them all from reading each other.

Greedy decoding is compared token for token, so every step's top-1/top-2 logit margin is recorded;
the question is chosen so that none comes near a tie.
"""

import json
import os
from dataclasses import dataclass, field, replace

import numpy as np
import torch
from safetensors.numpy import load_file
from tokenizers import Tokenizer

from . import contract as c
from . import golden as gd
from .hf import load_video_llm, text_model
from .manifest import read as read_manifest
from .prompt import render_open

GENERATE_FILE = "generate.json"
QUESTION = "What does the red ball do?"
MAX_NEW_TOKENS = 12
# Smallest top-1/top-2 logit margin allowed at any step (fp32 runtimes differ by ~1e-5).
MIN_MARGIN = 2e-3
GENERATED_RULE = "generated positions join `last`"
QUESTION_RULE = (
    "`question` = spliced positions of the prompt tokens whose character offsets overlap the question "
    "text; here exactly the tokens between the after_video text and the assistant prefix (no token "
    "straddles either boundary)"
)
KNOCKOUT_BLOCKS = [
    {"source": "video", "target": "last", "layers": [1, 2]},
    {"source": "cross-frame", "target": "cross-frame", "layers": [1, 2]},
    {"source": "question", "target": "last", "layers": [3, 3]},
    {"source": "last", "target": "last", "layers": [2, 2]},
]
# The cross-check of the rebuilt HF model against the package's golden.safetensors (the fp32 graph
# contract of test_fixture.py: |a - e| / (1 + |e|)).
PACKAGE_TOL = 1e-4
# HF generate (KV cache) against the dense loop (whole sequence every step): same arithmetic up to
# summation order.
HF_DENSE_TOL = 1e-3


@dataclass
class GenSequence(gd.Sequence):
    """A spliced sequence during generation: `seq_len` is the current length (prompt + generated),
    `prompt_len` the prompt's spliced length S. `last` covers S-1 and every generated position
    (only S-1 when `generated_join_last` is off, a deliberately wrong variant for tests)."""

    prompt_len: int = 0
    question: list[int] = field(default_factory=list)
    generated_join_last: bool = True

    def group(self, name: str) -> list[int]:
        if name == "last":
            return list(range(self.prompt_len - 1, self.seq_len if self.generated_join_last else self.prompt_len))
        if name == "question":
            return list(self.question)
        return super().group(name)


def build_open_sequence(manifest: dict, tok: Tokenizer, question: str = QUESTION) -> tuple[str, GenSequence]:
    """(prompt text, sequence of the prompt alone) for the open-ended prompt."""
    spec = manifest["prompt"]
    special = manifest["special_tokens"]
    text = render_open(spec, question)
    enc = tok.encode(text, add_special_tokens=False)
    ids, offsets = list(enc.ids), list(enc.offsets)
    if special["bos_token_id"] is not None:
        ids = [special["bos_token_id"]] + ids
        offsets = [(0, 0)] + offsets
    video_id = special["video_token_id"]
    if ids.count(video_id) != 1:
        raise ValueError(f"the prompt holds {ids.count(video_id)} video placeholder tokens, expected 1")
    v = ids.index(video_id)
    F = manifest["video"]["num_frames"]
    hw = manifest["video"]["grid_h"] * manifest["video"]["grid_w"]
    n = F * hw

    # The question's character span, and the tokens overlapping it.
    q0 = len(spec["system"] + spec["user_prefix"] + spec["video_placeholder"] + spec["after_video"])
    q1 = q0 + len(question)
    assert text[q0:q1] == question
    ks = [k for k, (a, b) in enumerate(offsets) if k and a < q1 and b > q0]
    if not ks or ks != list(range(ks[0], ks[-1] + 1)):
        raise ValueError(f"the question's tokens are not one run: {ks}")
    straddle = [k for k in ks if offsets[k][0] < q0 or offsets[k][1] > q1]
    if straddle:
        raise ValueError(f"tokens {straddle} straddle the question's boundaries; pick another question")
    between = [k for k in range(v + 1, ks[0]) if offsets[k][1] > q0 or offsets[k][0] < q0 - len(spec["after_video"])]
    if between or ks[-1] + 1 >= len(ids) or offsets[ks[-1] + 1][0] < q1:
        raise ValueError("the question's tokens are not exactly those between after_video and the assistant prefix")
    question_positions = [k + n - 1 for k in ks]  # spliced (all after the video)
    S = len(ids) - 1 + n
    return text, GenSequence(ids, v, F, hw, S, prompt_len=S, question=question_positions)


# ---- the dense masked greedy loop ------------------------------------------------------------------


@torch.no_grad()
def dense_last_logits(model, embeds: torch.Tensor, seq: gd.Sequence, blocks) -> torch.Tensor:
    """Logits [V] at the last position of `embeds` [1,T,D] (T = seq.seq_len): every HF decoder layer
    under its own mask (causality plus `blocks`), then the final norm and LM head."""
    text = text_model(model)
    T = embeds.shape[1]
    assert T == seq.seq_len
    cos, sin = text.rotary_emb(embeds, torch.arange(T)[None])
    blocked = gd.case_blocked(len(text.layers), 1, seq, blocks)
    states, _, _ = gd.run_layers(model, embeds, cos, sin, blocked)
    return gd.lenses(model, states[-1][:, -1])[0][0]


def top2_margin(logits: torch.Tensor) -> tuple[int, float]:
    top = torch.topk(logits, 2)
    return int(top.indices[0]), float(top.values[0] - top.values[1])


@torch.no_grad()
def dense_greedy(model, prompt_embeds: torch.Tensor, seq: GenSequence, blocks, max_new_tokens: int,
                 eos_token_id: int | None):
    """Greedy decoding by full recomputation. Returns (tokens, margins, logits [steps,V])."""
    embed = text_model(model).embed_tokens
    embeds = prompt_embeds
    tokens, margins, all_logits = [], [], []
    for _ in range(max_new_tokens):
        logits = dense_last_logits(model, embeds, replace(seq, seq_len=embeds.shape[1]), blocks)
        token, margin = top2_margin(logits)
        tokens.append(token)
        margins.append(margin)
        all_logits.append(logits)
        if token == eos_token_id:
            break
        embeds = torch.cat((embeds, embed(torch.tensor([[token]])).to(embeds.dtype)), dim=1)
    return tokens, margins, torch.stack(all_logits)


# ---- HF's own generate -----------------------------------------------------------------------------


def expanded_input_ids(seq: gd.Sequence) -> list[int]:
    """input_ids as the LLaVA-NeXT-Video processor feeds the model: the video placeholder repeated
    once per video feature (F*h*w); the model scatters the video features into those positions."""
    ids, v = seq.input_ids, seq.video_start
    n = seq.num_frames * seq.tokens_per_frame
    return ids[:v] + [ids[v]] * n + ids[v + 1:]


@torch.no_grad()
def hf_generate(model, seq: gd.Sequence, pixel_values: torch.Tensor, max_new_tokens: int, eos_token_id,
                pad_token_id):
    """HF `generate` (greedy, KV cache). Returns (new tokens, logits [steps,V])."""
    ids = torch.tensor([expanded_input_ids(seq)])
    out = model.generate(
        input_ids=ids,
        attention_mask=torch.ones_like(ids),
        pixel_values_videos=pixel_values[None],
        do_sample=False,
        num_beams=1,
        max_new_tokens=max_new_tokens,
        eos_token_id=eos_token_id,
        pad_token_id=pad_token_id,
        return_dict_in_generate=True,
        output_logits=True,
    )
    new = out.sequences[0, ids.shape[1]:].tolist()
    if eos_token_id in new:  # HF pads a finished sequence only in batches; cut at EOS anyway
        new = new[: new.index(eos_token_id) + 1]
    logits = torch.stack([step[0] for step in out.logits])[: len(new)]
    return new, logits


# ---- the golden -------------------------------------------------------------------------------------


def check_package_model(model, manifest: dict, tok: Tokenizer, package_dir: str) -> float:
    """The HF model is the package's: the dense causal logits at the last position of the
    multiple-choice prompt equal golden.safetensors' prefill.logits_last. Returns the error."""
    path = os.path.join(package_dir, c.GOLDEN_DIR, c.GOLDEN_TENSORS_FILE)
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path} is missing: run `python -m vidflow_export golden` first")
    want = load_file(path)["prefill.logits_last"][0].astype(np.float64)
    seq = gd.build_sequence(manifest, tok)
    pixel_values = torch.from_numpy(gd.synthetic_frames(manifest, 0))
    _, embeds = gd.spliced_embeddings(model, seq, pixel_values)
    got = dense_last_logits(model, embeds, seq, []).numpy().astype(np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"the HF model is not the package's: logits {got.shape} vs {want.shape} in {path}")
    err = float((np.abs(got - want) / (1 + np.abs(want))).max())
    if err > PACKAGE_TOL:
        raise AssertionError(
            f"the HF model is not the package's: MC-prompt prefill logits differ from {path} by {err:.3e}"
        )
    return err


def compute_generate_golden(hf_dir: str, package_dir: str, question: str = QUESTION, blocks=None,
                            max_new_tokens: int = MAX_NEW_TOKENS, model=None, check_margins: bool = True) -> dict:
    """The generate.json dict (not written). `model` may be the already loaded HF model of hf_dir."""
    blocks = KNOCKOUT_BLOCKS if blocks is None else blocks
    manifest = read_manifest(os.path.join(package_dir, c.MANIFEST_FILE))
    if manifest["family"] != "llama":
        # The `full` case is HF's own generate, whose M-RoPE positions (transformers 5.23) are not
        # the rule the qwen2_5_vl goldens use (qwen2_5_vl.mrope_positions).
        raise NotImplementedError(f"golden-generate covers family llama only, not {manifest['family']}")
    if manifest["video"].get("trailing_tokens"):
        # The open sequence, the expanded ids and the model loader here know no trailing video
        # embeddings (LLaVA-OneVision's newline).
        raise NotImplementedError("golden-generate covers packages without video.trailing_tokens only")
    tok = Tokenizer.from_file(os.path.join(package_dir, manifest["tokenizer"]))
    special = manifest["special_tokens"]
    eos, pad = special["eos_token_id"], special["pad_token_id"]
    model = load_video_llm(hf_dir) if model is None else model
    check_package_model(model, manifest, tok, package_dir)

    text, seq = build_open_sequence(manifest, tok, question)
    pixel_values = torch.from_numpy(gd.synthetic_frames(manifest, 0))
    _, embeds = gd.spliced_embeddings(model, seq, pixel_values)

    hf_tokens, hf_logits = hf_generate(model, seq, pixel_values, max_new_tokens, eos, pad)
    dense_tokens, full_margins, dense_logits = dense_greedy(model, embeds, seq, [], max_new_tokens, eos)
    if hf_tokens != dense_tokens:
        raise AssertionError(f"HF generate gave {hf_tokens}, the dense loop without blocks {dense_tokens}")
    gap = float((hf_logits - dense_logits).abs().max())
    if gap > HF_DENSE_TOL:
        raise AssertionError(f"HF generate's logits differ from the dense loop's by {gap:.3e}")
    knock_tokens, knock_margins, _ = dense_greedy(model, embeds, seq, blocks, max_new_tokens, eos)

    cases = [
        {
            "name": "full",
            "reference": "HF LlavaNextVideoForConditionalGeneration.generate (greedy, KV cache, HF causal mask) on "
            "input_ids with the video placeholder expanded to F*h*w video tokens and pixel_values_videos; "
            "equal to the dense loop with no blocks",
            "blocks": [],
            "tokens": hf_tokens,
            "margins": [round(m, 6) for m in full_margins],
            "min_margin": round(min(full_margins), 6),
        },
        {
            "name": "knockout",
            "reference": "dense masked greedy loop: each step runs the whole sequence (prompt + generated tokens, "
            "no KV cache) through every HF decoder layer under its own 4D additive mask (causal plus the "
            "blocks), final norm + LM head at the last position, argmax",
            "blocks": blocks,
            "tokens": knock_tokens,
            "margins": [round(m, 6) for m in knock_margins],
            "min_margin": round(min(knock_margins), 6),
        },
    ]
    if check_margins:
        for case in cases:
            if case["min_margin"] <= MIN_MARGIN:
                raise AssertionError(f"case {case['name']}: a top-1/top-2 margin of {case['min_margin']} is a "
                                     f"near-tie (<= {MIN_MARGIN}); pick another question")
        if knock_tokens == hf_tokens:
            raise AssertionError("the knockout generates the same tokens as the full case; pick other blocks")
    return {
        "question": question,
        "prompt_text": text,
        "input_ids": seq.input_ids,
        "video_start": seq.video_start,
        "seq_len": seq.seq_len,
        "question_positions": seq.question,
        "max_new_tokens": max_new_tokens,
        "eos_token_id": eos,
        "generated_rule": GENERATED_RULE,
        "question_rule": QUESTION_RULE,
        "cases": cases,
    }


def write_generate_golden(hf_dir: str, package_dir: str, question: str = QUESTION, blocks=None,
                          max_new_tokens: int = MAX_NEW_TOKENS) -> dict:
    """Writes PKG/golden/generate.json; returns its dict."""
    desc = compute_generate_golden(hf_dir, package_dir, question, blocks, max_new_tokens)
    out = os.path.join(package_dir, c.GOLDEN_DIR)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, GENERATE_FILE), "w") as f:
        json.dump(desc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return desc
