"""The PLLaVA family (vidflow_export.pllava): a tiny random checkpoint in the reference layout, converted
to a package and run with ONNX Runtime against the reference-structure PyTorch model loaded from the
same checkpoint by its reference key names."""

import json

import numpy as np
import pytest
import torch
from conftest import assert_close, max_err, run, run_layer
from safetensors.torch import load_file
from tokenizers import Tokenizer

from vidflow_export import contract as c
from vidflow_export import manifest as mf
from vidflow_export import pllava as p
from vidflow_export.prompt import render

TOL = 1e-4
# A wrong pooling must move the features by far more than the graph tolerance.
WRONG = 1e-2
QUESTION = "What does the man do after the woman opens the door?"
OPTIONS = ["The man picks up the box", "It moves left", "Nothing happens"]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory) -> str:
    out = tmp_path_factory.mktemp("pllava_ckpt")
    p.write_random_checkpoint(str(out), seed=0)
    return str(out)


@pytest.fixture(scope="module")
def model(ckpt):
    return p.load(ckpt)


@pytest.fixture(scope="module")
def pkg(ckpt, tmp_path_factory):
    out = tmp_path_factory.mktemp("pllava_pkg")
    p.export_package(ckpt, str(out), name="tiny-pllava")
    return out


@pytest.fixture(scope="module")
def manifest(pkg):
    return mf.read(str(pkg / c.MANIFEST_FILE))


