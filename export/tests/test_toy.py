"""The toy VideoLLM (docs/toy.md): a training step runs on a tiny configuration; the shipped
packages `models/toy-image` and `models/toy-video` open, are the ones `models/toy-train.json`
describes, and that record is complete."""

import copy
import json

import numpy as np
import onnxruntime as ort
import pytest
import torch

from vidflow_export import manifest
from vidflow_export.toy import data as d
from vidflow_export.toy import model as M
from vidflow_export.toy import train as T
from vidflow_export.toy.text import statement

from conftest import REPO

MODELS = REPO / "models"
RECORD = MODELS / "toy-train.json"
TEMPORAL = ["action_antonym", "action_sequence", "moving_direction", "object_count", "scene_transition"]
IMAGE = ["object_colour", "object_number", "object_position", "object_shape"]


def _fake_tasks(num_frames: int, n: int = 4) -> dict:
    """Synth-like records (the real question templates) with random frames."""
    rng = np.random.default_rng(0)
    specs = {
        "moving_direction": ("In which direction does the moving object move?",
                             ["Up and to the left.", "Up and to the right.", "Down and to the left.",
                              "Down and to the right."]),
        "action_antonym": ("How does the size of the object change?", ["It gets bigger.", "It gets smaller."]),
        "object_colour": ("What colour is the circle?", ["red", "blue", "green", "white"]),
    }
    tasks = {}
    for name, (q, opts) in specs.items():
        cands = [list(np.roll(opts, i)) for i in range(n)]
        tasks[name] = d.Task(name=name, questions=[q] * n, candidates=cands,
                             answers=[i % len(opts) for i in range(n)],
                             frames=rng.integers(0, 256, (n, num_frames, 64, 64, 3), dtype=np.uint8))
    return tasks


def _tiny(text_layers: int, threads: int):
    """A small toy model, its prompt encoder and two-frame synth-like tasks (tokenizer trained on
    their prompts and statements)."""
    T.set_determinism(0, threads)
    arch = copy.deepcopy(M.ARCH)
    arch["text"].update(num_hidden_layers=text_layers)
    arch["vision"].update(num_hidden_layers=1)
    tasks = _fake_tasks(2)
    texts = []
    for t in tasks.values():
        texts += M.corpus(t.questions, t.candidates, t.answers)
        texts += [statement(q, c[a]) for q, c, a in zip(t.questions, t.candidates, t.answers)]
    tok = M.train_tokenizer(sorted(set(texts)), arch)
    enc = M.PromptEncoder(tok, M.tokens_per_frame(arch))
    return M.build_model(tok, arch, 0), enc, tasks, arch


def test_training_step_runs_and_evaluates():
    model, enc, tasks, arch = _tiny(text_layers=4, threads=2)
    before = [p.detach().clone() for p in model.parameters()]
    frames = tasks["moving_direction"].frames.reshape(-1, 64, 64, 3)
    v = T.vision_stage(model, frames, dict(T.SETTINGS["stages"]["vision"], steps=2, batch=4), 0,
                       log=lambda *a: None)
    assert np.isfinite(v["final_loss"])
    cfg = dict(T.SETTINGS["stages"]["video"], steps=2, batch=4)
    video = T.Examples(tasks, enc, 2, change_features=cfg.get("change_features", False))
    for ex in (T.Examples(tasks, enc, 0, text_only=True), video):
        r = T.train_stage(model, ex, cfg, 0, log=lambda *a: None)
        assert np.isfinite(r["final_loss"]) and np.isfinite(r["final_answer_loss"])
        acc = T.evaluate(model, ex)
        assert set(acc) == set(tasks) | {"overall"}
        assert acc["overall"]["scored"] == 12
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    # The shared-prefix forward equals the plain one.
    ids, last, pix, *_ = ex.batch(np.arange(4))
    with torch.no_grad():
        full, _ = T.forward(model, ids, pix)
        shared, _ = T.forward(model, ids, pix, ex.prefix_len)
    assert torch.allclose(full, shared, atol=1e-5)


