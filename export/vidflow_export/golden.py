"""`golden`: PyTorch reference outputs of a package's model for a few masks (docs/package.md).

The reference is the HF model itself (eager attention): its embedding and video features give the
spliced input, each HF decoder layer's own forward runs under a per-layer 4D additive mask with the
model's own rotary tables, and the final norm + LM head give the logits. Past K/V (post-rotary) are
read out of a transformers DynamicCache filled by the HF attention.

Both families (the manifest's `family`): `llama` (LLaVA-NeXT-Video and LLaVA-OneVision, told apart by
the HF directory's architecture; position_ids [1,S] = token index) and `qwen2_5_vl` (position_ids
[3,1,S] by qwen2_5_vl.mrope_positions, fed to the model's own M-RoPE rotary module; pixel_values
[F*tp,3,H,W] through qwen2_5_vl.video_features).

A per-frame prompt (VideoLLaMA3: `Time t s:` before each frame, `,` between frames; prompt.py) has one
placeholder per frame: each frame's rows are spliced at its own placeholder, the group `video` runs
from the first token of the first frame's text to the last frame's last row (the text between frames
included, in group `video.sep` and in no `frame[i]`), and golden.yaml then says `frame_starts` (the
spliced position of each frame's first row; `video_start` is the first position of the group `video`).
The VideoLLaMA3 model (family `llama`) is told apart by the HF directory's architecture. So is
transformers' native InternVL (`InternVLForConditionalGeneration`, family `llama`; its per-frame text is
`Frame{i}: <img>` before and `</img>` after each frame, `\n` between frames), whose video features
are its own get_image_features on the frames as single-tile images (internvl_hf.video_features).

A package whose vision graph appends embeddings after the last frame (manifest
`video.trailing_tokens`, LLaVA-OneVision's newline) has them spliced right after the frames: they
belong to the group `video` and to no `frame[i]`; golden.yaml then says `trailing_tokens`.

The paper's converted checkpoints (config.json architectures ["PllavaForConditionalGeneration"] /
["InternVLChatModel"]; family `llama`) are referenced by their converter's reference-structure model
(pllava.load / internvl.load) through a `Converted` adapter: the language model's own embedding,
decoder layers, final norm and LM head, the converter's reference-structure video features, and the
rotary module the package's rope graph is traced from (InternVL: internvl.ShortRope).
"""

import json
import os
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Callable

import numpy as np
import torch
from safetensors.numpy import save_file
from tokenizers import Tokenizer

from . import contract as c
from .hf import INTERNVL_HF, LLAVA_ONEVISION, VIDEOLLAMA3, architecture, load_video_llm
from .hf import text_model as hf_text_model
from .manifest import MROPE_FAMILY, VIDEO_TRAILING, dump_yaml
from .manifest import read as read_manifest
from .prompt import per_frame, render

QUESTION = "What does the red ball do after it hits the wall?"
OPTIONS = ["It bounces back", "It stops", "It rolls to the left"]


@dataclass
class Sequence:
    """The spliced sequence: token ids, and token-index groups (design.md §2). The video is
    num_frames * tokens_per_frame frame tokens, then `trailing_tokens` embeddings of no frame.

    A per-frame prompt (prompt.per_frame: text between the frames, VideoLLaMA3's `Time 1.0s:` and
    `,`) has one placeholder per frame: `frame_starts` holds the spliced position of each frame's
    first row, and the video region [video_start, video_end) runs from the first token of the first
    frame's prefix to the last row of the last frame (its suffix included); the text tokens in it
    belong to `video` (and `video.sep`) and to no `frame[i]`. Without them (None) the frames follow
    each other from `video_start`."""

    input_ids: list[int]
    video_start: int
    num_frames: int
    tokens_per_frame: int
    seq_len: int
    trailing_tokens: int = 0
    frame_starts: list[int] | None = None
    video_end: int | None = None

    @property
    def num_video_tokens(self) -> int:
        return self.num_frames * self.tokens_per_frame + self.trailing_tokens

    def frame(self, i: int) -> range:
        start = self.video_start + i * self.tokens_per_frame if self.frame_starts is None else self.frame_starts[i]
        return range(start, start + self.tokens_per_frame)

    def video_rows(self) -> list[int]:
        """Every spliced position of a vision embedding (the frames' rows and the trailing ones)."""
        rows = [k for i in range(self.num_frames) for k in self.frame(i)]
        end = self.frame(self.num_frames - 1).stop
        return rows + list(range(end, end + self.trailing_tokens))

    def group(self, name: str) -> list[int]:
        """The groups golden.yaml names: `video`, `video.sep`, `last`, `frame[i]`."""
        if name == "video":
            if self.video_end is not None:
                return list(range(self.video_start, self.video_end))
            return list(range(self.video_start, self.video_start + self.num_video_tokens))
        if name == "video.sep":
            rows = set(self.video_rows())
            return [k for k in self.group("video") if k not in rows]
        if name == "last":
            return [self.seq_len - 1]
        if name.startswith("frame[") and name.endswith("]"):
            return list(self.frame(int(name[6:-1])))
        raise ValueError(f"unknown token group {name!r}")


