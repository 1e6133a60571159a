"""`golden-generate`: PyTorch reference of greedy token generation on a package (golden/generate.json).

The prompt is the open-ended one (`prompt.render_open`), tokenized like `golden.build_sequence`
(the manifest's bos prepended when it names one, one video placeholder spliced into the video embeddings:
F*h*w frame tokens, then the manifest's `video.trailing_tokens`, LLaVA-OneVision's newline, part of
the group `video` and of no `frame[i]`); the frames are `golden.synthetic_frames(manifest, 0)`, the
pixels of golden.safetensors. The model, video features and positions are the family's, as in
`golden`: token indices for `llama` (LLaVA-NeXT-Video, LLaVA-OneVision, VideoLLaMA3 and InternVL, whose
per-frame prompts have one placeholder per frame, golden.Sequence); for `qwen2_5_vl` the prompt's
M-RoPE positions `qwen2_5_vl.manifest_positions` (text after the video at the largest vision position
+ 1), and each generated token one more than the largest position so far on all three axes
(src/engine/positions.rs `with_generated`), fed as [3,1,T] to the model's own rotary module. Two cases:

- `full`, llama family: HF's own `generate` (greedy) on the real HF path: the video placeholder
  expanded to the video's tokens as the processor does (F*h*w, plus the trailing newline for
  LLaVA-OneVision), `pixel_values_videos` (InternVL: the frames as single-tile images in
  `pixel_values`, as its processor passes a video), HF's causal mask and KV cache. It is cross-checked against
  the dense loop below with no blocks (same tokens, same logits).
  `full`, qwen2_5_vl: the dense loop below with no blocks. HF's `generate` places the text after the
  video by transformers 5.23's `get_rope_index`, which is not the official rule once the temporal
  span reaches the grid size (qwen2_5_vl.mrope_positions), so it is no reference here; where both
  rules agree (a smaller seconds_per_group) it gives the dense loop's tokens (`hf_generate`, tested).
- `knockout`: a dense masked greedy loop. Every step recomputes the whole sequence (prompt + the
  tokens generated so far, no KV cache) through each HF decoder layer under its own 4D additive mask
  (golden.run_layers / case_blocked / additive), then final norm + LM head at the last position,
  argmax, and appends that token's embedding. Generated positions join the group `last` (which
  starts at the prompt's final position S-1), so "X -> last" blocks them from reading X and
  "last -> last" blocks them all from reading each other.

Greedy decoding is compared token for token, so every step's top-1/top-2 logit margin is recorded;
the question is the first of QUESTIONS for which no step comes near a tie (and the knockout changes
the tokens), so a package may record another question than QUESTION.
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
from .hf import text_model
from .manifest import MROPE_FAMILY, VIDEO_TRAILING
from .manifest import read as read_manifest
from .prompt import per_frame, render_open_parts

GENERATE_FILE = "generate.json"
QUESTION = "What does the red ball do?"
# The questions tried in order when none is given: the first whose cases pass the margin check.
QUESTIONS = (
    QUESTION,
    "What happens to the red ball?",
    "Where does the red ball go?",
    "Describe the video.",
    "What is moving in the video?",
    "What color is the ball?",
)
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
    (only S-1 when `generated_join_last` is off, a deliberately wrong variant for tests).

    `mrope`: the manifest of a qwen2_5_vl package (M-RoPE positions, `positions`), None for token
    index positions. `generated_at_index` (a deliberately wrong variant for tests) puts generated
    tokens at their token index on all three axes instead of one after the largest position so far."""

    prompt_len: int = 0
    question: list[int] = field(default_factory=list)
    generated_join_last: bool = True
    mrope: dict | None = None
    generated_at_index: bool = False

    def group(self, name: str) -> list[int]:
        if name == "last":
            return list(range(self.prompt_len - 1, self.seq_len if self.generated_join_last else self.prompt_len))
        if name == "question":
            return list(self.question)
        return super().group(name)

    def positions(self) -> torch.Tensor:
        """Position ids of the current sequence: [1,T] token indices, or [3,1,T] M-RoPE positions
        (the prompt's by qwen2_5_vl.manifest_positions; generated tokens continue one after the
        largest position so far, on all three axes)."""
        T = self.seq_len
        if self.mrope is None:
            return torch.arange(T)[None]
        from .qwen2_5_vl import manifest_positions

        prompt = manifest_positions(self.mrope, self.prompt_len, self.video_start)
        n = T - self.prompt_len
        if self.generated_at_index:
            generated = np.arange(self.prompt_len, T)
        else:
            generated = int(prompt.max()) + 1 + np.arange(n)
        pos = np.concatenate((prompt, np.broadcast_to(generated, (3, n))), axis=1)
        return torch.from_numpy(np.ascontiguousarray(pos, dtype=np.int64))[:, None]


