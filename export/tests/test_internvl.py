"""The InternVL family (vidflow_export.internvl): a tiny random checkpoint in the reference layout
(Map the Flow's Mini-InternVL-4B-Video-FT code), converted to a package and run with ONNX Runtime
against the reference-structure PyTorch model loaded from the same checkpoint by its reference keys."""

import json
import math

import numpy as np
import pytest
import torch
from conftest import assert_close, hf_layer_forward, max_err, run, run_layer
from safetensors.torch import load_file
from tokenizers import Tokenizer

from vidflow_export import contract as c
from vidflow_export import internvl as iv
from vidflow_export import manifest as mf
from vidflow_export.prompt import render

TOL = 1e-4
# A wrong feature path must move the features by far more than the graph tolerance.
WRONG = 1e-2
QUESTION = "What does the man do after the woman opens the door?"
OPTIONS = ["The man picks up the box", "It moves left", "Nothing happens"]
# 8x8 patches of the tiny 64x64 frames -> 4x4 tokens per frame after the pixel shuffle; 4 frames.
FRAMES, TOKENS = 4, 16


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("internvl_ckpt")
    iv.write_random_checkpoint(str(out), seed=0)
    return str(out)


@pytest.fixture(scope="module")
def model(ckpt):
    return iv.load(ckpt)


