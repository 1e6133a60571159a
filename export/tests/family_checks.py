"""Checks that every HF family's committed package (tests/fixtures/tiny-FAMILY) shares: reading the
package and its goldens, the rope and decoder-layer graphs against the HF modules, the golden cases
replayed through the graphs, HF's own forward against the golden prefill, the per-frame splice and
the generate golden. Each family's test file calls these with what differs (its fixture, its
positions, its HF reference) and keeps its own family-specific assertions."""

import json

import numpy as np
import torch
import yaml
from conftest import assert_close, hf_layer_forward, max_err, random_mask, run, run_layer
from safetensors.numpy import load_file

from vidflow_export import contract as c
from vidflow_export import golden as gd
from vidflow_export import golden_generate as gg
from vidflow_export import manifest as mf
from vidflow_export.hf import text_model

TOL = 1e-4
# A wrong mask or position rule must move the results by far more than the graph contract.
WRONG = 1e-2


# ---- the committed package -----------------------------------------------------------------------------


def read_manifest(fixture) -> dict:
    return mf.read(str(fixture / c.MANIFEST_FILE))


def read_meta(fixture) -> dict:
    with open(fixture / c.GOLDEN_DIR / c.GOLDEN_YAML_FILE) as f:
        return yaml.safe_load(f)


def read_golden(fixture) -> dict:
    return load_file(str(fixture / c.GOLDEN_DIR / c.GOLDEN_TENSORS_FILE))


def per_frame_sequence(golden, meta, after_last_frame: int = 0) -> gd.Sequence:
    """The golden's Sequence of a per-frame prompt as golden.yaml describes it (the Rust tests' view):
    the video group ends `after_last_frame` positions after the last frame's last row (the tokens of
    the last frame_suffix)."""
    F, n = meta["num_frames"], meta["tokens_per_frame"]
    return gd.Sequence(golden["input_ids"][0].tolist(), meta["video_start"], F, n, meta["seq_len"],
                       frame_starts=meta["frame_starts"], video_end=meta["frame_starts"][-1] + n + after_last_frame)


def splice_frames(embeds: np.ndarray, video: np.ndarray, frame_starts, n: int) -> np.ndarray:
    """[1,T,D] text embeddings with frame i's placeholder replaced by its n rows of `video` [F*n,D]
    (frame_starts: each frame's first row in the spliced sequence), as the runtime does."""
    parts, prev = [], 0
    for i, start in enumerate(frame_starts):
        k = start - i * (n - 1)
        parts += [embeds[:, prev:k], video[None, i * n:(i + 1) * n]]
        prev = k + 1
    return np.concatenate(parts + [embeds[:, prev:]], axis=1)


def spliced_texts(manifest, tok, seq) -> list:
    """Spliced position -> token text (frame rows: None)."""
    texts = []
    for t in seq.input_ids:
        if t == manifest["special_tokens"]["video_token_id"]:
            texts += [None] * seq.tokens_per_frame
        else:
            texts.append(tok.decode([t], skip_special_tokens=False))
    assert len(texts) == seq.seq_len
    return texts


# ---- graphs against the HF modules ----------------------------------------------------------------------


def check_rope_graph(model, path, pos):
    """The rope graph at `path` equals the HF text model's own rotary module on `pos`; returns the
    graph's outputs."""
    out = run(path, position_ids=pos)
    with torch.no_grad():
        cos, sin = text_model(model).rotary_emb(torch.zeros(1), pos)
    assert_close(out[c.ROPE_OUT_COS], cos, TOL, "cos")
    assert_close(out[c.ROPE_OUT_SIN], sin, TOL, "sin")
    return out


