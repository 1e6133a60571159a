"""`toy-train`: data, the two training stages, held-out evaluation, export (docs/toy.md)."""

import copy
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

# Everything that decides the result (recorded in toy-train.json next to the packages).
SETTINGS = {
    "seed": 0,
    "threads": 2,
    "num_frames": 8,
    "synth": {"size": 64, "frames": 16, "fps": 8},
    "image_stage": {"suite": "image", "per_task": 1500, "steps": 600, "batch": 32, "lr": 2e-3,
                    "warmup": 50, "weight_decay": 0.01},
    "video_stage": {"suite": "temporal", "per_task": 2000, "steps": 1500, "batch": 16, "lr": 1e-3,
                    "warmup": 100, "weight_decay": 0.01},
    # Held-out sets: other seeds than training (training uses seed*10+1 and seed*10+2).
    "heldout": {"seed_offset": 1000, "per_task": 200},
    "arch": ARCH,
}


def set_determinism(seed: int, threads: int) -> None:
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)


class Examples:
    """One split: token ids (padded right), last positions, targets and frames of every sample."""

    def __init__(self, tasks: dict, enc: PromptEncoder, num_frames: int):
        self.task_names = list(tasks)
        ids, task_of, frames, labels, answers = [], [], [], [], []
        for ti, (name, t) in enumerate(tasks.items()):
            if t.frames.shape[1] != num_frames:
                raise ValueError(f"{name}: {t.frames.shape[1]} frames per sample, expected {num_frames}")
            for q, c, a in zip(t.questions, t.candidates, t.answers):
                ids.append(enc.encode(q, c, num_frames))
                lab = enc.label_ids(q, c)
                labels.append(lab + [-1] * (8 - len(lab)))
                answers.append(a)
                task_of.append(ti)
            frames.append(t.frames)
        self.lengths = np.array([len(x) for x in ids])
        self.ids = np.full((len(ids), self.lengths.max()), enc.pad, dtype=np.int64)
        for i, x in enumerate(ids):
            self.ids[i, : len(x)] = x
        self.labels = np.array(labels, dtype=np.int64)
        self.answers = np.array(answers, dtype=np.int64)
        self.targets = self.labels[np.arange(len(ids)), self.answers]
        self.task_of = np.array(task_of)
        self.frames = np.concatenate(frames)
        self.video_id = enc.video

    def __len__(self):
        return len(self.answers)

    def batch(self, idx: np.ndarray):
        n = self.lengths[idx].max()
        return (torch.from_numpy(self.ids[idx, :n]), torch.from_numpy(self.lengths[idx] - 1),
                d.normalise(self.frames[idx]), torch.from_numpy(self.targets[idx]))


def last_logits(model, input_ids, last, pixel_values_videos):
    """Logits at each sample's last prompt position: the HF model's own parts in its own order
    (embeddings, video features spliced at the video ids, decoder, final norm, LM head)."""
    inner = model.model
    cfg = model.config
    embeds = inner.get_input_embeddings()(input_ids)
    feats = inner.get_video_features(
        pixel_values_videos=pixel_values_videos,
        vision_feature_layer=cfg.vision_feature_layer,
        vision_feature_select_strategy=cfg.vision_feature_select_strategy,
    ).pooler_output
    mask = (input_ids == cfg.video_token_index).unsqueeze(-1).expand_as(embeds)
    embeds = embeds.masked_scatter(mask, feats.to(embeds.dtype))
    hidden = inner.language_model(inputs_embeds=embeds).last_hidden_state
    h = hidden[torch.arange(len(last)), last]
    return model.lm_head(h)


def lr_at(step: int, steps: int, base: float, warmup: int) -> float:
    if step < warmup:
        return base * (step + 1) / warmup
    p = (step - warmup) / max(1, steps - warmup)
    return base * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * p)))


def train_stage(model, ex: Examples, cfg: dict, seed: int, log=print) -> dict:
    """AdamW on the cross-entropy of the true option's label token at the last position."""
    rng = np.random.default_rng(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg["lr"], betas=(0.9, 0.98),
                            weight_decay=cfg["weight_decay"])
    model.train()
    order = np.array([], dtype=np.int64)
    t0 = time.time()
    losses = []
    for step in range(cfg["steps"]):
        if len(order) < cfg["batch"]:
            order = np.concatenate([order, rng.permutation(len(ex))])
        idx, order = order[: cfg["batch"]], order[cfg["batch"]:]
        ids, last, pix, target = ex.batch(np.sort(idx))
        for g in opt.param_groups:
            g["lr"] = lr_at(step, cfg["steps"], cfg["lr"], cfg["warmup"])
        logits = last_logits(model, ids, last, pix)
        loss = torch.nn.functional.cross_entropy(logits, target)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        losses.append(loss.item())
        if (step + 1) % 50 == 0 or step == 0:
            log(f"  step {step + 1}/{cfg['steps']}  loss {np.mean(losses[-50:]):.4f}  {time.time() - t0:.0f}s")
    model.eval()
    return {"seconds": round(time.time() - t0, 1), "final_loss": float(np.mean(losses[-50:]))}


