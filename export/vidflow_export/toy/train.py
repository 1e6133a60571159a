"""`toy-train`: data, the four training stages, held-out evaluation, export (docs/toy.md).

Stages (each continues from the previous weights):

0. language: text-only multiple-choice questions (`text.py`), the language model the published
   VideoLLMs start from;
1. vision: the vision tower, pooler and projector learn to describe each cell of a frame
   (`vision_stage`), the stand-in for a pretrained CLIP;
2. image: single-frame questions from `vidflow synth --suite image` (colour, shape, position,
   number of objects) -> the `toy-image` package;
3. video: instruction tuning on the five temporal tasks of `vidflow synth` -> `toy-video`.

Every stage but vision minimises the cross-entropy of the true option's label token at the last prompt
position (after "Best option:("), plus a small next-token loss on the text after the video and
the option probes (`Probes`). Everything is seeded; `torch.use_deterministic_algorithms` and a
fixed thread count make a rerun reproduce the weights.
"""

import copy
import hashlib
import json
import math
import os
import platform
import shutil
import tempfile
import time

import numpy as np
import torch

from . import data as d
from .model import ARCH, PromptEncoder, build_model, corpus, save_hf, tokens_per_frame, train_tokenizer
from .text import statement

_STAGE = {"warmup": 50, "weight_decay": 0.01, "text_loss": 0.2, "probe": 1.0, "decay_from": 0.0}

# Everything that decides the result (recorded in toy-train.json next to the packages).
SETTINGS = {
    "seed": 0,
    "threads": 2,
    "num_frames": 8,
    # vidflow synth defaults: 64x64 frames, 16 frames at 8 fps.
    "data": {"image_per_task": 1500, "video_per_task": 2000, "heldout_per_task": 200,
             # Dataset seeds: training seed*10+1 (image) and seed*10+2 (video), held-out seed+1000.
             "heldout_seed_offset": 1000},
    "stages": {
        "language": dict(_STAGE, steps=1000, batch=16, lr=3e-3),
        "vision": {"steps": 2000, "batch": 128, "lr": 2e-3, "warmup": 50, "weight_decay": 0.01},
        "image": dict(_STAGE, steps=600, batch=16, lr=2e-3),
        # Cross-frame perception is supervised where it must happen: look-ups in layer 0 (head 0
        # to the previous frame, head 2 to the first), per-token change features after layer 1,
        # and the answer's content in the last frame's tokens after layer 3 (docs/toy.md).
        "video": dict(_STAGE, steps=8000, batch=16, lr=2e-3, motion_probe=10.0, change_features=True,
                      motion_features="change", lookup=1.0, lookup_layer=0,
                      lookup_heads=[[0, "previous"], [2, "first"]], video_concept=1.0,
                      video_concept_layer=3),
    },
    "arch": ARCH,
}