def test_clip_probe_settings_train_and_map_concepts_to_tasks():
    """`video_concept` reads the answer's content from the last frame's tokens, choosing among its
    own task's answers only; `motion_features: change` narrows the motion probe to the change
    features. A step with both runs, and each concept belongs to the task that uses it."""
    model, enc, tasks, arch = _tiny(text_layers=4, threads=1)
    concepts = sorted({(n, c[a]) for n, t in tasks.items() for c, a in zip(t.candidates, t.answers)})
    concepts = {c: i for i, c in enumerate(concepts)}
    ex = T.Examples(tasks, enc, 2, concepts=concepts, change_features=True)
    names = list(tasks)
    for (task, text), cid in concepts.items():
        assert ex.concept_task[cid] == names.index(task), (task, text)
    assert ex.motion.shape[-1] == 3 * T.THUMB_SUBS**2 + T.CHANGE_FEATURES
    cfg = dict(T.SETTINGS["stages"]["video"], steps=2, batch=4, motion_features="change",
               video_concept=1.0, video_concept_layer=1, lookup=1.0, lookup_layer=0,
               lookup_heads=[[0, "previous"]])
    before = [p.detach().clone() for p in model.parameters()]
    r = T.train_stage(model, ex, cfg, 0, log=lambda *a: None)
    assert np.isfinite(r["final_loss"])
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters()))
    assert model.config.text_config._attn_implementation != "toy_probe"


def test_kept_attention_is_causal_and_changes_nothing():
    """The look-up supervision reads layer 0's attention through a custom implementation: the
    logits stay those of the stock one, and no query sees a later key."""
    model, enc, tasks, arch = _tiny(text_layers=2, threads=1)
    model.eval()
    ex = T.Examples(tasks, enc, 2)
    ids, last, pix, *_ = ex.batch(np.arange(3))
    with torch.no_grad():
        stock, _ = T.forward(model, ids, pix, ex.prefix_len)
        impl = T.keep_attention(model, 0)
        kept, _ = T.forward(model, ids, pix, ex.prefix_len)
        w = T._ATTENTION.pop("weights")
        T.release_attention(model, impl)
        assert model.config.text_config._attn_implementation == impl
    assert torch.allclose(stock, kept, atol=1e-5)
    t = ids.shape[1]
    assert w.shape == (3, arch["text"]["num_attention_heads"], t - ex.prefix_len, t)
    later = torch.arange(t)[None, :] > torch.arange(ex.prefix_len, t)[:, None]
    assert w[..., later].abs().max() == 0
    torch.testing.assert_close(w.sum(-1), torch.ones(w.shape[:-1]))


def test_lookup_loss_by_hand():
    """Two frames of two tokens from position 3: all weight on the same cell one frame back costs
    nothing; weight spread evenly over the four video keys costs log 4."""
    hw, frames, video_start, offset = 2, 3, 3, 0
    t = video_start + frames * hw
    exact = torch.zeros(1, 2, t, t)
    for p in range(video_start + hw, t):
        exact[0, 0, p, p - hw] = 1.0  # previous frame
        exact[0, 1, p, video_start + (p - video_start) % hw] = 1.0  # first frame
    loss = T.lookup_loss(exact, offset, video_start, frames, hw, [(0, "previous"), (1, "first")])
    assert abs(loss.item()) < 1e-5
    even = torch.full((1, 1, t, t), 0.25)
    loss = T.lookup_loss(even, offset, video_start, frames, hw, [(0, "previous")])
    assert abs(loss.item() - np.log(4)) < 1e-4


def _record() -> dict:
    assert RECORD.exists(), "models/toy-train.json is missing (python -m vidflow_export toy-train --out models)"
    with open(RECORD) as f:
        return json.load(f)


def test_thumbnails_follow_the_token_grid():
    """A lit 4x4 block lands in the token of its cell and the sub-block of its place in the cell
    (token order row-major, as the pooler emits them); the motion target is the signed change."""
    f = np.full((1, 2, 64, 64, 3), 32, np.uint8)
    f[0, 1, 16:20, 36:40] = 255  # cell (row 1, column 2) = token 6; sub-block (0, 1)
    t = T.thumbnails(f, 16, subs=4)
    assert t.shape == (1, 2, 16, 48)
    changed = np.argwhere(np.abs(t[0, 1] - t[0, 0]) > 1e-6)
    assert {int(i) for i in changed[:, 0]} == {6}
    assert {int(i) for i in changed[:, 1]} == {3, 4, 5}
    np.testing.assert_allclose(t[0, 1, 6, 3], 255 / 255 - 0.5)
    m = T.motion_targets(f, 16)
    np.testing.assert_array_equal(m[0, 0], 0)
    np.testing.assert_allclose(m[0, 1, :, :48], t[0, 1] - t[0, 0], atol=1e-6)