def spliced_layout(ids: list[int], placeholders: list[int], rows_per_placeholder: list[int]) -> list[int]:
    """Spliced start position of each token of `ids` (and, last, the spliced length): a placeholder
    at token index placeholders[j] becomes rows_per_placeholder[j] rows, every other token one."""
    rows = dict(zip(placeholders, rows_per_placeholder))
    starts, pos = [], 0
    for k in range(len(ids)):
        starts.append(pos)
        pos += rows.get(k, 1)
    return starts + [pos]


def sequence_from_tokens(manifest: dict, ids: list[int], offsets: list[tuple[int, int]], video_span: tuple[int, int],
                         placeholder_spans: list[tuple[int, int]]) -> Sequence:
    """The Sequence of a tokenized prompt (bos, when the manifest names one, already prepended, with
    offset (0, 0)). `video_span` and `placeholder_spans` are prompt.Rendered's character spans; a
    per-frame prompt has one placeholder token per frame, each exactly its placeholder's text, and
    the video region is every token that overlaps `video_span`."""
    special = manifest["special_tokens"]
    v = manifest["video"]
    video_id = special["video_token_id"]
    F, hw = v["num_frames"], v["grid_h"] * v["grid_w"]
    trailing = v.get(VIDEO_TRAILING, 0)
    if not per_frame(manifest["prompt"]):
        if ids.count(video_id) != 1:
            raise ValueError(f"the prompt holds {ids.count(video_id)} video placeholder tokens, expected 1")
        return Sequence(ids, ids.index(video_id), F, hw, len(ids) - 1 + F * hw + trailing, trailing)
    places = [k for k, t in enumerate(ids) if t == video_id]
    if len(places) != F:
        raise ValueError(f"the per-frame prompt holds {len(places)} video placeholder tokens, expected {F}")
    if [tuple(offsets[k]) for k in places] != [tuple(s) for s in placeholder_spans]:
        raise ValueError("the video placeholder tokens are not exactly the rendered placeholders")
    starts = spliced_layout(ids, places, [hw] * (F - 1) + [hw + trailing])
    a, b = video_span
    region = [k for k, (s, e) in enumerate(offsets) if s < b and e > a]
    if region != list(range(region[0], region[-1] + 1)):
        raise ValueError(f"the video region's tokens are not one run: {region}")
    return Sequence(ids, starts[region[0]], F, hw, starts[-1], trailing,
                    frame_starts=[starts[k] for k in places], video_end=starts[region[-1] + 1])


def build_sequence(manifest: dict, tok: Tokenizer, question: str = QUESTION, options=OPTIONS) -> Sequence:
    """Renders the manifest's prompt (a per-frame one with frame i at i seconds), tokenizes it (bos
    prepended) and places the video tokens (the frames' tokens, then the manifest's
    `video.trailing_tokens`)."""
    r = render(manifest["prompt"], question, list(options), num_frames=manifest["video"]["num_frames"])
    enc = tok.encode(r.text, add_special_tokens=False)
    ids, offsets = list(enc.ids), list(enc.offsets)
    bos = manifest["special_tokens"]["bos_token_id"]
    if bos is not None:
        ids, offsets = [bos] + ids, [(0, 0)] + offsets
    return sequence_from_tokens(manifest, ids, offsets, r.video, r.placeholders)