@torch.no_grad()
def evaluate(model, ex: Examples, batch: int = 32) -> dict:
    """Accuracy per task: the prediction is the option whose label token has the highest logit at
    the last position (what `vidflow eval` scores)."""
    model.eval()
    correct = np.zeros(len(ex), dtype=bool)
    for s in range(0, len(ex), batch):
        idx = np.arange(s, min(s + batch, len(ex)))
        ids, last, pix, _ = ex.batch(idx)
        logits = last_logits(model, ids, last, pix).numpy()
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


def toy_train(out: str, seed: int = 0, vidflow: str | None = None, work: str | None = None,
              settings: dict | None = None, export: bool = True, log=print) -> dict:
    """Trains both stages and writes `out/toy-image`, `out/toy-video` and `out/toy-train.json`."""
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
    record = {"settings": s, "commands": {}, "stages": {}, "accuracy": {}}
    t_all = time.time()

    def dataset(key: str, suite: str, dseed: int, per_task: int, frames: int):
        path = os.path.join(work, key)
        if not os.path.exists(os.path.join(path, "synth.json")):
            shutil.rmtree(path, ignore_errors=True)
            cmd = d.synth(vidflow, path, dseed, per_task, suite, frames)
        else:
            cmd = [vidflow, "synth", "--out", path, "--seed", str(dseed), "--per-task", str(per_task),
                   "--suite", suite, "--dump-frames", str(frames)]
        record["commands"][key] = " ".join(["vidflow"] + cmd[1:3] + [key.upper()] + cmd[4:])
        return d.load(path)

    t0 = time.time()
    img, vid = s["image_stage"], s["video_stage"]
    held = s["heldout"]
    train_img = dataset("image_train", "image", seed * 10 + 1, img["per_task"], 1)
    train_vid = dataset("video_train", "temporal", seed * 10 + 2, vid["per_task"], F)
    held_img = dataset("image_heldout", "image", seed + held["seed_offset"], held["per_task"], 1)
    held_vid = dataset("video_heldout", "temporal", seed + held["seed_offset"], held["per_task"], F)
    record["data_seconds"] = round(time.time() - t0, 1)
    log(f"data ready in {record['data_seconds']}s")

    texts = []
    for tasks in (train_img, train_vid):
        for t in tasks.values():
            texts += corpus(t.questions, t.candidates, t.answers)
    tok = train_tokenizer(sorted(set(texts)))
    enc = PromptEncoder(tok, tokens_per_frame(s["arch"]))
    ex = {
        "image_train": Examples(train_img, enc, 1),
        "video_train": Examples(train_vid, enc, F),
        "image_heldout": Examples(held_img, enc, 1),
        "video_heldout": Examples(held_vid, enc, F),
    }
    record["prompt_tokens"] = {"video_train_max": int(ex["video_train"].lengths.max()),
                               "vocab_size": tok.get_vocab_size(with_added_tokens=True)}

    model = build_model(tok, s["arch"], seed)
    record["parameters"] = {
        "total": sum(p.numel() for p in model.parameters()),
        "vision_tower": sum(p.numel() for p in model.model.vision_tower.parameters()),
        "pooler_projector": sum(p.numel() for m in (model.model.vision_resampler, model.model.multi_modal_projector)
                                for p in m.parameters()),
        "language_model": sum(p.numel() for p in model.model.language_model.parameters())
        + sum(p.numel() for p in model.lm_head.parameters()),
    }
    log(f"parameters {record['parameters']}")

    log("image stage")
    record["stages"]["image"] = train_stage(model, ex["image_train"], img, seed * 10 + 3, log)
    acc_img = {"image_heldout": evaluate(model, ex["image_heldout"]),
               "video_heldout": evaluate(model, ex["video_heldout"])}
    log(f"toy-image: {json.dumps(acc_img)}")
    hf_image = os.path.join(work, "hf-toy-image")
    save_hf(model, tok, hf_image, F)

    log("video stage")
    record["stages"]["video"] = train_stage(model, ex["video_train"], vid, seed * 10 + 4, log)
    acc_vid = {"image_heldout": evaluate(model, ex["image_heldout"]),
               "video_heldout": evaluate(model, ex["video_heldout"])}
    log(f"toy-video: {json.dumps(acc_vid)}")
    hf_video = os.path.join(work, "hf-toy-video")
    save_hf(model, tok, hf_video, F)

    record["accuracy"] = {"toy-image": acc_img, "toy-video": acc_vid}
    record["train_seconds"] = round(sum(st["seconds"] for st in record["stages"].values()), 1)
    record["environment"] = {"torch": torch.__version__, "python": platform.python_version(),
                             "machine": platform.machine()}
    if export:
        from ..export import export_package

        os.makedirs(out, exist_ok=True)
        for name, hf in (("toy-image", hf_image), ("toy-video", hf_video)):
            export_package(hf, os.path.join(out, name), dtype="float32", frames=F, name=name)
        record["packages"] = {n: {"dir": n, "num_frames": F, "dtype": "float32"} for n in ("toy-image", "toy-video")}
        with open(os.path.join(out, "toy-train.json"), "w") as f:
            json.dump(record, f, indent=2)
            f.write("\n")
    record["total_seconds"] = round(time.time() - t_all, 1)
    if tmp is not None:
        tmp.cleanup()
    return record