def build_open_sequence(manifest: dict, tok: Tokenizer, question: str = QUESTION) -> tuple[str, GenSequence]:
    """(prompt text, sequence of the prompt alone) for the open-ended prompt (a per-frame prompt with
    frame i at i seconds, as golden.build_sequence)."""
    spec = manifest["prompt"]
    special = manifest["special_tokens"]
    r = render_open_parts(spec, question, num_frames=manifest["video"]["num_frames"])
    text = r.text
    enc = tok.encode(text, add_special_tokens=False)
    ids, offsets = list(enc.ids), list(enc.offsets)
    if special["bos_token_id"] is not None:
        ids = [special["bos_token_id"]] + ids
        offsets = [(0, 0)] + offsets
    base = gd.sequence_from_tokens(manifest, ids, offsets, r.video, r.placeholders)
    video_id = special["video_token_id"]
    places = [k for k, t in enumerate(ids) if t == video_id]
    F, hw, trailing = base.num_frames, base.tokens_per_frame, base.trailing_tokens
    rows = [F * hw + trailing] if base.frame_starts is None else [hw] * (F - 1) + [hw + trailing]
    starts = gd.spliced_layout(ids, places, rows)
    # The last token of the video region (the placeholder itself without per-frame text).
    a, b = r.video
    v = max(k for k, (s, e) in enumerate(offsets) if s < b and e > a)

    # The question's character span, and the tokens overlapping it.
    q0, q1 = r.question_text
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
    question_positions = [starts[k] for k in ks]  # spliced (all after the video)
    assert starts[-1] == base.seq_len
    mrope = manifest if manifest["family"] == MROPE_FAMILY else None
    fields = {k: getattr(base, k) for k in gd.Sequence.__dataclass_fields__}
    return text, GenSequence(**fields, prompt_len=base.seq_len, question=question_positions, mrope=mrope)


# ---- the dense masked greedy loop ------------------------------------------------------------------


@torch.no_grad()
def dense_last_logits(model, embeds: torch.Tensor, seq: gd.Sequence, blocks, positions=None) -> torch.Tensor:
    """Logits [V] at the last position of `embeds` [1,T,D] (T = seq.seq_len): every HF decoder layer
    under its own mask (causality plus `blocks`), then the final norm and LM head. `positions`:
    the rotary module's position ids (default: `seq.positions()` for a GenSequence, else token
    indices)."""
    text = text_model(model)
    T = embeds.shape[1]
    assert T == seq.seq_len
    if positions is None:
        positions = seq.positions() if isinstance(seq, GenSequence) else torch.arange(T)[None]
    assert positions.shape[-1] == T
    cos, sin = text.rotary_emb(embeds, positions)
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
    """input_ids as the processor feeds the model: the video placeholder repeated once per video
    embedding (F*h*w, plus the trailing ones), or, in a per-frame prompt, each frame's placeholder
    repeated h*w times (the last frame's also the trailing ones); the model scatters the video
    features into those positions."""
    ids = seq.input_ids
    if seq.frame_starts is None:
        v = seq.video_start
        return ids[:v] + [ids[v]] * seq.num_video_tokens + ids[v + 1:]
    n, F = seq.tokens_per_frame, seq.num_frames
    places = [seq.frame_starts[i] - i * (n - 1) for i in range(F)]
    out, prev = [], 0
    for i, k in enumerate(places):
        out += ids[prev:k] + [ids[k]] * (n + (seq.trailing_tokens if i == F - 1 else 0))
        prev = k + 1
    return out + ids[prev:]


def is_qwen(model) -> bool:
    return getattr(model.config, "model_type", None) == "qwen2_5_vl"


def is_videollama3(model) -> bool:
    return getattr(model.config, "model_type", None) == "video_llama_3"


def is_internvl_hf(model) -> bool:
    return getattr(model.config, "model_type", None) == "internvl"