# ---- masks -----------------------------------------------------------------------------------------
# A block rule is golden.yaml's form: {source, target, layers: [first, last] (0-based, inclusive),
# batch (optional: the batch element it applies to; all when absent)}. Source/target name a group
# of Sequence.group, or both are `cross-frame` (frame[j] -> frame[i] for all j < i).

KNOCKOUT_BLOCKS = [
    {"source": "video", "target": "last", "layers": [1, 2]},
    {"source": "cross-frame", "target": "cross-frame", "layers": [1, 2]},
]
# batch2: element 0 is plain causal, element 1 has these blocks.
BATCH2_BLOCKS = [
    {"source": "cross-frame", "target": "cross-frame", "layers": [0, 1], "batch": 1},
    {"source": "video", "target": "last", "layers": [0, 3], "batch": 1},
    {"source": "last", "target": "last", "layers": [2, 3], "batch": 1},
]


def causal_blocked(num_layers: int, batch: int, seq_len: int) -> np.ndarray:
    """[L,B,S,S] u8: 1 = blocked; future keys only."""
    future = np.triu(np.ones((seq_len, seq_len), dtype=np.uint8), k=1)
    return np.ascontiguousarray(np.broadcast_to(future, (num_layers, batch, seq_len, seq_len)))


def case_blocked(num_layers: int, batch: int, seq: Sequence, blocks) -> np.ndarray:
    """[L,B,S,S] u8: causality plus the block rules."""
    blocked = causal_blocked(num_layers, batch, seq.seq_len)
    for rule in blocks:
        first, last = rule["layers"]
        layers = range(first, min(last, num_layers - 1) + 1)
        elements = [rule["batch"]] if "batch" in rule else range(batch)
        if rule["source"] == "cross-frame":
            pairs = [(seq.frame(j), seq.frame(i)) for i in range(seq.num_frames) for j in range(i)]
        else:
            pairs = [(seq.group(rule["source"]), seq.group(rule["target"]))]
        for sources, targets in pairs:
            q = np.asarray(list(targets))[:, None]
            k = np.asarray(list(sources))[None, :]
            for layer in layers:
                for b in elements:
                    blocked[layer, b][q, k] = 1
    return blocked


def additive(blocked: np.ndarray) -> torch.Tensor:
    """[...,Q,K] u8 -> float32 additive mask (finfo(float32).min where blocked)."""
    return torch.from_numpy(np.where(blocked.astype(bool), c.MASK_BLOCKED, 0.0).astype(np.float32))


# ---- inputs ----------------------------------------------------------------------------------------


def frames_per_group(manifest: dict) -> int:
    """Input frames per `video.num_frames` unit: mrope.temporal_patch_size, 1 without an mrope section."""
    return manifest["mrope"]["temporal_patch_size"] if "mrope" in manifest else 1