@pytest.fixture(scope="module")
def pkg(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("internvl_pkg")
    iv.export_package(ckpt, str(out), name="tiny-internvl")
    return out


@pytest.fixture(scope="module")
def manifest(pkg):
    return mf.read(str(pkg / c.MANIFEST_FILE))


def frames(seed: int = 0, n: int = FRAMES) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def reference_keys(num_vision_layers: int, num_llm_layers: int, qkv_bias=True, qk_norm=False, layer_norm=True):
    """The state-dict keys of the reference InternVLChatModel, written out from its module code
    (modeling_intern_vit.py, modeling_internvl_chat.py, models/phi3/modeling_phi3.py)."""
    keys = {"vision_model.embeddings.class_embedding", "vision_model.embeddings.position_embedding",
            "vision_model.embeddings.patch_embedding.weight", "vision_model.embeddings.patch_embedding.bias"}
    for i in range(num_vision_layers):
        p = f"vision_model.encoder.layers.{i}."
        keys |= {p + "ls1", p + "ls2", p + "attn.qkv.weight", p + "attn.proj.weight", p + "attn.proj.bias",
                 p + "mlp.fc1.weight", p + "mlp.fc1.bias", p + "mlp.fc2.weight", p + "mlp.fc2.bias"}
        keys |= {p + "attn.qkv.bias"} if qkv_bias else set()
        keys |= {p + "attn.q_norm.weight", p + "attn.k_norm.weight"} if qk_norm else set()
        for n in ("norm1", "norm2"):
            keys |= {p + n + ".weight"} | ({p + n + ".bias"} if layer_norm else set())
    keys |= {f"mlp1.{i}.{w}" for i in (0, 1, 3) for w in ("weight", "bias")}
    keys |= {"language_model.model.embed_tokens.weight", "language_model.model.norm.weight",
             "language_model.lm_head.weight"}
    for i in range(num_llm_layers):
        p = f"language_model.model.layers.{i}."
        keys |= {p + k for k in ("self_attn.qkv_proj.weight", "self_attn.o_proj.weight", "mlp.gate_up_proj.weight",
                                 "mlp.down_proj.weight", "input_layernorm.weight", "post_attention_layernorm.weight")}
    return keys


def test_checkpoint_is_in_the_reference_layout(ckpt, model):
    with open(f"{ckpt}/config.json") as f:
        cfg = json.load(f)
    assert cfg["architectures"] == ["InternVLChatModel"] and cfg["model_type"] == "internvl_chat"
    assert cfg["llm_config"]["architectures"] == ["Phi3ForCausalLM"]
    assert (cfg["ps_version"], cfg["select_layer"], cfg["downsample_ratio"], cfg["num_frames"]) == ("v2", -1, 0.5, 4)
    tok = Tokenizer.from_file(f"{ckpt}/tokenizer.json")
    assert cfg["img_context_token_id"] == tok.token_to_id("<IMG_CONTEXT>") == model.img_context_token_id

    sd = load_file(f"{ckpt}/model.safetensors")
    assert set(sd) == reference_keys(2, 4)
    assert sd["vision_model.embeddings.position_embedding"].shape == (1, 65, 32)
    assert sd["vision_model.encoder.layers.0.attn.qkv.weight"].shape == (96, 32)
    assert sd["mlp1.0.weight"].shape == (128,) and sd["mlp1.1.weight"].shape == (64, 128)
    assert sd["language_model.model.layers.0.self_attn.qkv_proj.weight"].shape == (3 * 64, 64)
    assert sd["language_model.model.layers.0.mlp.gate_up_proj.weight"].shape == (2 * 128, 64)
    # transformers 5.23's Phi3ForCausalLM takes the reference-layout LM keys strictly, without a remap.
    from transformers import Phi3ForCausalLM

    lm = Phi3ForCausalLM(iv.text_config(iv.read_config(ckpt)))
    prefix = "language_model."
    lm.load_state_dict({k[len(prefix):]: v for k, v in sd.items() if k.startswith(prefix)}, strict=True)
    # A fresh reference-structure model takes the whole file strictly.
    fresh = iv.InternVLChatModel(iv.read_config(ckpt))
    fresh.load_state_dict(sd, strict=True)


# ---- the feature path --------------------------------------------------------------------------------


def test_pixel_shuffle_on_a_hand_made_tensor():
    """v2: token (i, j) of the 2x-downsampled grid holds the channels of patches (2i,2j), (2i,2j+1),
    (2i+1,2j), (2i+1,2j+1) in that order; v1 is the same with the grid transposed."""
    h, w, ch = 4, 6, 2
    x = torch.zeros(1, h, w, ch)
    for r in range(h):
        for col in range(w):
            x[0, r, col] = torch.tensor([100 * r + col, -(100 * r + col)])
    want = torch.zeros(1, h // 2, w // 2, 4 * ch)
    for i in range(h // 2):
        for j in range(w // 2):
            want[0, i, j] = torch.cat([x[0, 2 * i, 2 * j], x[0, 2 * i, 2 * j + 1],
                                       x[0, 2 * i + 1, 2 * j], x[0, 2 * i + 1, 2 * j + 1]])
    assert torch.equal(iv.pixel_shuffle(x, 0.5, "v2"), want)
    assert torch.equal(iv.pixel_shuffle(x, 0.5, "v1"), want.transpose(1, 2))


VARIANTS = {
    "layer_norm": {},  # the tiny checkpoint (InternViT-300M's kind: LayerNorm, qkv bias, no qk-norm)
    "rms_qk_norm": {"norm_type": "rms_norm", "qk_normalization": True, "qkv_bias": False},  # InternViT-6B's
}


def variant_model(ckpt, variant: str):
    if not VARIANTS[variant]:
        return iv.load(ckpt)
    cfg = iv.read_config(ckpt)
    cfg["vision_config"].update(VARIANTS[variant])
    m = iv.InternVLChatModel(cfg).eval()
    iv.randomize(m, seed=5)
    return m


def hf_internvl(model):
    """transformers' native InternVLModel with our model's vision weights remapped to its names."""
    from transformers import InternVLConfig, InternVLModel

    v = model.vision_config
    cfg = InternVLConfig(
        vision_config=dict(hidden_size=v.hidden_size, num_hidden_layers=v.num_hidden_layers,
                           num_attention_heads=v.num_attention_heads, intermediate_size=v.intermediate_size,
                           attention_bias=v.qkv_bias, use_qk_norm=v.qk_normalization, norm_type=v.norm_type,
                           layer_norm_eps=v.layer_norm_eps, image_size=v.image_size, patch_size=v.patch_size,
                           hidden_act=v.hidden_act, use_mean_pooling=True),
        text_config=dict(model_type="qwen2", hidden_size=model.text_config.hidden_size, num_hidden_layers=1,
                         num_attention_heads=4, num_key_value_heads=4, intermediate_size=32, vocab_size=16),
        downsample_ratio=model.downsample_ratio, vision_feature_layer=-1, projector_hidden_act="gelu")
    hf = InternVLModel(cfg).eval()
    names = {"embeddings.class_embedding": "embeddings.cls_token",
             "embeddings.position_embedding": "embeddings.position_embeddings",
             "embeddings.patch_embedding.": "embeddings.patch_embeddings.projection.",
             "encoder.layers.": "encoder.layer.", ".attn.proj.": ".attention.projection_layer.",
             ".attn.q_norm.": ".attention.q_norm.", ".attn.k_norm.": ".attention.k_norm.",
             ".norm1.": ".layernorm_before.", ".norm2.": ".layernorm_after.", ".ls1": ".lambda_1", ".ls2": ".lambda_2"}
    sd = {}
    for k, t in model.vision_model.state_dict().items():
        if ".attn.qkv." in k:
            for part, block in zip(("q_proj", "k_proj", "v_proj"), t.chunk(3, dim=0)):
                name = k.replace("encoder.layers.", "encoder.layer.").replace("attn.qkv", f"attention.{part}")
                sd["vision_tower." + name] = block
            continue
        for old, new in names.items():
            k = k.replace(old, new)
        sd["vision_tower." + k] = t
    for ours, theirs in (("0", "layer_norm"), ("1", "linear_1"), ("3", "linear_2")):
        for w in ("weight", "bias"):
            sd[f"multi_modal_projector.{theirs}.{w}"] = getattr(model.mlp1[int(ours)], w)
    missing, unexpected = hf.load_state_dict(sd, strict=False)
    assert not unexpected and all(k.startswith("language_model.") for k in missing), (missing, unexpected)
    return hf


@pytest.mark.parametrize("variant", list(VARIANTS))
@torch.no_grad()
def test_feature_path_equals_transformers_internvl(ckpt, variant):
    """Our reference-structure InternViT + pixel shuffle + mlp1 (written from the reference code) against
    transformers' separately written InternVLModel.get_image_features, weights remapped."""
    model = variant_model(ckpt, variant)
    hf = hf_internvl(model)
    px = frames(1)
    want = hf.get_image_features(px, vision_feature_layer=-1, vision_feature_select_strategy="default").pooler_output
    got = model.frame_features(px)
    assert got.shape == (FRAMES, TOKENS, 64)
    assert_close(got, want, 1e-5, f"features ({variant})")


@pytest.mark.parametrize("variant", list(VARIANTS))
@torch.no_grad()
def test_vision_graph_equals_reference_extract_feature(ckpt, pkg, manifest, variant, tmp_path):
    """(a) The package's vision graph = the reference structure's `extract_feature` (frames folded
    frame-major) within 1e-4; the rms_norm / qk-norm variant is exported here for the same check."""
    v = manifest["video"]
    assert (v["num_frames"], v["grid_h"], v["grid_w"], v["frame_height"]) == (FRAMES, 4, 4, 64)
    model = variant_model(ckpt, variant)
    if VARIANTS[variant]:
        path = tmp_path / "vision.onnx"
        iv.export_vision(model, str(path))
    else:
        path = pkg / c.VISION_FILE
    px = frames(2)
    want = model.extract_feature(px)[0]
    assert want.shape == (FRAMES * TOKENS, 64)
    got = run(path, pixel_values=px)[c.VISION_OUT_EMBEDS]
    assert_close(got, want, TOL, f"vision graph ({variant})")
    # Frames stay separate and in order: changing frame 2 changes tokens 32..47 only.
    px2 = px.clone()
    px2[2] = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(9))
    got2 = run(path, pixel_values=px2)[c.VISION_OUT_EMBEDS].reshape(FRAMES, TOKENS, -1)
    for t in range(FRAMES):
        err = max_err(got2[t], got.reshape(FRAMES, TOKENS, -1)[t])
        assert (err > WRONG) if t == 2 else (err <= 1e-6), (t, err)
    # The graph takes any frame count (one video): 2 frames give the first two frames' tokens.
    two = run(path, pixel_values=px[:2])[c.VISION_OUT_EMBEDS]
    assert_close(two, want[: 2 * TOKENS], TOL, "2 frames")


@torch.no_grad()
def test_negative_controls(model, tmp_path):
    """(c) ps_version v1 (transposed grid) or another select_layer give other features, so the checks
    above can fail."""
    px = frames(3)
    want = model.extract_feature(px)[0]
    for what, kwargs in {"ps_version v1": {"ps_version": "v1"}, "select_layer -2": {"select_layer": -2}}.items():
        path = str(tmp_path / f"vision_{what.replace(' ', '_')}.onnx")
        iv.export_vision(model, path, **kwargs)
        wrong = run(path, pixel_values=px)[c.VISION_OUT_EMBEDS]
        assert wrong.shape == tuple(want.shape)
        assert max_err(wrong, want) > WRONG, what
    # v1 is exactly the transposed token grid of v2 (same multiset of tokens, other positions).
    v1 = iv.frame_features(model.vision_model, model.mlp1, px, -1, 0.5, "v1").reshape(FRAMES, 4, 4, -1)
    assert_close(v1.transpose(1, 2), want.reshape(FRAMES, 4, 4, -1), 1e-6, "v1 = transposed v2")


# ---- rope and the Phi-3 decoder layers ---------------------------------------------------------------


@torch.no_grad()
def test_rope_graph_equals_transformers_phi3_rotary(model, pkg):
    pos = torch.tensor([[0, 1, 2, 7, 100, 511], [3, 4, 5, 6, 7, 8]])
    want = model.language_model.model.rotary_emb(torch.zeros(()), pos)
    got = run(pkg / c.ROPE_FILE, position_ids=pos)
    assert_close(got[c.ROPE_OUT_COS], want[0], 1e-6, "cos")
    assert_close(got[c.ROPE_OUT_SIN], want[1], 1e-6, "sin")


def reference_su_rotary(short, long_, theta, head_dim, max_pos, original, position_ids):
    """models/phi3/modeling_phi3.py `Phi3SuScaledRotaryEmbedding.forward`, rewritten: factors chosen by
    max(position_ids) + 1 against original_max_position_embeddings; cos/sin scaled."""
    factors = torch.tensor(long_ if int(position_ids.max()) + 1 > original else short, dtype=torch.float32)
    inv_freq = 1.0 / (factors * theta ** (torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim))
    freqs = position_ids[..., None].float() * inv_freq
    emb = torch.cat((freqs, freqs), dim=-1)
    scale = max_pos / original
    s = 1.0 if scale <= 1.0 else math.sqrt(1 + math.log(scale) / math.log(original))
    return emb.cos() * s, emb.sin() * s


@torch.no_grad()
def test_longrope_graph_uses_the_short_factors(ckpt, tmp_path):
    """A Phi-3-mini-128k-style `su` rope_scaling (in the reference's config form): the rope module the
    package exports equals the reference and transformers' longrope for sequences up to
    original_max_position_embeddings and differs beyond (where both switch to the long factors)."""
    from transformers import Phi3ForCausalLM

    cfg = iv.read_config(ckpt)
    short = [1.0 + 0.05 * i for i in range(8)]
    long_ = [1.5 + 2.0 * i for i in range(8)]
    cfg["llm_config"].update(max_position_embeddings=512, original_max_position_embeddings=64,
                             rope_scaling={"type": "su", "short_factor": short, "long_factor": long_})
    tcfg = iv.text_config(cfg)
    assert tcfg.rope_parameters["rope_type"] == "longrope"
    hf = Phi3ForCausalLM(tcfg).model.rotary_emb
    ours = iv.ShortRope(tcfg)
    assert iv.max_positions(tcfg) == 64
    x = torch.zeros(())
    for n in (10, 64):
        pos = torch.arange(n)[None]
        got = ours(x, pos)
        reference = reference_su_rotary(short, long_, 10000.0, 16, 512, 64, pos)
        for want, who in ((hf(x, pos), "transformers"), (reference, "reference")):
            assert_close(got[0], want[0], 1e-6, f"cos vs {who}, {n} positions")
            assert_close(got[1], want[1], 1e-6, f"sin vs {who}, {n} positions")
    pos = torch.arange(100)[None]
    want = reference_su_rotary(short, long_, 10000.0, 16, 512, 64, pos)
    assert_close(hf(x, pos)[0], want[0], 1e-6, "transformers switches to the long factors")
    assert max_err(ours(x, pos)[0], want[0]) > WRONG
    # The exported rope graph (as export_text traces it) holds the short tables.
    from types import SimpleNamespace

    from vidflow_export.graphs import export_rope

    export_rope(SimpleNamespace(rotary_emb=ours), str(tmp_path))
    pos = torch.tensor([[0, 5, 63], [1, 2, 3]])
    got = run(tmp_path / c.ROPE_FILE, position_ids=pos)
    want = reference_su_rotary(short, long_, 10000.0, 16, 512, 64, pos)
    assert_close(got[c.ROPE_OUT_COS], want[0], 1e-6, "rope graph cos")
    assert_close(got[c.ROPE_OUT_SIN], want[1], 1e-6, "rope graph sin")


@pytest.mark.parametrize("P", [0, 5])
@torch.no_grad()
def test_phi3_layer_graph_equals_transformers_layer(model, pkg, P):
    """The exported layer (fused qkv_proj split at wrap time) = transformers' Phi3DecoderLayer with
    HF's own rotary tables, past K/V in its cache, under an additive mask; attention weights too."""
    from conftest import random_mask

    text = model.language_model.model
    cfg = model.text_config
    g = torch.Generator().manual_seed(10 + P)
    B, Q, head_dim = 2, 7, 16
    hidden = torch.randn(B, Q, cfg.hidden_size, generator=g)
    cos, sin = text.rotary_emb(hidden, (torch.arange(Q) + P)[None].expand(B, -1))
    pk = torch.randn(B, cfg.num_key_value_heads, P, head_dim, generator=g)
    pv = torch.randn(B, cfg.num_key_value_heads, P, head_dim, generator=g)
    mask = random_mask(g, B, Q, P, fully_blocked_rows=[(1, 3)])
    for i in (0, 3):
        want = hf_layer_forward(text.layers[i], cfg, hidden, cos, sin, pk, pv, mask)
        got = run_layer(pkg / c.layer_file(i, attn=True), hidden, cos, sin, pk, pv, mask)
        for name, e in zip(c.LAYER_ATTN_OUTPUTS, want):
            assert_close(got[name], e, TOL, f"layer {i} {name}")
        plain = run_layer(pkg / c.layer_file(i), hidden, cos, sin, pk, pv, mask)
        assert_close(plain[c.LAYER_OUT_HIDDEN], want[0], TOL, f"layer {i} hidden (no attn output)")


# ---- prompt and manifest -----------------------------------------------------------------------------


def reference_conversation(question: str, options: list[str]) -> str:
    """tasks/eval/eval_utils.py `conv_eval_mvbench_phi3` as the eval drives it, rewritten:
    `qa_template`, `user_query(question, post_query_prompt=..., is_mm=True)` (MM_ALONE),
    `assistant_response("Best option:(")`, `get_prompt()`."""
    system = ("Carefully watch the video and pay attention to the cause and sequence of events, the detail and "
              "movement of objects, and the action and pose of persons. Based on your observations, select the "
              "best option that accurately addresses the question.\n")
    roles, seps = ["<|user|>\n", "<|assistant|>\n"], [" ", "<|end|>"]
    mm_token = "<img><IMG_CONTEXT></img>\n"
    q = f"Question: {question}\nOptions:\n" + "".join(f"({chr(65 + i)}) {o}\n" for i, o in enumerate(options))
    q = q.rstrip()
    query = f"{q} " + "\nOnly give the best option."
    messages = [[roles[0], mm_token], [roles[0], query], [roles[1], "Best option:("]]
    sep = dict(zip(roles, seps))
    ret = system + sep[roles[0]]
    for i, (role, message) in enumerate(messages):
        if i + 1 == len(messages):
            ret += role + message if role == roles[-1] else role + message + sep[role] + roles[-1]
        else:
            ret += role + message + sep[role]
    return ret


def test_prompt_is_the_reference_conversation():
    """(d) The rendered prompt is the reference's string exactly."""
    text = render(iv.prompt_spec(), "What happens?", ["red", "blue"]).text
    assert text == (iv.SYSTEM_MVBENCH + " <|user|>\n<img><IMG_CONTEXT></img>\n <|user|>\nQuestion: What happens?"
                    "\nOptions:\n(A) red\n(B) blue \nOnly give the best option. <|assistant|>\nBest option:(")
    assert text == reference_conversation("What happens?", ["red", "blue"])
    assert render(iv.prompt_spec(), QUESTION, OPTIONS).text == reference_conversation(QUESTION, OPTIONS)


def test_manifest(manifest, pkg):
    assert manifest["family"] == "llama" and manifest["name"] == "tiny-internvl"
    assert list(manifest) == mf.MANIFEST_FIELDS
    assert manifest["prompt"] == iv.prompt_spec("<IMG_CONTEXT>")
    v = manifest["video"]
    assert (v["image_mean"], v["image_std"]) == (iv.IMAGENET_MEAN, iv.IMAGENET_STD)
    assert (v["resize_mode"], v["resize_filter"], v["sampling"]) == ("shortest_edge_crop", "bicubic", "segment_middle")
    tok = Tokenizer.from_file(str(pkg / c.TOKENIZER_FILE))
    st = manifest["special_tokens"]
    assert tok.id_to_token(st["video_token_id"]) == "<IMG_CONTEXT>"
    specials = [tok.id_to_token(st[k]) for k in ("bos_token_id", "eos_token_id", "pad_token_id")]
    assert specials == ["<s>", "<|endoftext|>", "<unk>"]
    sizes = (manifest["hidden_size"], manifest["num_layers"], manifest["num_heads"], manifest["num_kv_heads"],
             manifest["head_dim"], manifest["intermediate_size"], manifest["max_positions"])
    assert sizes == (64, 4, 4, 4, 16, 128, 512)
    # The runtime's deep check: the placeholder is one token; each label is one token right after the
    # answer prefix.
    text = render(manifest["prompt"], "Q?", ["x"] * 8).text
    base = tok.encode(text, add_special_tokens=False).ids
    assert base.count(st["video_token_id"]) == 1
    for label in manifest["prompt"]["option_labels"]:
        ids = tok.encode(text + label, add_special_tokens=False).ids
        assert ids[:-1] == base and tok.decode(ids[-1:]) == label, label


@torch.no_grad()
def test_package_forward_equals_reference_logits(model, pkg, manifest):
    """(b) vision, embed, splice at the placeholder, rope, every layer (P=0, causal additive mask of 0 /
    float32-min), head_norm = the reference structure's logits at every position, within 1e-4."""
    tok = Tokenizer.from_file(str(pkg / c.TOKENIZER_FILE))
    st = manifest["special_tokens"]
    text = render(manifest["prompt"], QUESTION, OPTIONS).text
    ids = [st["bos_token_id"]] + tok.encode(text, add_special_tokens=False).ids
    assert ids.count(st["video_token_id"]) == 1
    input_ids = torch.tensor([ids])
    px = frames(4)

    want = model(input_ids, px)[0]

    feats = run(pkg / c.VISION_FILE, pixel_values=px)[c.VISION_OUT_EMBEDS]
    embeds = run(pkg / c.EMBED_FILE, input_ids=input_ids)[c.EMBED_OUT]
    v = ids.index(st["video_token_id"])
    hidden = np.concatenate([embeds[:, :v], feats[None], embeds[:, v + 1:]], axis=1)
    S = hidden.shape[1]
    assert S == len(ids) - 1 + FRAMES * TOKENS == want.shape[0]
    rope = run(pkg / c.ROPE_FILE, position_ids=np.arange(S, dtype=np.int64)[None])
    blocked = np.triu(np.ones((S, S), dtype=bool), k=1)
    mask = np.where(blocked, np.float32(c.MASK_BLOCKED), np.float32(0))[None, None]
    empty = np.zeros((1, manifest["num_kv_heads"], 0, manifest["head_dim"]), np.float32)
    for layer in manifest["graphs"]["layers"]:
        out = run_layer(pkg / layer, hidden, rope[c.ROPE_OUT_COS], rope[c.ROPE_OUT_SIN], empty, empty, mask)
        hidden = out[c.LAYER_OUT_HIDDEN]
    got = run(pkg / manifest["graphs"]["head_norm"], hidden=hidden)[c.HEAD_OUT_LOGITS][0]
    assert_close(got, want, TOL, "logits")
    # The video matters: other frames give other last-position logits.
    other = model(input_ids, frames(5))[0, -1]
    assert max_err(other, want[-1]) > WRONG


def test_cli_subcommands(tmp_path):
    from vidflow_export.__main__ import main

    ck = tmp_path / "ckpt"
    assert main(["internvl-random", "--out", str(ck), "--seed", "1"]) == 0
    assert main(["internvl", "--ckpt", str(ck), "--out", str(tmp_path / "pkg"), "--name", "cli-internvl",
                 "--frames", "2"]) == 0
    m = mf.read(str(tmp_path / "pkg" / c.MANIFEST_FILE))
    assert m["name"] == "cli-internvl" and m["video"]["num_frames"] == 2