@torch.no_grad()
def hf_generate(model, seq: gd.Sequence, pixel_values: torch.Tensor, max_new_tokens: int, eos_token_id,
                pad_token_id, seconds_per_group: float | None = None):
    """HF `generate` (greedy, KV cache). Returns (new tokens, logits [steps,V]).

    LLaVA-NeXT-Video / LLaVA-OneVision: `pixel_values_videos` [1,F,3,H,W]. VideoLLaMA3: the frames
    patchified as its processor does, `video_grid_thw` and `video_merge_sizes` (no compression mask:
    every frame keeps all its tokens). InternVL: the frames [F,3,H,W] as `pixel_values`, one tile
    per frame (InternVLProcessor merges a video's frames into `pixel_values`). Qwen2.5-VL: the frames
    patchified as its processor does, `video_grid_thw`, `second_per_grid_ts` = `seconds_per_group`
    and `mm_token_type_ids`; HF then places positions by its own get_rope_index (not vidflow's rule
    once the temporal span reaches the grid size)."""
    ids = torch.tensor([expanded_input_ids(seq)])
    if is_qwen(model):
        from .qwen2_5_vl import grid_thw, patchify

        if seconds_per_group is None:
            raise ValueError("Qwen2.5-VL's generate needs seconds_per_group")
        vcfg = model.config.vision_config
        kwargs = dict(
            pixel_values_videos=patchify(pixel_values, vcfg.temporal_patch_size, vcfg.patch_size,
                                         vcfg.spatial_merge_size),
            video_grid_thw=grid_thw(vcfg, seq.num_frames, pixel_values.shape[2], pixel_values.shape[3]),
            second_per_grid_ts=torch.tensor([float(seconds_per_group)]),
            mm_token_type_ids=(ids == model.config.video_token_id).to(torch.int32) * 2,  # video = 2
        )
        model.model.rope_deltas = None  # HF keeps these between calls
    elif is_videollama3(model):
        from .videollama3 import grid_thw, merge_sizes, patchify

        vcfg = model.config.vision_config
        kwargs = dict(
            pixel_values_videos=patchify(pixel_values, vcfg.patch_size),
            video_grid_thw=grid_thw(vcfg, seq.num_frames, pixel_values.shape[2], pixel_values.shape[3]),
            video_merge_sizes=merge_sizes(),
        )
    elif is_internvl_hf(model):
        kwargs = dict(pixel_values=pixel_values)
    else:
        kwargs = dict(pixel_values_videos=pixel_values[None])
    try:
        out = model.generate(
            input_ids=ids,
            attention_mask=torch.ones_like(ids),
            do_sample=False,
            num_beams=1,
            max_new_tokens=max_new_tokens,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            return_dict_in_generate=True,
            output_logits=True,
            **kwargs,
        )
    finally:
        if is_qwen(model):
            model.model.rope_deltas = None
    new = out.sequences[0, ids.shape[1]:].tolist()
    if eos_token_id in new:  # HF pads a finished sequence only in batches; cut at EOS anyway
        new = new[: new.index(eos_token_id) + 1]
    logits = torch.stack([step[0] for step in out.logits])[: len(new)]
    return new, logits


def check_hf_generate(model, seq: gd.Sequence, embeds: torch.Tensor, pixel_values: torch.Tensor,
                      max_new_tokens: int, eos_token_id, pad_token_id, seconds_per_group: float | None = None):
    """HF generate equals the dense loop without blocks (same tokens, logits within HF_DENSE_TOL).
    Returns (tokens, dense margins)."""
    hf_tokens, hf_logits = hf_generate(model, seq, pixel_values, max_new_tokens, eos_token_id, pad_token_id,
                                       seconds_per_group)
    dense_tokens, margins, dense_logits = dense_greedy(model, embeds, seq, [], max_new_tokens, eos_token_id)
    if hf_tokens != dense_tokens:
        raise AssertionError(f"HF generate gave {hf_tokens}, the dense loop without blocks {dense_tokens}")
    gap = float((hf_logits - dense_logits).abs().max())
    if gap > HF_DENSE_TOL:
        raise AssertionError(f"HF generate's logits differ from the dense loop's by {gap:.3e}")
    return hf_tokens, margins


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
    got = dense_last_logits(model, embeds, seq, [], gd.position_ids(manifest, seq)).numpy().astype(np.float64)
    if got.shape != want.shape:
        raise AssertionError(f"the HF model is not the package's: logits {got.shape} vs {want.shape} in {path}")
    err = float((np.abs(got - want) / (1 + np.abs(want))).max())
    if err > PACKAGE_TOL:
        raise AssertionError(
            f"the HF model is not the package's: MC-prompt prefill logits differ from {path} by {err:.3e}"
        )
    return err


class QuestionRejected(AssertionError):
    """This question gives an unusable golden (a near-tie, no knockout effect, a bad tokenization)."""