def synthetic_frames(manifest: dict, seed: int = 0) -> np.ndarray:
    """The vision graph's F input frames (num_frames x frames_per_group): a bright square moving
    left to right over a seeded noisy gradient, preprocessed the manifest's way (frames are made at
    the target size, so resize and crop are the identity)."""
    v = manifest["video"]
    F, H, W = v["num_frames"] * frames_per_group(manifest), v["frame_height"], v["frame_width"]
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:H, 0:W]
    frames = np.empty((F, H, W, 3), dtype=np.float64)
    for f in range(F):
        base = np.stack([xx / W * 200, yy / H * 200, (xx + yy) / (H + W) * 120], axis=-1)
        base += rng.normal(0, 20, base.shape)
        side = max(2, H // 4)
        x0 = int(f * (W - side) / max(1, F - 1))
        y0 = H // 2 - side // 2
        base[y0:y0 + side, x0:x0 + side] = [250, 40, 40]
        frames[f] = base
    pixels = np.clip(np.round(frames), 0, 255) * v["rescale_factor"]
    pixels = (pixels - np.asarray(v["image_mean"])) / np.asarray(v["image_std"])
    return pixels.transpose(0, 3, 1, 2).astype(np.float32)


# ---- the PyTorch reference -------------------------------------------------------------------------

PLLAVA_ARCH = "PllavaForConditionalGeneration"
INTERNVL_ARCH = "InternVLChatModel"


@dataclass
class Converted:
    """A converter's reference-structure model as the golden computation sees it: `text` has
    `layers`, `norm`, `embed_tokens`, `rotary_emb` and `config`; `head` is the LM head;
    `video_features(pixel_values [F,3,H,W]) -> [N,D]`."""

    reference: object
    text: object
    head: torch.nn.Module
    video_features: Callable

    def get_output_embeddings(self):
        return self.head


def converted(reference, rotary_emb=None) -> Converted:
    """The adapter of a pllava.load / internvl.load model; `rotary_emb` replaces the language
    model's own rotary module (InternVL: the package's short-factor `ShortRope`)."""
    lm = reference.language_model
    inner = lm.model
    text = SimpleNamespace(layers=inner.layers, norm=inner.norm, embed_tokens=inner.embed_tokens,
                           config=inner.config, rotary_emb=rotary_emb or inner.rotary_emb)
    if hasattr(reference, "extract_feature"):  # InternVL: frames folded into one video, frame-major
        feats = reference.extract_feature
    else:  # PLLaVA: CLIP features, projector, adaptive 3D pool
        feats = reference.video_features
    return Converted(reference, text, lm.get_output_embeddings(), lambda pixels: feats(pixels)[0])


def text_model(model):
    """The decoder stack of an HF model (hf.text_model) or of a `Converted` adapter."""
    return model.text if isinstance(model, Converted) else hf_text_model(model)


def converted_architecture(hf_dir: str) -> str | None:
    """PLLAVA_ARCH / INTERNVL_ARCH when the directory is such a reference-layout checkpoint, else None."""
    try:
        with open(os.path.join(hf_dir, "config.json")) as f:
            arch = (json.load(f).get("architectures") or [None])[0]
    except (OSError, ValueError):
        return None
    return arch if arch in (PLLAVA_ARCH, INTERNVL_ARCH) else None


def load_model(hf_dir: str, manifest: dict):
    """The HF model of the package's family (float32, eager attention); within `llama`, the HF
    directory's architecture picks LLaVA-OneVision, or a converter's reference-structure model
    (PLLaVA, InternVL: a `Converted` adapter)."""
    arch = converted_architecture(hf_dir)
    if arch == PLLAVA_ARCH:
        from . import pllava

        v = manifest["video"]  # the package's pooled frames and grid are its pooling_shape
        return converted(pllava.load(hf_dir, (v["num_frames"], v["grid_h"], v["grid_w"])))
    if arch == INTERNVL_ARCH:
        from . import internvl

        model = internvl.load(hf_dir, manifest["video"]["num_frames"])
        return converted(model, internvl.ShortRope(model.text_config))
    if manifest["family"] == MROPE_FAMILY:
        from .qwen2_5_vl import load

        return load(hf_dir)
    try:
        arch = architecture(hf_dir)
    except ValueError:  # not one `export` takes: loaded as LLaVA-NeXT-Video, as before
        arch = None
    if arch == LLAVA_ONEVISION:
        from .llava_onevision import load

        return load(hf_dir)
    if arch == VIDEOLLAMA3:
        from .videollama3 import load

        return load(hf_dir)
    if arch == INTERNVL_HF:
        from .internvl_hf import load

        return load(hf_dir)
    return load_video_llm(hf_dir)


def position_ids(manifest: dict, seq: Sequence) -> torch.Tensor:
    """[1,S] token indices (llama) or [3,1,S] M-RoPE positions (qwen2_5_vl), int64."""
    if manifest["family"] == MROPE_FAMILY:
        from .qwen2_5_vl import manifest_positions

        return torch.from_numpy(manifest_positions(manifest, seq.seq_len, seq.video_start))[:, None]
    return torch.arange(seq.seq_len)[None]


@torch.no_grad()
def spliced_embeddings(model, seq: Sequence, pixel_values: torch.Tensor):
    """(video_embeds [N,D], embeds [1,S,D]) from the HF model's own embedding and video features
    (N = seq.num_video_tokens: LLaVA-OneVision's get_video_features ends with the newline)."""
    text = text_model(model)
    if isinstance(model, Converted):
        video = model.video_features(pixel_values)
    elif getattr(model.config, "model_type", None) == "qwen2_5_vl":
        from .qwen2_5_vl import video_features

        video = video_features(model, pixel_values, seq.num_frames)
    elif getattr(model.config, "model_type", None) == "video_llama_3":
        from .videollama3 import video_features

        video = video_features(model, pixel_values)
    elif getattr(model.config, "model_type", None) == "internvl":
        from .internvl_hf import video_features

        video = video_features(model, pixel_values)
    else:
        video = model.model.get_video_features(pixel_values[None], return_dict=True).pooler_output[0]
    ids = torch.tensor([seq.input_ids])
    emb = text.embed_tokens(ids)
    if video.shape[0] != seq.num_video_tokens:
        raise ValueError(f"the model gave {video.shape[0]} video embeddings, the manifest's video section "
                         f"{seq.num_video_tokens}")
    if seq.frame_starts is None:
        v = seq.video_start
        embeds = torch.cat((emb[:, :v], video[None].to(emb.dtype), emb[:, v + 1:]), dim=1)
    else:  # one placeholder per frame: frame i's rows (the last frame's with the trailing ones) at placeholder i
        n, F = seq.tokens_per_frame, seq.num_frames
        parts, prev = [], 0
        for i in range(F):
            k = seq.frame_starts[i] - i * (n - 1)  # placeholder i's token index
            rows = video[i * n:(i + 1) * n] if i < F - 1 else video[i * n:]
            parts += [emb[:, prev:k], rows[None].to(emb.dtype)]
            prev = k + 1
        embeds = torch.cat(parts + [emb[:, prev:]], dim=1)
    assert embeds.shape[1] == seq.seq_len
    return video, embeds


@torch.no_grad()
def run_layers(model, hidden, cos, sin, blocked, past=None):
    """Runs every HF decoder layer on `hidden` [B,Q,D] under `blocked` [L,B,Q,K] (K = P+Q).

    `past` = (keys, values) [L,B,Hkv,P,Dh] seeds the cache (extend form). Returns hidden states
    [L+1,B,Q,D] and the cache's keys and values [L,B,Hkv,K,Dh] (post-rotary, past included).
    """
    from transformers import DynamicCache

    text = text_model(model)
    cache = DynamicCache(config=text.config)
    if past is not None:
        for layer_idx in range(len(text.layers)):
            cache.update(past[0][layer_idx], past[1][layer_idx], layer_idx)
    states = [hidden]
    for layer_idx, layer in enumerate(text.layers):
        mask = additive(blocked[layer_idx])[:, None]  # [B,1,Q,K]
        hidden = layer(
            hidden,
            attention_mask=mask,
            past_key_values=cache,
            use_cache=True,
            position_embeddings=(cos, sin),
        )
        states.append(hidden)
    keys = torch.stack([cache.layers[i].keys for i in range(len(text.layers))])
    values = torch.stack([cache.layers[i].values for i in range(len(text.layers))])
    return torch.stack(states), keys, values


@torch.no_grad()
def lenses(model, hidden: torch.Tensor):
    """hidden [..., D] -> (norm + LM head, LM head, embedding-matrix) logits."""
    text = text_model(model)
    head = model.get_output_embeddings()
    return head(text.norm(hidden)), head(hidden), hidden @ text.embed_tokens.weight.T


def generate(hf_dir: str, package_dir: str, prefix_len: int | None = None) -> dict:
    """Writes golden/golden.safetensors and golden/golden.yaml into the package; returns the yaml dict."""
    manifest = read_manifest(os.path.join(package_dir, c.MANIFEST_FILE))
    tok = Tokenizer.from_file(os.path.join(package_dir, manifest["tokenizer"]))
    model = load_model(hf_dir, manifest)
    text = text_model(model)
    L = manifest["num_layers"]
    seq = build_sequence(manifest, tok)
    S = seq.seq_len

    pixel_values = torch.from_numpy(synthetic_frames(manifest))
    video, embeds = spliced_embeddings(model, seq, pixel_values)
    positions = position_ids(manifest, seq)
    with torch.no_grad():
        cos, sin = text.rotary_emb(embeds, positions)

    tensors = {
        "input_ids": np.asarray([seq.input_ids], dtype=np.int64),
        "pixel_values": pixel_values.numpy(),
        "video_embeds": video.numpy(),
        "embeds": embeds.numpy(),
        "position_ids": positions.numpy().astype(np.int64),
        "cos": cos.numpy(),
        "sin": sin.numpy(),
    }

    def case(name: str, blocked: np.ndarray):  # blocked [L,B,S,S]
        B = blocked.shape[1]
        states, keys, values = run_layers(model, embeds.expand(B, -1, -1), cos.expand(B, -1, -1),
                                          sin.expand(B, -1, -1), blocked)
        logits = lenses(model, states[-1][:, -1])[0]
        tensors[f"{name}.blocked"] = blocked
        tensors[f"{name}.hidden"] = states.numpy()
        tensors[f"{name}.logits_last"] = logits.numpy()
        return states, keys, values

    # prefill: causal only, plus the three lenses at the last position for every layer's output.
    states, _, _ = case("prefill", causal_blocked(L, 1, S))
    for lens_name, value in zip(("lens_norm", "lens_lm", "lens_embed"), lenses(model, states[1:, 0, -1])):
        tensors[f"prefill.{lens_name}"] = value.numpy()

    knock = case_blocked(L, 1, seq, KNOCKOUT_BLOCKS)
    k_states, k_keys, k_values = case("knockout", knock)
    case("batch2", case_blocked(L, 2, seq, BATCH2_BLOCKS))

    # extend: rows P..S-1 with past K/V of rows 0..P-1 from the knockout prefill.
    mid_frame_2 = seq.frame(min(2, seq.num_frames - 1)).start + seq.tokens_per_frame // 2
    P = prefix_len if prefix_len is not None else mid_frame_2
    if not 0 < P < S:
        raise ValueError(f"prefix_len {P} outside 1..{S - 1}")
    past_k, past_v = k_keys[:, :, :, :P].contiguous(), k_values[:, :, :, :P].contiguous()
    ext_blocked = np.ascontiguousarray(knock[:, :, P:, :])
    # Independent route through the HF cache: must reproduce the prefill rows.
    ext_states, _, _ = run_layers(model, k_states[0][:, P:], cos[:, P:], sin[:, P:], ext_blocked, (past_k, past_v))
    err = (ext_states - k_states[:, :, P:]).abs().max().item()
    if err > 1e-4:
        raise AssertionError(f"HF extend with past K/V differs from the prefill rows by {err}")
    tensors["extend.blocked"] = ext_blocked
    tensors["extend.hidden"] = k_states[:, :, P:].contiguous().numpy()
    tensors["extend.logits_last"] = tensors["knockout.logits_last"].copy()
    tensors["extend.past_key"] = past_k.numpy()
    tensors["extend.past_value"] = past_v.numpy()

    desc = {
        "num_layers": L,
        "seq_len": S,
        "video_start": seq.video_start,
        "tokens_per_frame": seq.tokens_per_frame,
        "num_frames": seq.num_frames,
        **({VIDEO_TRAILING: seq.trailing_tokens} if seq.trailing_tokens else {}),
        **({"frame_starts": list(seq.frame_starts)} if seq.frame_starts is not None else {}),
        "prefix_len": P,
        "cases": [
            {"name": "prefill", "batch": 1, "description": "plain causal mask in every layer; "
             "prefill.lens_* hold the three lenses at the last position for every layer's output",
             "blocks": []},
            {"name": "knockout", "batch": 1,
             "description": "video -> last and cross-frame blocked in layers 1..2 (0-based, inclusive)",
             "blocks": KNOCKOUT_BLOCKS},
            {"name": "batch2", "batch": 2,
             "description": "batch element 0: plain causal; batch element 1: the blocks listed",
             "blocks": BATCH2_BLOCKS},
            {"name": "extend", "batch": 1,
             "description": f"the knockout masks, rows {P}..{S - 1} computed with past K/V of rows 0..{P - 1} "
             "(extend.past_key / extend.past_value, post-rotary, from the knockout prefill)",
             "blocks": KNOCKOUT_BLOCKS},
        ],
    }
    out = os.path.join(package_dir, c.GOLDEN_DIR)
    os.makedirs(out, exist_ok=True)
    tensors = {k: np.ascontiguousarray(v) for k, v in tensors.items()}
    save_file(tensors, os.path.join(out, c.GOLDEN_TENSORS_FILE))
    with open(os.path.join(out, c.GOLDEN_YAML_FILE), "w") as f:
        f.write(dump_yaml(desc))
    return desc
