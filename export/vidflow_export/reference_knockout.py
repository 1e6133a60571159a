"""PyTorch reference of the published attention-knockout method, for checking `vidflow knockout`.

The HF model (LLaVA-NeXT-Video, eager attention) runs a full forward per knockout. In the layers of
the window, a forward pre-hook on the layer's self-attention replaces its attention mask with a 4D
additive mask [1,1,S,S]: 0 on open edges, the dtype's minimum value on blocked ones (future keys,
and every (query in B, key in A) pair of the flow "A -/-> B"); the other layers keep HF's own causal
mask. The baseline is the plain forward: its argmax a over the whole vocabulary at the last position
and the ground-truth option token g are then tracked through every knockout as
%change = (p_knock - p_base) / p_base * 100.

It reads the exact inputs vidflow used (`vidflow knockout --dump-inputs DIR`): per sample
`<k>.safetensors` (pixel_values [F,3,H,W], input_ids [T] with one video placeholder, inputs_embeds
[S,D] the spliced input embeddings) and `<k>.json` (answer, placeholder index, token groups as
positions of the spliced sequence, option label tokens). Flows, windows, masks and metrics are all
computed here, independently of vidflow.

Two models:

- `--hf DIR`: the LLaVA-NeXT-Video HF model the package was exported from, fed input_ids and
  pixel_values (its own vision tower and splice);
- `--text-model smollm2`: SmolLM2-135M-Instruct (`smollm2.load`: the GGUF dequantized to float32,
  eager attention), the text side of the `smollm2-package` benchmark package, fed the dumped
  inputs_embeds (that package's vision tower is random and exists only as ONNX). Only the last
  position's logits are computed (`logits_to_keep=1`); the masks and readout are the same.

    python -m vidflow_export.reference_knockout --hf HF_DIR --inputs DUMP_DIR --out records.jsonl \
        --targets cross-frame,vql-to-ql --window 3 --window-styles center,inverse --all-samples
    python -m vidflow_export.reference_knockout --text-model smollm2 --inputs DUMP_DIR --out r.jsonl \
        --window 9 --layers 12-15 --all-samples --threads 2 --timing timing.json
"""

import argparse
import glob
import json
import os
import sys
import time

import numpy as np
import torch
from safetensors.numpy import load_file

from .hf import load_video_llm, text_model

TARGETS = ("cross-frame", "vql-to-ql", "question-and-options-to-last", "vq-to-true-opt")
STYLES = ("center", "inverse", "top_down", "bottom_up")
# The fields kept in the committed fixture tests/fixtures/knockout/reference_records.jsonl.
FIXTURE_FIELDS = ("sample_id", "flow", "layer", "window_style", "window_layers", "p_base", "p_true_base",
                  "pct_change_pred", "pct_change_true", "base_token", "true_token", "new_token", "edges_blocked")


# ---- flows and windows (design.md section 3) -------------------------------------------------------


def flows_of(target: str, groups: dict, num_frames: int) -> list:
    """[(flow name, [(key positions, query positions), ...])] of a named target; the names are
    vidflow's flow labels, so records can be matched."""
    g = groups
    if target == "cross-frame":
        pairs = []
        for i in range(1, num_frames):
            earlier = [p for j in range(i) for p in g[f"frame[{j}]"]]
            pairs.append((earlier, g[f"frame[{i}]"]))
        return [("cross-frame", pairs)]
    table = {
        "vql-to-ql": [("video", "question"), ("video", "last"), ("question", "last"), ("last", "last")],
        "question-and-options-to-last": [("question.text", "last"), ("option.true", "last"),
                                         ("option.false", "last")],
        "vq-to-true-opt": [("video", "question.text"), ("question.text", "option.true"),
                           ("video", "option.true")],
    }
    if target not in table:
        raise ValueError(f"unknown target {target!r}; expected one of {', '.join(TARGETS)}")
    return [(f"{a} ↛ {b}", [(g[a], g[b])]) for a, b in table[target]]