def set_determinism(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


# Thumbnail blocks per cell side (the vision stage's and the motion probe's targets).
THUMB_SUBS = 4


def thumbnails(frames: np.ndarray, tokens_per_frame: int, subs: int | None = None) -> np.ndarray:
    """What each video token's cell looks like: float32 [..., h*w, subs*subs*3], the cell of every
    token (row-major grid, as the pooler emits them) averaged down to subs x subs RGB blocks in
    [-0.5, 0.5]. The target of the vision stage and, differenced over frames, of the motion probe."""
    subs = subs or THUMB_SUBS
    lead = frames.shape[:-3]
    hgt, wid = frames.shape[-3:-1]
    g = int(round(tokens_per_frame ** 0.5))
    ch, cw = hgt // g // subs, wid // g // subs
    x = frames.reshape(-1, g, subs, ch, g, subs, cw, 3).astype(np.float32).mean((3, 6)) / 255.0 - 0.5
    x = x.transpose(0, 1, 3, 2, 4, 5).reshape(*lead, g * g, subs * subs * 3)
    return np.ascontiguousarray(x)


# Per-cell change features appended to the thumbnail difference by `motion_targets`.
CHANGE_FEATURES = 7
# Displacement between two sampled frames that the shift features test for (pixels, x and y):
# the four diagonals at the speed of `vidflow synth`'s movers (3 px per source frame, every
# second source frame sampled).
SHIFTS = ((-6, -6), (6, -6), (-6, 6), (6, 6))


def motion_targets(frames: np.ndarray, tokens_per_frame: int, extra: bool = False) -> np.ndarray:
    """What changed in each token's cell since the previous sampled frame, from the pixels:
    float32 [N, F, h*w, 3*subs^2 (+ CHANGE_FEATURES)], the signed difference of the cell
    thumbnails (0 for the first frame). Only attention to earlier frames can tell it: the probe
    trains the cross-frame pathway.

    With `extra`, seven features of the change whose mean over the video tokens answers a
    question (so one uniform read of the video suffices): how much of the cell changed
    (`object_count`), the signed change of the area covered by objects (`action_antonym`), how
    much the cell differs from the first frame (its history, `action_sequence`), and, for each
    diagonal of `SHIFTS`, how much better the objects in the cell are explained by the previous
    frame's objects shifted that way than unshifted (`moving_direction`; shifts wrap around, as
    the movers do). Objects are the pixels far from the frame's median colour."""
    n, f = frames.shape[:2]
    width = 3 * THUMB_SUBS**2 + (CHANGE_FEATURES if extra else 0)
    out = np.zeros((n, f, tokens_per_frame, width), np.float32)
    g = int(round(tokens_per_frame ** 0.5))
    hgt, wid = frames.shape[2:4]
    ch, cw = hgt // g, wid // g
    area = float(ch * cw) / 4.0

    def per_cell(x):  # [B, F', H, W] -> [B, F', g*g], summed over each cell, in quarter cells
        return x.reshape(*x.shape[:2], g, ch, g, cw).sum((3, 5)).reshape(*x.shape[:2], g * g) / area

    for i in range(0, n, 256):
        chunk = frames[i : i + 256]
        t = thumbnails(chunk, tokens_per_frame)
        k = t.shape[-1]
        step = t[:, 1:] - t[:, :-1]
        out[i : i + 256, 1:, :, :k] = step
        if not extra:
            continue
        x = chunk.astype(np.int16)
        bg = np.median(x.reshape(*x.shape[:2], -1, 3), axis=2).astype(np.int16)
        mask = (np.abs(x - bg[:, :, None, None, :]).max(-1) > 40).astype(np.float32)  # [B, F, H, W]
        now, before = mask[:, 1:], mask[:, :-1]
        dst = out[i : i + 256, 1:]
        dst[..., k] = np.abs(step).sum(-1) / 4.0
        dst[..., k + 1] = per_cell(now - before)
        dst[..., k + 2] = np.abs(t[:, 1:] - t[:, :1]).sum(-1) / 4.0
        still = per_cell(now * before)
        for j, (dx, dy) in enumerate(SHIFTS):
            shifted = np.roll(before, (dy, dx), axis=(2, 3))
            dst[..., k + 3 + j] = per_cell(now * shifted) - still
    return out


class Examples:
    """One split: token ids (prompt, then the full answer; padded right), the last prompt position,
    the answer label, text-loss targets, and the frames of every sample."""

    def __init__(self, tasks: dict, enc: PromptEncoder, num_frames: int, text_only: bool = False,
                 concepts: dict | None = None, change_features: bool = False):
        """`text_only`: stage-0 samples, a sentence stating the answer in place of the video.
        `change_features`: the motion targets carry `CHANGE_FEATURES` more columns."""
        self.task_names = list(tasks)
        ids, task_of, frames, labels, answers, last, video_end, opt_ends = [], [], [], [], [], [], [], []
        q_ends, concept_ids, words = [], [], []
        self.num_concepts = max(1, len(concepts or {}))
        for ti, (name, t) in enumerate(tasks.items()):
            if not text_only and t.frames.shape[1] != num_frames:
                raise ValueError(f"{name}: {t.frames.shape[1]} frames per sample, expected {num_frames}")
            for q, c, a in zip(t.questions, t.candidates, t.answers):
                if text_only:
                    prompt = enc.encode(q, c, 0, statement=statement(q, c[a]))
                    # Text loss from the statement on (the system prefix is constant).
                    video_end.append(enc.content_start())
                else:
                    prompt = enc.encode(q, c, num_frames)
                    video_end.append(len(prompt) - 1 - prompt[::-1].index(enc.video) + 1)
                lab = enc.label_ids(q, c)
                ends = enc.option_ends(prompt, len(c))
                q_ends.append(enc.question_end(prompt))
                w = enc.content_words(c[a])
                words.append(w + [-1] * (4 - len(w)))
                concept_ids.append((concepts or {}).get((name, c[a]), -100))
                opt_ends.append(ends + [-1] * (8 - len(ends)))
                ids.append(prompt + enc.continuation(c, a))
                last.append(len(prompt) - 1)
                labels.append(lab + [-1] * (8 - len(lab)))
                answers.append(a)
                task_of.append(ti)
            if not text_only:
                frames.append(t.frames)
        self.lengths = np.array([len(x) for x in ids])
        self.ids = np.full((len(ids), self.lengths.max()), enc.pad, dtype=np.int64)
        # Text-loss targets: the next token at every position from the last video token on,
        # except the last prompt position (its target is the answer label, scored apart).
        self.lm_targets = np.full_like(self.ids, -100)
        for i, x in enumerate(ids):
            self.ids[i, : len(x)] = x
            for p in range(video_end[i] - 1, len(x) - 1):
                if p != last[i]:
                    self.lm_targets[i, p] = x[p + 1]
        self.last = np.array(last)
        self.opt_ends = np.array(opt_ends, dtype=np.int64)
        self.q_ends = np.array(q_ends, dtype=np.int64)
        self.concepts = np.array(concept_ids, dtype=np.int64)
        # The task of each concept: a clip-level probe chooses among its own task's answers only.
        self.concept_task = np.full(self.num_concepts, -1, dtype=np.int64)
        for cid, ti in zip(concept_ids, task_of):
            if cid >= 0:
                self.concept_task[cid] = ti
        self.words = np.array(words, dtype=np.int64)
        self.labels = np.array(labels, dtype=np.int64)
        self.answers = np.array(answers, dtype=np.int64)
        self.targets = self.labels[np.arange(len(ids)), self.answers]
        self.task_of = np.array(task_of)
        self.frames = np.concatenate(frames) if frames else None
        self.video_start = enc.content_start() + 1 if not text_only else 0
        self.motion = None if self.frames is None or num_frames < 2 else motion_targets(self.frames, enc.hw, change_features)
        # Tokens shared by every prompt (bos, system text, user prefix), computed once per batch.
        self.prefix_len = enc.content_start()
        if (self.ids[:, : self.prefix_len] != self.ids[:1, : self.prefix_len]).any():
            raise AssertionError("prompts do not share their first tokens")

    def __len__(self):
        return len(self.answers)

    def batch(self, idx: np.ndarray, with_answer: bool = True):
        """Tensors for samples `idx`; without the answer, only the prompts (for evaluation)."""
        n = (self.lengths[idx] if with_answer else self.last[idx] + 1).max()
        return (torch.from_numpy(self.ids[idx, :n]), torch.from_numpy(self.last[idx]),
                None if self.frames is None else d.normalise(self.frames[idx]),
                torch.from_numpy(self.targets[idx]),
                torch.from_numpy(self.lm_targets[idx, :n]), torch.from_numpy(self.opt_ends[idx]),
                torch.from_numpy(self.answers[idx]), torch.from_numpy(self.q_ends[idx]),
                torch.from_numpy(self.concepts[idx]),
                None if self.motion is None else torch.from_numpy(self.motion[idx]),
                torch.from_numpy(self.words[idx]))


def forward(model, input_ids, pixel_values_videos, prefix_len: int = 0, states: bool = False):
    """Final hidden states (after the final norm): the HF model's own parts in its own order
    (embeddings, video features spliced at the video ids, decoder). With `states`, also the
    residual stream before and after every decoder layer (for the training probes).

    `prefix_len` > 0: the first `prefix_len` tokens (bos, system text, user prefix) are the same
    in every sample; they are computed once and their keys and values shared by the batch. Same
    result as the plain forward (and the same gradients, summed over the batch), a third less
    work on short prompts."""
    inner = model.model
    embeds = inner.get_input_embeddings()(input_ids)
    if pixel_values_videos is not None:
        embeds = _splice_video(model, input_ids, embeds, pixel_values_videos)
    lm = inner.language_model
    if not prefix_len:
        out = lm(inputs_embeds=embeds, output_hidden_states=states)
        return out.last_hidden_state, (out.hidden_states if states else None)
    b, t = input_ids.shape
    head = lm(inputs_embeds=embeds[:1, :prefix_len], use_cache=True, output_hidden_states=states)
    cache = head.past_key_values
    cache.batch_repeat_interleave(b)
    positions = torch.arange(prefix_len, t).unsqueeze(0).expand(b, -1)
    tail = lm(inputs_embeds=embeds[:, prefix_len:], past_key_values=cache, position_ids=positions,
              use_cache=True, output_hidden_states=states)
    final = torch.cat([head.last_hidden_state.expand(b, -1, -1), tail.last_hidden_state], dim=1)
    if not states:
        return final, None
    return final, [torch.cat([h.expand(b, -1, -1), t_], dim=1) for h, t_ in zip(head.hidden_states, tail.hidden_states)]


def _video_features(model, pixel_values_videos):
    """[B, F*h*w, D]: the model's own video path (encoder per frame, pooler, projector)."""
    cfg = model.config
    return model.model.get_video_features(
        pixel_values_videos=pixel_values_videos,
        vision_feature_layer=cfg.vision_feature_layer,
        vision_feature_select_strategy=cfg.vision_feature_select_strategy,
    ).pooler_output


def _splice_video(model, input_ids, embeds, pixel_values_videos):
    feats = _video_features(model, pixel_values_videos)
    cfg = model.config
    mask = (input_ids == cfg.video_token_index).unsqueeze(-1).expand_as(embeds)
    return embeds.masked_scatter(mask, feats.to(embeds.dtype))


def last_logits(model, input_ids, last, pixel_values_videos, prefix_len: int = 0):
    """Logits at each sample's last prompt position."""
    hidden, _ = forward(model, input_ids, pixel_values_videos, prefix_len)
    return model.lm_head(hidden[torch.arange(len(last)), last])


class Probes(torch.nn.Module):
    """Training-only linear probes on the residual stream (dropped after training; the model stays
    a plain LLaVA-NeXT-Video). They supervise the steps of answering a multiple-choice question
    one by one, each at the place and depth where the published models do it:

    - `concept`, at the last token of the question, after layer `concept_layer`: the answer's
      content (which of all the answer texts of the task it is), read from the video (or, in the
      language stage, from the statement);
    - `match` and `label`, at the newline that ends each option, after layer `match_layer`:
      whether this option is the answer, and which label the option carries;
    - the answer loss itself then only has to read, at the last position, the label of the option
      that matched.
    """

    def __init__(self, hidden: int, concepts: int, layers: int, seed: int, motion_width: int = 3 * THUMB_SUBS**2):
        super().__init__()
        g = torch.Generator().manual_seed(seed + 7)
        self.concept_layer = layers // 2 - 1
        self.match_layer = layers // 2 + 1
        self.motion_layer = 1
        self.concept = torch.nn.Linear(hidden, concepts)
        self.motion = torch.nn.Linear(hidden, motion_width)
        self.match = torch.nn.Linear(hidden, 1)
        self.label = torch.nn.Linear(hidden, 8)
        with torch.no_grad():
            for lin in (self.concept, self.match, self.label, self.motion):
                lin.weight.copy_(torch.randn(lin.weight.shape, generator=g) * hidden**-0.5)
                lin.bias.zero_()

    def loss(self, states, ends, answer, q_end, concept, motion=None, video_start=0, motion_weight=100.0):
        b, k = ends.shape
        # states[0] is the input of layer 0; states[i + 1] the output of layer i.
        mid = states[self.match_layer + 1]
        valid = ends >= 0
        rows = torch.arange(b).unsqueeze(1).expand(b, k)
        h = mid[rows[valid], ends[valid]]
        option = torch.arange(k).unsqueeze(0).expand(b, k)[valid]
        is_answer = (option == answer.unsqueeze(1).expand(b, k)[valid]).float()
        match = torch.nn.functional.binary_cross_entropy_with_logits(self.match(h).squeeze(-1), is_answer)
        label = torch.nn.functional.cross_entropy(self.label(h), option)
        q = states[self.concept_layer + 1][torch.arange(b), q_end]
        concept_loss = (torch.nn.functional.cross_entropy(self.concept(q), concept, ignore_index=-100)
                        if (concept >= 0).any() else q.sum() * 0.0)
        total = match + label + concept_loss
        if motion is not None:
            # Each video token predicts what changed in its cell since the previous frame, which
            # only attention to the previous frames can tell (the cross-frame pathway).
            n = motion.shape[1] * motion.shape[2]
            v = states[self.motion_layer + 1][:, video_start : video_start + n]
            pred = self.motion(v / v.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt())
            target = motion.reshape(b, n, -1)
            total = total + motion_weight * torch.nn.functional.mse_loss(pred, target)
        return total


# Attention weights of the supervised layer, kept by `_probe_attention` during the forward.
_ATTENTION = {}


def _probe_attention(module, query, key, value, attention_mask, scaling, dropout=0.0, **kwargs):
    """Attention of the decoder: eager (weights kept) in the layer whose look-ups are supervised,
    SDPA elsewhere. Registered as the attention implementation during the video stage only."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward
    from transformers.models.llama.modeling_llama import eager_attention_forward

    if module.layer_idx != _ATTENTION.get("layer"):
        return sdpa_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                      dropout=dropout, **kwargs)
    out, weights = eager_attention_forward(module, query, key, value, attention_mask, scaling=scaling,
                                           dropout=dropout, **kwargs)
    _ATTENTION["weights"] = weights
    return out, weights


def keep_attention(model, layer: int) -> str:
    """From now on the decoder keeps the attention weights of `layer` in `_ATTENTION["weights"]`
    at every forward (same outputs: eager attention there, with its additive causal mask; a
    custom implementation name would otherwise get no mask at all). Returns the implementation
    it replaced, for `release_attention`."""
    from transformers import AttentionInterface
    from transformers.masking_utils import ALL_MASK_ATTENTION_FUNCTIONS, AttentionMaskInterface

    AttentionInterface.register("toy_probe", _probe_attention)
    AttentionMaskInterface.register("toy_probe", ALL_MASK_ATTENTION_FUNCTIONS["eager"])
    _ATTENTION["layer"] = layer
    previous = model.config.text_config._attn_implementation
    model.config.text_config._attn_implementation = "toy_probe"
    return previous


def release_attention(model, previous: str) -> None:
    """Undoes `keep_attention`."""
    model.config.text_config._attn_implementation = previous
    _ATTENTION.clear()


def lookup_loss(weights, offset: int, video_start: int, frames: int, hw: int, heads: list):
    """Supervised cross-frame look-up: in the given heads, every video token of frame f >= 1
    attends to the token of the same cell in the previous frame (`kind` "previous") or in the
    first frame ("first"). `weights`: [B, H, Tq, Tk] of the queries from position `offset` on.
    The training-only counterpart of the probes: it puts the cross-frame pathway where the
    published models have it (early layers) instead of waiting for the answer loss to find it."""
    n = frames * hw
    pos = torch.arange(video_start + hw, video_start + n)
    frame = (pos - video_start) // hw
    losses = []
    for h, kind in heads:
        key = pos - hw if kind == "previous" else pos - frame * hw
        p = weights[:, h, pos - offset, key]
        losses.append(-(p + 1e-6).log().mean())
    return torch.stack(losses).mean()


def align_loss(video_states, embedding, words):
    """Alignment of video tokens with the words of the answer (what LLaVA's projector learns, and
    what the logit lens finds on video tokens of trained VideoLLMs): read through the input
    embedding matrix, some video token of the clip should be each content word of the correct
    option (`Up`, `left`; `red`, `blue`; `bigger`; ...). Multiple-instance form: the
    log-probability of a word is pooled over the clip's video tokens (log-mean-exp)."""
    h = video_states / video_states.pow(2).mean(-1, keepdim=True).add(1e-6).sqrt()
    logp = torch.log_softmax(h @ embedding.T / embedding.shape[1] ** 0.5, dim=-1)  # [B, N, V]
    valid = words >= 0
    if not valid.any():
        return video_states.sum() * 0.0
    picked = torch.gather(logp, 2, words.clamp(min=0).unsqueeze(1).expand(-1, logp.shape[1], -1))
    pooled = torch.logsumexp(picked, dim=1) - math.log(logp.shape[1])  # [B, W]
    return -(pooled[valid]).mean()


def lr_at(step: int, steps: int, base: float, warmup: int, decay_from: float = 0.0) -> float:
    """Linear warmup, constant until `decay_from` (a fraction of the steps), then cosine to 10%."""
    if step < warmup:
        return base * (step + 1) / warmup
    start = max(warmup, int(decay_from * steps))
    if step < start:
        return base
    p = (step - start) / max(1, steps - start)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def train_stage(model, ex: Examples, cfg: dict, seed: int, log=print, monitor=None) -> dict:
    """AdamW on the cross-entropy of the true option's label token at the last position."""
    rng = np.random.default_rng(seed)
    tc = model.config.text_config
    # `motion_features: change`: the motion probe predicts only the change features (see
    # `motion_targets`), not the thumbnail difference they are computed from.
    change_only = cfg.get("motion_features", "all") == "change"
    if ex.motion is None:
        motion_width = 3 * THUMB_SUBS**2
    elif change_only and ex.motion.shape[-1] != 3 * THUMB_SUBS**2 + CHANGE_FEATURES:
        raise ValueError("motion_features: change needs examples built with change_features=True "
                         f"(motion targets have {ex.motion.shape[-1]} columns)")
    else:
        motion_width = CHANGE_FEATURES if change_only else ex.motion.shape[-1]
    probes = (Probes(tc.hidden_size, ex.num_concepts, tc.num_hidden_layers, seed, motion_width)
              if cfg.get("probe", 0.0) > 0 else None)
    # `video_concept`: a clip-level probe reads the answer's content from the mean of the last
    # frame's video tokens after layer `video_concept_layer` (they have seen every frame): the
    # temporal perception, asked for where it must be done, before any question token.
    clip = None
    if cfg.get("video_concept", 0.0) > 0:
        g = torch.Generator().manual_seed(seed + 11)
        clip = torch.nn.Linear(tc.hidden_size, ex.num_concepts)
        with torch.no_grad():
            clip.weight.copy_(torch.randn(clip.weight.shape, generator=g) * tc.hidden_size**-0.5)
            clip.bias.zero_()
    # `train: vision` (the published models' alignment stage): only the vision tower, pooler and
    # projector learn; the language model is frozen. (Unused by SETTINGS; kept for experiments.)
    inner = model.model
    if cfg.get("train", "all") == "vision":
        trained = [inner.vision_tower, inner.vision_resampler, inner.multi_modal_projector]
    else:
        trained = [model]
    for p in model.parameters():
        p.requires_grad_(False)
    for m in trained:
        for p in m.parameters():
            p.requires_grad_(True)
    params = [p for m in trained for p in m.parameters()] + (list(probes.parameters()) if probes else [])
    params += list(clip.parameters()) if clip is not None else []
    opt = torch.optim.AdamW(params, lr=cfg["lr"], betas=(0.9, 0.98), weight_decay=cfg["weight_decay"])
    lookup = cfg.get("lookup", 0.0) > 0 and ex.frames is not None and ex.frames.shape[1] > 1
    attn_impl = keep_attention(model, cfg["lookup_layer"]) if lookup else None
    model.train()
    order = np.array([], dtype=np.int64)
    t0 = time.time()
    losses, answer_losses, lookup_losses = [], [], []
    for step in range(cfg["steps"]):
        if len(order) < cfg["batch"]:
            order = np.concatenate([order, rng.permutation(len(ex))])
        idx, order = np.sort(order[: cfg["batch"]]), order[cfg["batch"]:]
        ids, last, pix, target, lm_target, ends, answer, q_end, concept, motion, words = ex.batch(idx)
        if change_only and motion is not None:
            motion = motion[..., -CHANGE_FEATURES:]
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg["steps"], cfg["lr"], cfg["warmup"], cfg.get("decay_from", 0.0))
        hidden, states = forward(model, ids, pix, ex.prefix_len,
                                 states=probes is not None or cfg.get("align", 0.0) > 0
                                 or cfg.get("concept_words", 0.0) > 0 or clip is not None)
        logits = model.lm_head(hidden)
        loss = torch.nn.functional.cross_entropy(logits[torch.arange(len(last)), last], target)
        answer_losses.append(loss.item())
        if cfg.get("text_loss", 0.0) > 0:
            text = torch.nn.functional.cross_entropy(logits.flatten(0, 1), lm_target.flatten(), ignore_index=-100)
            loss = loss + cfg["text_loss"] * text
        if probes:
            loss = loss + cfg["probe"] * probes.loss(states, ends, answer, q_end, concept,
                                                     motion if cfg.get("motion_probe") else None,
                                                     ex.video_start, cfg.get("motion_probe", 0.0))
        if clip is not None and pix is not None and (concept >= 0).any():
            hw = ex.motion.shape[2]
            end = ex.video_start + ex.frames.shape[1] * hw
            v = states[cfg["video_concept_layer"] + 1][:, end - hw: end].mean(1)
            same = (torch.from_numpy(ex.concept_task)[None, :]
                    == torch.from_numpy(ex.task_of[idx])[:, None])
            logits_c = clip(v).masked_fill(~same, -1e9)
            loss = loss + cfg["video_concept"] * torch.nn.functional.cross_entropy(logits_c, concept,
                                                                                  ignore_index=-100)
        if cfg.get("concept_words", 0.0) > 0:
            # The answer's content at the end of the question, in the words the options use.
            q = states[cfg["concept_words_layer"]][torch.arange(len(last)), q_end].unsqueeze(1)
            loss = loss + cfg["concept_words"] * align_loss(q, model.get_input_embeddings().weight, words)
        if cfg.get("align", 0.0) > 0 and pix is not None:
            n = (ids == model.config.video_token_index).sum(1)[0].item()
            loss = loss + cfg["align"] * align_loss(states[cfg["align_layer"]][:, ex.video_start: ex.video_start + n],
                                                    model.get_input_embeddings().weight, words)
        if lookup:
            hw = ex.motion.shape[2]
            lk = lookup_loss(_ATTENTION.pop("weights"), ex.prefix_len, ex.video_start, ex.frames.shape[1], hw,
                             cfg["lookup_heads"])
            lookup_losses.append(lk.item())
            loss = loss + cfg["lookup"] * lk
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % 50 == 0 or step == 0:
            log(f"  step {step + 1}/{cfg['steps']}  loss {np.mean(losses[-50:]):.4f}  "
                f"answer {np.mean(answer_losses[-50:]):.4f}  "
                + (f"lookup {np.mean(lookup_losses[-50:]):.4f}  " if lookup_losses else "")
                + f"{time.time() - t0:.0f}s")
        if monitor is not None and (step + 1) % monitor[0] == 0:
            monitor[1](step + 1)
            model.train()
    model.eval()
    if lookup:
        release_attention(model, attn_impl)
    for p in model.parameters():
        p.requires_grad_(True)
    return {"seconds": round(time.time() - t0, 1), "steps": cfg["steps"],
            "final_loss": round(float(np.mean(losses[-50:])), 4) if losses else None,
            "final_answer_loss": round(float(np.mean(answer_losses[-50:])), 4) if losses else None}