def test_change_features_by_hand():
    """A 4x4 block moves 6 px down and to the right inside token 6's cell. By hand: it leaves
    sub-block (0, 1) (3 channels of (255-32)/255 each) and lands on a quarter of each of four
    sub-blocks, so the summed absolute thumbnail change is 2 x 3 x 0.8745 and the feature is a
    quarter of that; the covered area is unchanged; the cell differs from the first frame by the
    same amount; and of the four diagonals only down-right explains the new block, all 16 of its
    pixels, a quarter of a quarter cell (64 px)."""
    f = np.full((1, 2, 64, 64, 3), 32, np.uint8)
    f[0, 0, 16:20, 36:40] = 255
    f[0, 1, 22:26, 42:46] = 255
    m = T.motion_targets(f, 16, extra=True)
    assert m.shape == (1, 2, 16, 48 + T.CHANGE_FEATURES)
    step = (255 - 32) / 255
    changed = 2 * 3 * step / 4
    expected = [changed, 0.0, changed, 0.0, 0.0, 0.0, 16 / 64]
    assert T.SHIFTS[3] == (6, 6)
    np.testing.assert_allclose(m[0, 1, 6, 48:], expected, atol=1e-5)
    others = np.delete(m[0, 1, :, 48:], 6, axis=0)
    np.testing.assert_array_equal(others, 0)


def test_record_is_complete():
    r = _record()
    s = r["settings"]
    for key in ("seed", "threads", "num_frames", "data", "stages", "arch"):
        assert key in s, key
    assert list(s["stages"]) == ["language", "vision", "image", "video"]
    for stage, cfg in s["stages"].items():
        keys = ("steps", "batch", "lr", "warmup", "weight_decay")
        if stage != "vision":
            keys += ("text_loss", "probe")
        for key in keys:
            assert key in cfg, f"{stage}.{key}"
        assert r["stages"][stage]["steps"] == cfg["steps"]
        assert r["stages"][stage]["seconds"] > 0
    assert set(r["datasets"]) == {"image_train", "video_train", "image_heldout", "video_heldout"}
    for pkg in ("toy-image", "toy-video"):
        acc = r["accuracy"][pkg]
        assert list(acc["video_heldout"]) == TEMPORAL + ["overall"]
        assert list(acc["image_heldout"]) == IMAGE + ["overall"]
        for split in acc.values():
            for t in split.values():
                assert t["scored"] == s["data"]["heldout_per_task"] or t is split["overall"]
                assert 0.0 <= t["accuracy"] <= 1.0
                assert t["correct"] == round(t["accuracy"] * t["scored"])
    assert r["train_seconds"] > 0 and r["parameters"]["total"] > 0


@pytest.mark.parametrize("name", ["toy-image", "toy-video"])
def test_shipped_package_matches_record(name):
    r = _record()
    pkg = MODELS / name
    assert pkg.is_dir(), f"{pkg} is missing"
    info = r["packages"][name]
    assert T._package_digest(str(pkg)) == info["sha256"], f"{name} is not the package toy-train.json describes"
    m = manifest.read(str(pkg / "model.yaml"))
    arch = r["settings"]["arch"]
    assert m["name"] == name and m["dtype"] == "float32"
    assert m["video"]["num_frames"] == r["settings"]["num_frames"] == info["num_frames"]
    assert m["num_layers"] == arch["text"]["num_hidden_layers"]
    assert m["hidden_size"] == arch["text"]["hidden_size"]
    assert m["vocab_size"] == r["tokens"]["vocab_size"]
    assert m["video"]["grid_h"] * m["video"]["grid_w"] == r["tokens"]["video_tokens_per_frame"]
    # The vision graph runs on F frames and gives F*h*w embeddings.
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(pkg / "vision.onnx"), opts, providers=["CPUExecutionProvider"])
    f = m["video"]["num_frames"]
    out = sess.run(None, {"pixel_values": np.zeros((f, 3, 64, 64), np.float32)})[0]
    assert out.shape == (f * m["video"]["grid_h"] * m["video"]["grid_w"], m["hidden_size"])


def test_packages_share_the_tokenizer():
    _record()
    a = (MODELS / "toy-image" / "tokenizer.json").read_bytes()
    b = (MODELS / "toy-video" / "tokenizer.json").read_bytes()
    assert a == b