def frames(seed: int = 0, n: int = 4) -> torch.Tensor:
    return torch.randn(n, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def test_checkpoint_is_in_the_reference_layout(ckpt, model):
    with open(f"{ckpt}/config.json") as f:
        cfg = json.load(f)
    assert cfg["architectures"] == ["PllavaForConditionalGeneration"] and cfg["model_type"] == "llava"
    assert cfg["pooling_shape"] == [4, 4, 4] and cfg["frame_shape"] == [8, 8]
    # Diff form: PllavaConfig defaults are left out and filled in on load.
    assert "vision_feature_layer" not in cfg and "projector_hidden_act" not in cfg
    assert model.config["vision_feature_layer"] == -2 and model.config["projector_hidden_act"] == "gelu"

    keys = set(load_file(f"{ckpt}/model.safetensors"))
    assert keys == set(model.state_dict())
    for k in ("vision_tower.vision_model.embeddings.class_embedding",
              "vision_tower.vision_model.embeddings.patch_embedding.weight",
              "vision_tower.vision_model.embeddings.position_embedding.weight",
              "vision_tower.vision_model.pre_layrnorm.weight",
              "vision_tower.vision_model.encoder.layers.1.self_attn.out_proj.bias",
              "vision_tower.vision_model.encoder.layers.0.mlp.fc2.weight",
              "vision_tower.vision_model.post_layernorm.bias",
              "multi_modal_projector.linear_1.weight", "multi_modal_projector.linear_2.bias",
              "language_model.model.embed_tokens.weight", "language_model.model.layers.3.mlp.down_proj.weight",
              "language_model.model.norm.weight", "language_model.lm_head.weight"):
        assert k in keys, k
    prefixes = {k.split(".")[0] for k in keys}
    assert prefixes == {"vision_tower", "multi_modal_projector", "language_model"}
    # A fresh reference-structure model takes the file strictly.
    fresh = p.PllavaForConditionalGeneration(p.read_config(ckpt))
    fresh.load_state_dict(load_file(f"{ckpt}/model.safetensors"), strict=True)


@torch.no_grad()
def test_clip_tower_equals_transformers_clip(ckpt, model):
    """Our 4.40-layout CLIP tower against transformers' CLIPVisionModel with the same weights:
    hidden_states[-2] (embeddings counted as entry 0)."""
    from transformers import CLIPVisionModel

    hf = CLIPVisionModel(p.vision_config(model.config)).eval()
    prefix = "vision_tower.vision_model."
    sd = {k[len(prefix):]: v for k, v in load_file(f"{ckpt}/model.safetensors").items() if k.startswith(prefix)}
    hf.load_state_dict(sd, strict=True)
    px = frames(1)
    want = hf(px, output_hidden_states=True).hidden_states[-2][:, 1:]
    got = p.select_features(model.vision_tower, px, -2)
    assert_close(got, want, 1e-5, "CLIP hidden_states[-2]")


@torch.no_grad()
def test_vision_graph_equals_reference_features(model, pkg, manifest):
    v = manifest["video"]
    assert (v["num_frames"], v["grid_h"], v["grid_w"]) == (4, 4, 4)
    px = frames(2)
    want = model.video_features(px)[0]  # the reference's projector + nn.AdaptiveAvgPool3d
    assert want.shape == (4 * 16, 64)
    got = run(pkg / c.VISION_FILE, pixel_values=px)[c.VISION_OUT_EMBEDS]
    assert_close(got, want, TOL, "vision graph")
    # The spatial pooling really averages: the pooled features differ from every single patch's.
    proj = model.multi_modal_projector
    unpooled = proj.project(p.select_features(model.vision_tower, px, -2))  # [4, 64, D]
    assert max_err(want.reshape(4, 4, 4, -1), unpooled.reshape(4, 8, 8, -1)[:, ::2, ::2]) > WRONG
    # Frames stay separate: changing frame 2 changes frame 2's tokens only.
    px2 = px.clone()
    px2[2] = torch.randn(3, 64, 64, generator=torch.Generator().manual_seed(9))
    got2 = run(pkg / c.VISION_FILE, pixel_values=px2)[c.VISION_OUT_EMBEDS].reshape(4, 16, -1)
    got = got.reshape(4, 16, -1)
    for t in range(4):
        err = max_err(got2[t], got[t])
        assert (err > WRONG) if t == 2 else (err <= 1e-6), (t, err)


@pytest.mark.parametrize("n_in, n_out", [(8, 4), (24, 12), (24, 10), (7, 3), (4, 4), (5, 1)])
def test_pool_matrix_is_adaptive_avg_pool(n_in, n_out):
    """The graph's averaging matrices equal nn.AdaptiveAvgPool3d, overlapping windows included."""
    x = torch.randn(2, 3, n_in, n_in + 1, n_in, generator=torch.Generator().manual_seed(n_in * 31 + n_out))
    want = torch.nn.AdaptiveAvgPool3d((n_out, n_out, 2))(x)
    got = torch.einsum("at,bh,cw,nethw->neabc", p.pool_matrix(n_in, n_out), p.pool_matrix(n_in + 1, n_out),
                       p.pool_matrix(n_in, 2), x)
    assert_close(got, want, 1e-6, f"{n_in} -> {n_out}")


def test_manifest(manifest, pkg):
    assert manifest["family"] == "llama" and manifest["name"] == "tiny-pllava"
    assert list(manifest) == mf.MANIFEST_FIELDS
    assert manifest["prompt"] == p.prompt_spec("<image>")
    tok = Tokenizer.from_file(str(pkg / c.TOKENIZER_FILE))
    st = manifest["special_tokens"]
    assert tok.id_to_token(st["video_token_id"]) == "<image>"
    specials = [tok.id_to_token(st[k]) for k in ("bos_token_id", "eos_token_id", "pad_token_id")]
    assert specials == ["<s>", "</s>", "<unk>"]
    sizes = (manifest["hidden_size"], manifest["num_layers"], manifest["num_kv_heads"], manifest["head_dim"])
    assert sizes == (64, 4, 2, 16)
    # The runtime's deep check: each label is one token right after the answer prefix.
    text = render(manifest["prompt"], "Q?", ["x"] * 8).text
    base = tok.encode(text, add_special_tokens=False).ids
    for label in manifest["prompt"]["option_labels"]:
        ids = tok.encode(text + label, add_special_tokens=False).ids
        assert ids[:-1] == base and tok.decode(ids[-1:]) == label, label


def test_prompt_is_the_reference_conversation():
    """conv_eval_mvbench.get_prompt() for one question, as tasks/eval/eval_utils.py builds it."""
    text = render(p.prompt_spec(), "What happens?", ["red", "blue"]).text
    assert text == (p.SYSTEM_MVBENCH + " USER: <image>\n USER: Question: What happens?\nOptions:\n(A) red\n(B) blue"
                    " \nOnly give the best option. ASSISTANT:Best option:(")


@torch.no_grad()
def test_package_forward_equals_reference_logits(model, pkg, manifest):
    tok = Tokenizer.from_file(str(pkg / c.TOKENIZER_FILE))
    st = manifest["special_tokens"]
    text = render(manifest["prompt"], QUESTION, OPTIONS).text
    ids = [st["bos_token_id"]] + tok.encode(text, add_special_tokens=False).ids
    assert ids.count(st["video_token_id"]) == 1
    input_ids = torch.tensor([ids])
    px = frames(3)

    want = model(input_ids, px)[0, -1]

    feats = run(pkg / c.VISION_FILE, pixel_values=px)[c.VISION_OUT_EMBEDS]
    embeds = run(pkg / c.EMBED_FILE, input_ids=input_ids)[c.EMBED_OUT]
    v = ids.index(st["video_token_id"])
    hidden = np.concatenate([embeds[:, :v], feats[None], embeds[:, v + 1:]], axis=1)
    S = hidden.shape[1]
    assert S == len(ids) - 1 + 4 * 16
    rope = run(pkg / c.ROPE_FILE, position_ids=np.arange(S, dtype=np.int64)[None])
    blocked = np.triu(np.ones((S, S), dtype=bool), k=1)
    mask = np.where(blocked, np.float32(c.MASK_BLOCKED), np.float32(0))[None, None]
    empty = np.zeros((1, manifest["num_kv_heads"], 0, manifest["head_dim"]), np.float32)
    for layer in manifest["graphs"]["layers"]:
        out = run_layer(pkg / layer, hidden, rope[c.ROPE_OUT_COS], rope[c.ROPE_OUT_SIN], empty, empty, mask)
        hidden = out[c.LAYER_OUT_HIDDEN]
    got = run(pkg / manifest["graphs"]["head_norm"], hidden=hidden[:, -1:])[c.HEAD_OUT_LOGITS][0, -1]
    assert_close(got, want, TOL, "last-position logits")
    assert float(np.abs(got - want.numpy()).max()) <= TOL


@torch.no_grad()
def test_negative_controls(ckpt, model, tmp_path):
    """Pooling-relevant changes give other features, so the checks above can fail."""
    px = frames(2)
    want = model.video_features(px)[0]

    # 1. The projector after the pooling (LLaVA-NeXT-Video's order), exported as a package graph.
    path = str(tmp_path / "vision_pool_first.onnx")
    p.export_vision(model, path, pool_frames_first=True)
    wrong = run(path, pixel_values=px)[c.VISION_OUT_EMBEDS]
    assert wrong.shape == tuple(want.shape)
    assert max_err(wrong, want) > WRONG

    # 2. A checkpoint whose pooling also averages frames (pooling_shape [2,4,4] over 4 input frames):
    # same weights, different features; each pooled frame is the mean of two of ours (the pool is linear).
    other = str(tmp_path / "ckpt_frames_pooled")
    p.write_random_checkpoint(other, seed=0, config_overrides={"pooling_shape": [2, 4, 4]})
    sd = load_file(f"{other}/model.safetensors")
    assert all(torch.equal(t, model.state_dict()[k]) for k, t in sd.items())
    cfg = p.read_config(other)
    assert cfg["num_frames"] == 4
    pooled = p.PllavaForConditionalGeneration(cfg).eval()
    pooled.load_state_dict(sd, strict=True)
    got = pooled.video_features(px)[0].reshape(2, 16, -1)
    ours = want.reshape(4, 16, -1)
    assert max_err(got, ours[::2]) > WRONG and max_err(got, ours[1::2]) > WRONG
    assert_close(got, (ours[0::2] + ours[1::2]) / 2, 1e-5, "temporal pooling")