def vision_stage(model, frames: np.ndarray, cfg: dict, seed: int, log=print) -> dict:
    """Pretraining of the vision side (tower, pooler, projector) on single frames: each video token
    must let a linear head redraw its cell as a 4x4 thumbnail (`thumbnails`). The stand-in for the
    published models' pretrained CLIP encoder: the decoder later finds colour, shape, position
    and size of what is in each cell in its video tokens. No decoder pass: seconds."""
    rng = np.random.default_rng(seed)
    inner = model.model
    hidden = model.config.text_config.hidden_size
    hw = tokens_per_frame_of(model)
    g = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(hidden, 3 * THUMB_SUBS**2 + hw)
    with torch.no_grad():
        head.weight.copy_(torch.randn(head.weight.shape, generator=g) * hidden**-0.5)
        head.bias.zero_()
    params = [p for m in (inner.vision_tower, inner.vision_resampler, inner.multi_modal_projector)
              for p in m.parameters()]
    opt = torch.optim.AdamW(params + list(head.parameters()), lr=cfg["lr"], betas=(0.9, 0.98),
                            weight_decay=cfg["weight_decay"])
    model.train()
    t0, losses = time.time(), []
    for step in range(cfg["steps"]):
        idx = np.sort(rng.choice(len(frames), cfg["batch"], replace=False))
        f = frames[idx]
        feats = _video_features(model, d.normalise(f[:, None])).reshape(len(idx), hw, hidden)
        target = torch.from_numpy(thumbnails(f, hw))
        pred = head(feats)
        loss = 100.0 * torch.nn.functional.mse_loss(pred[..., :-hw], target)
        # Where the cell is: each token must also name its place in the frame (CLIP patch
        # features keep their position; without it no token could tell "where", nor find the
        # same place in another frame).
        where = torch.arange(hw).expand(len(idx), hw).reshape(-1)
        loss = loss + torch.nn.functional.cross_entropy(pred[..., -hw:].reshape(-1, hw), where)
        # Video tokens at the scale of the word embeddings (RMS 1): a token far larger than what
        # the decoder layers add to it could not be changed by them, so no layer could compare
        # frames (a scale-free target let the RMS drift to about 50).
        rms = feats.pow(2).mean(-1).add(1e-6).sqrt()
        loss = loss + 10.0 * (rms - 1.0).pow(2).mean()
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step, cfg["steps"], cfg["lr"], cfg["warmup"])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % 100 == 0:
            log(f"  vision step {step + 1}/{cfg['steps']}  loss {np.mean(losses[-100:]):.4f}  {time.time() - t0:.0f}s")
    model.eval()
    return {"seconds": round(time.time() - t0, 1), "steps": cfg["steps"],
            "final_loss": round(float(np.mean(losses[-50:])), 4)}