def check_layer_graph(model, manifest, fixture, layer_idx: int, P: int, Q: int, position_axes: tuple = ()):
    """Both graphs of decoder layer `layer_idx` (with and without attention weights) equal the HF
    layer's own forward with P past rows and Q new rows under a random mask; `position_axes`: leading
    axes of the position ids ((3,) for M-RoPE's t, h, w)."""
    text = text_model(model)
    g = torch.Generator().manual_seed(layer_idx)
    B, D, Hkv, Dh = 2, manifest["hidden_size"], manifest["num_kv_heads"], manifest["head_dim"]
    hidden = torch.randn(B, Q, D, generator=g)
    pos = torch.randint(0, 100, (*position_axes, B, Q), generator=g)
    with torch.no_grad():
        cos, sin = text.rotary_emb(hidden, pos)
    args = (hidden, cos, sin, torch.randn(B, Hkv, P, Dh, generator=g), torch.randn(B, Hkv, P, Dh, generator=g),
            random_mask(g, B, Q, P, fully_blocked_rows=[(0, Q - 1)]))
    want_h, want_k, want_v, want_w = hf_layer_forward(text.layers[layer_idx], text.config, *args)
    for attn in (False, True):
        out = run_layer(fixture / c.layer_file(layer_idx, attn), *args)
        assert_close(out[c.LAYER_OUT_HIDDEN], want_h, TOL, "hidden_out")
        assert_close(out[c.LAYER_OUT_KEY], want_k, TOL, "key")
        assert_close(out[c.LAYER_OUT_VALUE], want_v, TOL, "value")
        if attn:
            assert_close(out[c.LAYER_OUT_ATTN], want_w, TOL, "attn_weights")


def ort_causal_prefill(fixture, manifest, embeds, positions) -> np.ndarray:
    """The package's rope graph on `positions` and every layer graph (plain causal, no past) on
    embeds [1,S,D] -> the last layer's hidden states [1,S,D]."""
    rope = run(fixture / manifest["graphs"]["rope"], position_ids=positions)
    S = embeds.shape[1]
    mask = gd.additive(gd.causal_blocked(1, 1, S)[0])[:, None].numpy()
    empty = np.zeros((1, manifest["num_kv_heads"], 0, manifest["head_dim"]), np.float32)
    h = embeds
    for rel in manifest["graphs"]["layers"]:
        h = run_layer(fixture / rel, h, rope[c.ROPE_OUT_COS], rope[c.ROPE_OUT_SIN], empty, empty,
                      mask)[c.LAYER_OUT_HIDDEN]
    return h


# ---- goldens -------------------------------------------------------------------------------------------


def golden_rope(fixture, manifest, golden):
    """The package's rope graph on the golden's position ids, checked against the golden cos and sin;
    returns (cos, sin)."""
    rope = run(fixture / manifest["graphs"]["rope"], position_ids=golden["position_ids"])
    cos, sin = rope[c.ROPE_OUT_COS], rope[c.ROPE_OUT_SIN]
    assert_close(cos, golden["cos"], 1e-5, "cos")
    assert_close(sin, golden["sin"], 1e-5, "sin")
    return cos, sin


def replay_golden_cases(fixture, manifest, meta, golden, seq, cos, sin):
    """ONNX Runtime through the package's layer and head graphs gives each golden case's hidden states
    and last logits: the masks rebuilt from `seq` and golden.yaml's block rules (compared edge for edge
    with the stored ones first), extend with the stored past K/V; the knockout moves the logits."""
    L, P = meta["num_layers"], meta["prefix_len"]
    for case in meta["cases"]:
        name, B = case["name"], case["batch"]
        blocked = gd.case_blocked(L, B, seq, case["blocks"])
        start = P if name == "extend" else 0
        blocked = blocked[:, :, start:]
        assert (blocked == golden[f"{name}.blocked"]).all(), name
        h = np.repeat(golden["embeds"][:, start:], B, axis=0)
        rows = (np.repeat(cos[:, start:], B, axis=0), np.repeat(sin[:, start:], B, axis=0))
        for layer in range(L):
            if name == "extend":
                pk, pv = golden["extend.past_key"][layer], golden["extend.past_value"][layer]
            else:
                pk = pv = np.zeros((B, manifest["num_kv_heads"], 0, manifest["head_dim"]), np.float32)
            mask = gd.additive(blocked[layer])[:, None].numpy()
            h = run_layer(fixture / manifest["graphs"]["layers"][layer], h, *rows, pk, pv, mask)[c.LAYER_OUT_HIDDEN]
            assert_close(h, golden[f"{name}.hidden"][layer + 1], TOL, f"{name} hidden {layer + 1}")
        logits = run(fixture / manifest["graphs"]["head_norm"], hidden=h[:, -1:])[c.HEAD_OUT_LOGITS][:, 0]
        assert_close(logits, golden[f"{name}.logits_last"], TOL, f"{name} logits_last")
    assert max_err(golden["knockout.logits_last"], golden["prefill.logits_last"]) > WRONG