def full_reference(model, manifest: dict) -> str:
    """The `full` case's `reference` text."""
    if manifest["family"] == MROPE_FAMILY:
        return ("dense greedy loop with no blocks (each step runs the whole sequence, no KV cache, through every "
                "HF decoder layer under the causal mask, final norm + LM head at the last position, argmax) "
                "with vidflow's M-RoPE positions (the original Qwen2.5-VL rule, qwen2_5_vl.mrope_positions: "
                "text after the video at the largest vision position + 1; each generated token one more than "
                "the largest position so far on all three axes); not HF "
                f"{type(model).__name__}.generate, whose transformers 5.23 get_rope_index places the text after "
                "the video otherwise at this seconds_per_group; where both rules agree (seconds_per_group 0.5) "
                "HF generate gives this loop's tokens")
    video = "F*h*w video tokens"
    if per_frame(manifest["prompt"]) and is_internvl_hf(model):
        return (f"HF {type(model).__name__}.generate (greedy, KV cache, HF causal mask) on input_ids with each "
                "frame's placeholder expanded to its h*w image tokens (the per-frame text around them as "
                "rendered) and the frames as single-tile images in pixel_values, as InternVLProcessor passes "
                "a video; equal to the dense loop with no blocks")
    if per_frame(manifest["prompt"]):
        return (f"HF {type(model).__name__}.generate (greedy, KV cache, HF causal mask) on input_ids with each "
                "frame's placeholder expanded to its h*w video tokens (the per-frame text between them as "
                "rendered) and pixel_values_videos patchified as the HF video processor lays them out, with "
                "video_grid_thw and video_merge_sizes (no token compression); equal to the dense loop with no blocks")
    if manifest["video"].get(VIDEO_TRAILING):
        video = f"F*h*w + {manifest['video'][VIDEO_TRAILING]} video tokens (the trailing newline last)"
    return (f"HF {type(model).__name__}.generate (greedy, KV cache, HF causal mask) on "
            f"input_ids with the video placeholder expanded to {video} and pixel_values_videos; "
            "equal to the dense loop with no blocks")


def compute_generate_golden(hf_dir: str, package_dir: str, question: str | None = None, blocks=None,
                            max_new_tokens: int = MAX_NEW_TOKENS, model=None, check_margins: bool = True) -> dict:
    """The generate.json dict (not written). `model` may be the already loaded HF model of hf_dir.
    `question` None: the first of QUESTIONS whose golden passes the checks (near-ties, knockout)."""
    manifest = read_manifest(os.path.join(package_dir, c.MANIFEST_FILE))
    tok = Tokenizer.from_file(os.path.join(package_dir, manifest["tokenizer"]))
    model = gd.load_model(hf_dir, manifest) if model is None else model
    check_package_model(model, manifest, tok, package_dir)
    if question is not None:
        return _generate_golden(model, manifest, tok, question, blocks, max_new_tokens, check_margins)
    failures = []
    for candidate in QUESTIONS:
        try:
            return _generate_golden(model, manifest, tok, candidate, blocks, max_new_tokens, check_margins)
        except QuestionRejected as e:
            failures.append(f"{candidate!r}: {e}")
    raise AssertionError("no question of QUESTIONS gives a usable golden:\n" + "\n".join(failures))


def _generate_golden(model, manifest: dict, tok: Tokenizer, question: str, blocks, max_new_tokens: int,
                     check_margins: bool) -> dict:
    blocks = KNOCKOUT_BLOCKS if blocks is None else blocks
    special = manifest["special_tokens"]
    eos, pad = special["eos_token_id"], special["pad_token_id"]
    try:
        text, seq = build_open_sequence(manifest, tok, question)
    except ValueError as e:
        raise QuestionRejected(str(e)) from e
    pixel_values = torch.from_numpy(gd.synthetic_frames(manifest, 0))
    _, embeds = gd.spliced_embeddings(model, seq, pixel_values)

    if manifest["family"] == MROPE_FAMILY:
        # HF generate's positions are not vidflow's here (see the module docstring).
        full_tokens, full_margins, _ = dense_greedy(model, embeds, seq, [], max_new_tokens, eos)
    else:
        full_tokens, full_margins = check_hf_generate(model, seq, embeds, pixel_values, max_new_tokens, eos, pad)
    knock_tokens, knock_margins, _ = dense_greedy(model, embeds, seq, blocks, max_new_tokens, eos)

    cases = [
        {
            "name": "full",
            "reference": full_reference(model, manifest),
            "blocks": [],
            "tokens": full_tokens,
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
                raise QuestionRejected(f"case {case['name']}: a top-1/top-2 margin of {case['min_margin']} is a "
                                       f"near-tie (<= {MIN_MARGIN}); pick another question")
        if knock_tokens == full_tokens:
            raise QuestionRejected("the knockout generates the same tokens as the full case; pick other blocks")
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


def write_generate_golden(hf_dir: str, package_dir: str, question: str | None = None, blocks=None,
                          max_new_tokens: int = MAX_NEW_TOKENS) -> dict:
    """Writes PKG/golden/generate.json; returns its dict."""
    desc = compute_generate_golden(hf_dir, package_dir, question, blocks, max_new_tokens)
    out = os.path.join(package_dir, c.GOLDEN_DIR)
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, GENERATE_FILE), "w") as f:
        json.dump(desc, f, indent=2, ensure_ascii=False)
        f.write("\n")
    return desc