def tokens_per_frame_of(model) -> int:
    v = model.config.vision_config
    grid = v.image_size // v.patch_size // model.config.spatial_pool_stride
    return grid * grid


@torch.no_grad()
def evaluate(model, ex: Examples, batch: int = 32) -> dict:
    """Accuracy per task: the prediction is the option whose label token has the highest logit at
    the last position (what `vidflow eval` scores)."""
    model.eval()
    correct = np.zeros(len(ex), dtype=bool)
    for s in range(0, len(ex), batch):
        idx = np.arange(s, min(s + batch, len(ex)))
        ids, last, pix, *_ = ex.batch(idx, with_answer=False)
        logits = last_logits(model, ids, last, pix, ex.prefix_len).numpy()
        for j, i in enumerate(idx):
            lab = ex.labels[i][ex.labels[i] >= 0]
            correct[i] = int(np.argmax(logits[j, lab])) == ex.answers[i]
    out = {}
    for ti, name in enumerate(ex.task_names):
        m = ex.task_of == ti
        out[name] = {"scored": int(m.sum()), "correct": int(correct[m].sum()),
                     "accuracy": round(float(correct[m].mean()), 4)}
    out["overall"] = {"scored": len(ex), "correct": int(correct.sum()),
                      "accuracy": round(float(correct.mean()), 4)}
    return out