def check_hf_prefill(model, manifest, golden, out):
    """HF's forward output `out` (output_hidden_states) is the golden prefill: every layer's hidden
    states, the final normed hidden state and the last logits."""
    with torch.no_grad():
        normed = text_model(model).norm(torch.from_numpy(golden["prefill.hidden"][-1]))
    L = manifest["num_layers"]
    for layer in range(L):  # HF's last entry is after the final norm
        assert_close(out.hidden_states[layer], golden["prefill.hidden"][layer], TOL, f"hidden {layer}")
    assert_close(out.hidden_states[L], normed, TOL, "final normed hidden")
    assert_close(out.logits[:, -1], golden["prefill.logits_last"], TOL, "logits_last")


def check_golden_shapes(manifest, meta, golden):
    """The shapes every family's golden shares: the cases, the extend past K/V and the lenses; the
    golden pixels are the manifest's normalisation of synthetic frames."""
    L, V, P = manifest["num_layers"], manifest["vocab_size"], meta["prefix_len"]
    assert [case["name"] for case in meta["cases"]] == list(c.GOLDEN_CASES)
    assert golden["extend.past_key"].shape == (L, 1, 2, P, 16)
    assert golden["prefill.lens_norm"].shape == (L, V)
    assert np.array_equal(golden["pixel_values"], gd.synthetic_frames(manifest))


@torch.no_grad()
def masked_logits(model, golden, seq, blocks):
    """The HF layers on the golden embeddings under the masks of `seq` and `blocks`: last logits."""
    text = text_model(model)
    embeds = torch.from_numpy(golden["embeds"])
    cos, sin = torch.from_numpy(golden["cos"]), torch.from_numpy(golden["sin"])
    states, _, _ = gd.run_layers(model, embeds, cos, sin, gd.case_blocked(len(text.layers), 1, seq, blocks))
    return gd.lenses(model, states[-1][:, -1])[0]


class VideoWithoutText(gd.Sequence):
    """A wrong grouping: the `video` group is the frame rows alone (no per-frame text)."""

    def group(self, name):
        if name == "video":
            return self.video_rows()
        return super().group(name)


def text_in_frame(seq, suffix_tokens: int = 0) -> gd.Sequence:
    """A wrong grouping: frame i runs from the end of the previous frame's suffix (or video_start) to
    the end of its own suffix (`suffix_tokens` after its last row): the frame text inside the frame."""

    class TextInFrame(gd.Sequence):
        def frame(self, i):
            end = self.frame_starts[i] + self.tokens_per_frame + suffix_tokens
            start = self.video_start if i == 0 else self.frame_starts[i - 1] + self.tokens_per_frame + suffix_tokens
            return range(start, end)

    return TextInFrame(**sequence_fields(seq))


def sequence_fields(seq) -> dict:
    return {k: getattr(seq, k) for k in gd.Sequence.__dataclass_fields__}


def check_wrong_groups_fail(model, manifest, golden, seq, wrongs: dict):
    """The right groups give the golden knockout; each of `wrongs` (name -> Sequence) gives another
    mask and other knockout logits."""
    want_blocked = golden["knockout.blocked"]
    want = golden["knockout.logits_last"]
    assert_close(masked_logits(model, golden, seq, gd.KNOCKOUT_BLOCKS), want, TOL, "right groups")
    for name, wrong in wrongs.items():
        blocked = gd.case_blocked(manifest["num_layers"], 1, wrong, gd.KNOCKOUT_BLOCKS)
        assert not np.array_equal(blocked, want_blocked), name
        assert max_err(masked_logits(model, golden, wrong, gd.KNOCKOUT_BLOCKS), want) > WRONG, name


def check_generate_golden(hf_dir, fixture, model, reference: str):
    """generate.json regenerates from the fresh model (every field, every case's tokens); its first
    case names `reference`; returns the committed file."""
    with open(fixture / c.GOLDEN_DIR / gg.GENERATE_FILE) as f:
        committed = json.load(f)
    fresh = gg.compute_generate_golden(hf_dir, str(fixture), model=model)
    assert list(committed) == list(fresh)
    for key in fresh:
        if key != "cases":
            assert committed[key] == fresh[key], key
    for want, got in zip(committed["cases"], fresh["cases"]):
        assert want["tokens"] == got["tokens"], want["name"]
    assert committed["cases"][0]["tokens"] != committed["cases"][1]["tokens"]
    assert reference in committed["cases"][0]["reference"]
    return committed