def window_layers(style: str, layer: int, window: int, num_layers: int) -> list:
    """Blocked layers at sweep layer `layer`, as the published reference picks them."""
    lo = max(0, layer - window // 2)
    hi = min(num_layers, layer - (-window // 2))  # layer + ceil(window / 2)
    if style == "center":
        return list(range(lo, hi))
    if style == "inverse":
        return [l for l in range(num_layers) if not lo <= l < hi]
    if style == "top_down":
        return list(range(layer, num_layers))
    if style == "bottom_up":
        return list(range(0, layer + 1))
    raise ValueError(f"unknown window style {style!r}")


def blocked_matrix(seq_len: int, pairs) -> torch.Tensor:
    """[S,S] bool: True where the edge (query row, key column) is blocked (future keys included)."""
    open_ = torch.tril(torch.ones(seq_len, seq_len, dtype=torch.bool))
    for keys, queries in pairs:
        if len(keys) and len(queries):
            open_[torch.tensor(queries)[:, None], torch.tensor(keys)[None, :]] = False
    return ~open_


def additive_mask(blocked: torch.Tensor, dtype=torch.float32) -> torch.Tensor:
    """[1,1,S,S]: 0 where open, the dtype's minimum where blocked."""
    zero = torch.zeros((), dtype=dtype)
    return torch.where(blocked, torch.finfo(dtype).min, zero)[None, None]


# ---- the model under knockout ----------------------------------------------------------------------


class MaskOverride:
    """Replaces the attention mask of chosen decoder layers while active."""

    def __init__(self, model, mask: torch.Tensor, layers):
        self.attns = [text_model(model).layers[l].self_attn for l in layers]
        self.mask = mask
        self.handles = []

    def _hook(self, module, args, kwargs):
        if "attention_mask" not in kwargs:
            raise RuntimeError("the attention module was called without an attention_mask keyword")
        kwargs["attention_mask"] = self.mask
        return args, kwargs

    def __enter__(self):
        self.handles = [a.register_forward_pre_hook(self._hook, with_kwargs=True) for a in self.attns]
        return self

    def __exit__(self, *exc):
        for h in self.handles:
            h.remove()
        self.handles = []


def expanded_ids(input_ids: np.ndarray, placeholder: int, num_video_tokens: int) -> torch.Tensor:
    """The processor's form: the video placeholder repeated once per video token."""
    ids = input_ids.tolist()
    return torch.tensor([ids[:placeholder] + [ids[placeholder]] * num_video_tokens + ids[placeholder + 1:]])


@torch.no_grad()
def last_probs(model, ids: torch.Tensor, pixels: torch.Tensor) -> torch.Tensor:
    """Softmax over the vocabulary at the last position (float64)."""
    logits = model(input_ids=ids, pixel_values_videos=pixels).logits[0, -1]
    return torch.softmax(logits.double(), dim=-1)


@torch.no_grad()
def last_probs_from_embeds(model, embeds: torch.Tensor) -> torch.Tensor:
    """The same from spliced input embeddings [1,S,D]; only the last position is projected."""
    logits = model(inputs_embeds=embeds, logits_to_keep=1).logits[0, -1]
    return torch.softmax(logits.double(), dim=-1)


def sample_forward(model, meta: dict, tensors: dict, from_embeds: bool):
    """A zero-argument function: the sample's last-position probabilities under whatever masks
    are installed."""
    S = meta["seq_len"]
    if from_embeds:
        if "inputs_embeds" not in tensors:
            raise KeyError(f"{meta['sample_id']}: the dump has no inputs_embeds; dump again with this vidflow")
        embeds = torch.from_numpy(tensors["inputs_embeds"])[None]
        assert embeds.shape[1] == S, f"{meta['sample_id']}: {embeds.shape[1]} embedded positions, expected {S}"
        return lambda: last_probs_from_embeds(model, embeds)
    ids = expanded_ids(tensors["input_ids"], meta["placeholder_index"], meta["num_video_tokens"])
    assert ids.shape[1] == S, f"{meta['sample_id']}: expanded ids have {ids.shape[1]} tokens, expected {S}"
    pixels = torch.from_numpy(tensors["pixel_values"])[None]
    return lambda: last_probs(model, ids, pixels)


def load_dump(inputs_dir: str) -> list:
    metas = sorted(glob.glob(os.path.join(inputs_dir, "*.json")))
    if not metas:
        raise FileNotFoundError(f"{inputs_dir}: no dumped samples (*.json); run vidflow with --dump-inputs")
    out = []
    for path in metas:
        with open(path) as f:
            meta = json.load(f)
        tensors = load_file(path[: -len(".json")] + ".safetensors")
        out.append((meta, tensors))
    return out


def pct(base: float, new: float) -> float:
    return (new - base) / base * 100.0


@torch.no_grad()
def run_reference(model, inputs_dir: str, targets, window: int, styles, all_samples: bool,
                  layers=None, from_embeds: bool = False, timing: dict | None = None) -> list:
    """Every record of the sweep, in sample, style, flow, layer order. `from_embeds` feeds the
    dumped inputs_embeds instead of input_ids and pixels; `timing`, when given, receives the
    seconds spent in baselines and in knockouts (wall; and the process's CPU seconds in knockouts)
    and the number of knockouts."""
    L = text_model(model).config.num_hidden_layers
    sweep = list(layers) if layers is not None else list(range(L))
    records = []
    clock = {"baseline_s": 0.0, "knockout_s": 0.0, "knockout_cpu_s": 0.0, "baselines": 0, "knockouts": 0}
    for meta, tensors in load_dump(inputs_dir):
        S = meta["seq_len"]
        forward = sample_forward(model, meta, tensors, from_embeds)
        t0 = time.perf_counter()
        base = forward()
        clock["baseline_s"] += time.perf_counter() - t0
        clock["baselines"] += 1
        a = int(torch.argmax(base))
        g = int(meta["option_token_ids"][meta["answer"]])
        if a != g and not all_samples:
            continue
        p_base, p_true_base = float(base[a]), float(base[g])
        for style in styles:
            for target in targets:
                for name, pairs in flows_of(target, meta["groups"], meta["num_frames"]):
                    blocked = blocked_matrix(S, pairs)
                    causal_blocked = int(S * (S - 1) // 2)
                    edges = int(blocked.sum()) - causal_blocked
                    mask = additive_mask(blocked)
                    for layer in sweep:
                        win = window_layers(style, layer, window, L)
                        t0, c0 = time.perf_counter(), time.process_time()
                        with MaskOverride(model, mask, win):
                            probs = forward()
                        clock["knockout_s"] += time.perf_counter() - t0
                        clock["knockout_cpu_s"] += time.process_time() - c0
                        clock["knockouts"] += 1
                        new = int(torch.argmax(probs))
                        records.append({
                            "sample_id": meta["sample_id"],
                            "flow": name,
                            "target": target,
                            "layer": layer,
                            "window": window,
                            "window_style": style,
                            "window_layers": win,
                            "p_base": p_base,
                            "p_knock": float(probs[a]),
                            "pct_change_pred": pct(p_base, float(probs[a])),
                            "p_true_base": p_true_base,
                            "p_true_knock": float(probs[g]),
                            "pct_change_true": pct(p_true_base, float(probs[g])),
                            "base_token": a,
                            "true_token": g,
                            "new_token": new,
                            "edges_blocked": edges * len(win),
                        })
    if timing is not None:
        timing.update(clock)
    return records


def parse_layers(spec: str) -> list:
    """`A-B`: sweep layers A..B, 0-based, B excluded (vidflow's --layers)."""
    try:
        a, b = (int(x) for x in spec.split("-"))
    except ValueError:
        raise ValueError(f"--layers {spec!r}: expected A-B (0-based, B excluded)") from None
    if not 0 <= a < b:
        raise ValueError(f"--layers {spec!r}: expected 0 <= A < B")
    return list(range(a, b))


def load_text_model(name: str):
    if name == "smollm2":
        from . import smollm2

        return smollm2.load()
    raise ValueError(f"unknown --text-model {name!r}; expected smollm2")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m vidflow_export.reference_knockout", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--hf", help="HF LLaVA-NeXT-Video directory the package was exported from")
    which.add_argument("--text-model", choices=["smollm2"],
                       help="a causal LM fed the dumped inputs_embeds (smollm2: the smollm2-package text side)")
    p.add_argument("--inputs", required=True, help="folder written by vidflow knockout --dump-inputs")
    p.add_argument("--out", required=True, help="JSONL file of records to write")
    p.add_argument("--targets", default=",".join(TARGETS))
    p.add_argument("--window", type=int, default=9)
    p.add_argument("--window-styles", default="center", help="comma-separated window styles")
    p.add_argument("--all-samples", action="store_true", help="also samples answered wrongly")
    p.add_argument("--layers", help="sweep layers A-B, 0-based, B excluded (default: all)")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: the tiny model's many small forwards gain nothing from more)")
    p.add_argument("--timing", help="also write the timings (load, baselines, knockouts) to this JSON file")
    p.add_argument("--fixture", action="store_true", help="write only the committed fixture's fields")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    model = load_video_llm(args.hf) if args.hf else load_text_model(args.text_model)
    timing = {"threads": torch.get_num_threads(), "load_s": time.perf_counter() - t0}
    layers = parse_layers(args.layers) if args.layers else None
    records = run_reference(model, args.inputs, [t for t in args.targets.split(",") if t], args.window,
                            [s for s in args.window_styles.split(",") if s], args.all_samples, layers=layers,
                            from_embeds=args.hf is None, timing=timing)
    with open(args.out, "w") as f:
        for r in records:
            if args.fixture:
                r = {k: r[k] for k in FIXTURE_FIELDS}
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    per = timing["knockout_s"] / timing["knockouts"] if timing["knockouts"] else float("nan")
    print(f"wrote {len(records)} reference records to {args.out}")
    print(f"load {timing['load_s']:.2f} s, {timing['baselines']} baseline(s) {timing['baseline_s']:.2f} s, "
          f"{timing['knockouts']} knockouts {timing['knockout_s']:.2f} s ({per:.3f} s each), "
          f"{timing['threads']} thread(s)")
    if args.timing:
        with open(args.timing, "w") as f:
            json.dump(timing, f, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