def _package_digest(pkg_dir: str) -> str:
    """sha256 over every file of a package (relative path and bytes), in path order."""
    h = hashlib.sha256()
    for root, _, files in sorted(os.walk(pkg_dir)):
        for f in sorted(files):
            path = os.path.join(root, f)
            h.update(os.path.relpath(path, pkg_dir).encode())
            with open(path, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def toy_train(out: str, seed: int = 0, vidflow: str | None = None, work: str | None = None,
              settings: dict | None = None, export: bool = True, log=print) -> dict:
    """Trains the three stages; writes `out/toy-image`, `out/toy-video` and `out/toy-train.json`."""
    t_all = time.time()
    s = copy.deepcopy(settings or SETTINGS)
    s["seed"] = seed
    vidflow = vidflow or d.default_vidflow()
    set_determinism(seed, s["threads"])
    F = s["num_frames"]
    tmp = None
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="toy-train-")
        work = tmp.name
    os.makedirs(work, exist_ok=True)
    record = {"settings": s, "datasets": {}, "stages": {}, "accuracy": {}}

    def dataset(key: str, suite: str, dseed: int, per_task: int, frames: int):
        path = os.path.join(work, key)
        args = ["--seed", str(dseed), "--per-task", str(per_task), "--suite", suite, "--dump-frames", str(frames)]
        if not os.path.exists(os.path.join(path, "synth.json")):
            shutil.rmtree(path, ignore_errors=True)
            d.synth(vidflow, path, dseed, per_task, suite, frames)
        record["datasets"][key] = "vidflow synth --out DIR " + " ".join(args)
        return d.load(path)

    t0 = time.time()
    ds, held = s["data"], seed + s["data"]["heldout_seed_offset"]
    train_img = dataset("image_train", "image", seed * 10 + 1, ds["image_per_task"], 1)
    train_vid = dataset("video_train", "temporal", seed * 10 + 2, ds["video_per_task"], F)
    held_img = dataset("image_heldout", "image", held, ds["heldout_per_task"], 1)
    held_vid = dataset("video_heldout", "temporal", held, ds["heldout_per_task"], F)
    record["data_seconds"] = round(time.time() - t0, 1)
    log(f"data ready in {record['data_seconds']} s")

    # The tokenizer: byte-level BPE on every training prompt (with its answer) and statement.
    texts = []
    for tasks in (train_img, train_vid):
        for t in tasks.values():
            texts += corpus(t.questions, t.candidates, t.answers)
            texts += [statement(q, c[a]) for q, c, a in zip(t.questions, t.candidates, t.answers)]
    tok = train_tokenizer(sorted(set(texts)), s["arch"])
    enc = PromptEncoder(tok, tokens_per_frame(s["arch"]))
    # Concept ids (task, answer text) for the concept probe: which answer it is, read at the end
    # of the question.
    concepts = sorted({(n, c[a]) for tasks in (train_img, train_vid) for n, t in tasks.items()
                       for c, a in zip(t.candidates, t.answers)})
    concepts = {c: i for i, c in enumerate(concepts)}
    ex = {
        "text_train": Examples({**train_img, **train_vid}, enc, 0, text_only=True, concepts=concepts),
        "image_train": Examples(train_img, enc, 1, concepts=concepts),
        "video_train": Examples(train_vid, enc, F, concepts=concepts,
                                change_features=s["stages"]["video"].get("change_features", False)),
        "text_heldout": Examples({**held_img, **held_vid}, enc, 0, text_only=True, concepts=concepts),
        "image_heldout": Examples(held_img, enc, 1, concepts=concepts),
        "video_heldout": Examples(held_vid, enc, F, concepts=concepts),
    }
    record["tokens"] = {"vocab_size": tok.get_vocab_size(with_added_tokens=True),
                        "video_prompt_max": int(ex["video_train"].last.max() + 1),
                        "image_prompt_max": int(ex["image_train"].last.max() + 1),
                        "video_tokens_per_frame": tokens_per_frame(s["arch"])}

    model = build_model(tok, s["arch"], seed)
    count = lambda mods: sum(p.numel() for m in mods for p in m.parameters())  # noqa: E731
    inner = model.model
    record["parameters"] = {
        "total": count([model]),
        "vision_tower": count([inner.vision_tower]),
        "pooler_and_projector": count([inner.vision_resampler, inner.multi_modal_projector]),
        "language_model": count([inner.language_model, model.lm_head]),
    }
    log(f"parameters {record['parameters']}")

    def run(stage: str, data: str, stage_seed: int):
        log(f"stage {stage}")
        record["stages"][stage] = train_stage(model, ex[f"{data}_train"], s["stages"][stage], stage_seed, log)

    def accuracy(keys):
        return {k: evaluate(model, ex[k]) for k in keys}

    run("language", "text", seed * 10 + 5)
    record["accuracy"]["after-language"] = accuracy(["text_heldout"])
    log("stage vision")
    frames = np.concatenate([ex["video_train"].frames.reshape(-1, *ex["video_train"].frames.shape[-3:]),
                             ex["image_train"].frames.reshape(-1, *ex["image_train"].frames.shape[-3:])])
    record["stages"]["vision"] = vision_stage(model, frames, s["stages"]["vision"], seed * 10 + 6, log)
    del frames
    run("image", "image", seed * 10 + 3)
    record["accuracy"]["toy-image"] = accuracy(["image_heldout", "video_heldout"])
    log(f"toy-image {_brief(record['accuracy']['toy-image'])}")
    hf_image = os.path.join(work, "hf-toy-image")
    save_hf(model, tok, hf_image, F)
    run("video", "video", seed * 10 + 4)
    record["accuracy"]["toy-video"] = accuracy(["image_heldout", "video_heldout"])
    log(f"toy-video {_brief(record['accuracy']['toy-video'])}")
    hf_video = os.path.join(work, "hf-toy-video")
    save_hf(model, tok, hf_video, F)

    record["train_seconds"] = round(sum(st["seconds"] for st in record["stages"].values()), 1)
    record["environment"] = {"torch": torch.__version__, "python": platform.python_version(),
                             "machine": platform.machine()}
    if export:
        from ..export import export_package

        os.makedirs(out, exist_ok=True)
        record["packages"] = {}
        for name, hf in (("toy-image", hf_image), ("toy-video", hf_video)):
            pkg = os.path.join(out, name)
            shutil.rmtree(pkg, ignore_errors=True)
            export_package(hf, pkg, dtype="float32", frames=F, name=name)
            record["packages"][name] = {"dir": name, "dtype": "float32", "num_frames": F,
                                        "sha256": _package_digest(pkg)}
    record["total_seconds"] = round(time.time() - t_all, 1)
    if export:
        with open(os.path.join(out, "toy-train.json"), "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
    if tmp is not None:
        tmp.cleanup()
    return record


def _brief(acc: dict) -> str:
    return " ".join(f"{t}={v['accuracy']:.3f}" for split in acc.values() for t, v in split.items())
