"""A random-weight LLaVA-NeXT-Video whose decoder layers have a real model's shape (default: the
7B LLaVA-NeXT-Video's Llama-2-7B layers), exported as a package: latency per layer on a GPU says
nothing unless the matrices have the real sizes, while layer count, vocabulary and vision tower
do not change a layer's cost, so they stay small and the package fits a GPU machine's disk.

The bench prompt is padded to a target sequence length (the paper's S = 1267: 8 frames x 144
video tokens + 115 text tokens), so `vidflow bench` runs at the published shape.
"""

import json
import os
import tempfile

import torch

from . import tokenizer as tk
from .export import export_package
from .tiny import CLIP_MEAN, CLIP_STD, PIL_BICUBIC, VIDEO_PROCESSOR_FILE

# Llama-2-7B's decoder layer (the LLM of LLaVA-NeXT-Video-7B): multi-head attention, SwiGLU MLP.
SHAPE_7B = {"hidden_size": 4096, "num_attention_heads": 32, "num_key_value_heads": 32, "intermediate_size": 11008}
# LLaVA-NeXT-Video-7B's video input: 8 frames pooled to 12 x 12 tokens each.
FRAMES_7B, GRID_7B = 8, 12
# The paper's sequence length at that input (docs/pathways.md): 1152 video + 115 text tokens.
SEQ_LEN_7B = 1267
PATCH = 8
BENCH_OPTIONS = ["The man closes the box", "It moves left", "Nothing happens", "The dog stops"]
BENCH_QUESTION = "What does the man do after the dog opens the door?"


def shaped_config(tok, num_layers: int, hidden_size: int, num_attention_heads: int, num_key_value_heads: int,
                  intermediate_size: int, frames: int, grid: int, max_positions: int = 4096):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextVideoConfig

    ids = {t: tok.token_to_id(t) for t in tk.SPECIAL_TOKENS}
    image_size = grid * 2 * PATCH  # spatial pooling of stride 2 halves the patch grid
    text = LlamaConfig(
        vocab_size=tok.get_vocab_size(with_added_tokens=True),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_attention_heads,
        num_key_value_heads=num_key_value_heads,
        head_dim=hidden_size // num_attention_heads,
        max_position_embeddings=max_positions,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=ids[tk.BOS],
        eos_token_id=ids[tk.EOS],
        pad_token_id=ids[tk.PAD],
        tie_word_embeddings=False,
    )
    # A small vision tower: the benchmark times the decoder; the projector still maps to hidden_size.
    vision = CLIPVisionConfig(image_size=image_size, patch_size=PATCH, hidden_size=32, intermediate_size=64,
                              num_hidden_layers=2, num_attention_heads=2, projection_dim=32)
    return LlavaNextVideoConfig(
        text_config=text,
        vision_config=vision,
        video_token_index=ids[tk.VIDEO],
        image_token_index=ids[tk.IMAGE],
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        spatial_pool_mode="average",
        spatial_pool_stride=2,
        image_grid_pinpoints=[[image_size, image_size]],
        image_seq_length=(image_size // PATCH) ** 2,
        video_seq_length=frames * grid * grid,
        tie_word_embeddings=False,
    ), image_size


def build_shaped(hf_dir: str, num_layers: int = 4, frames: int = FRAMES_7B, grid: int = GRID_7B, seed: int = 0,
                 **shape) -> None:
    """Writes the random-weight HF model (HF's default init, seeded), tokenizer and video processor
    settings to `hf_dir`; `shape` overrides SHAPE_7B's fields."""
    from transformers import LlavaNextVideoForConditionalGeneration

    dims = {**SHAPE_7B, **shape}
    os.makedirs(hf_dir, exist_ok=True)
    tok = tk.train(seed=seed)
    config, image_size = shaped_config(tok, num_layers, frames=frames, grid=grid, **dims)
    torch.manual_seed(seed)
    model = LlavaNextVideoForConditionalGeneration(config).eval()
    model.save_pretrained(hf_dir)
    tk.save_hf(tok, hf_dir)
    processor = {
        "video_processor_type": "LlavaNextVideoVideoProcessor",
        "do_resize": True,
        "size": {"shortest_edge": image_size},
        "resample": PIL_BICUBIC,
        "do_center_crop": True,
        "crop_size": {"height": image_size, "width": image_size},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "num_frames": frames,
    }
    with open(os.path.join(hf_dir, VIDEO_PROCESSOR_FILE), "w") as f:
        json.dump(processor, f, indent=2)


def bench_prompt(package_dir: str, seq_len: int) -> dict:
    """A question (the default bench question, padded with words) whose prompt gives `seq_len`
    positions with the package's template and tokenizer, and the options; `seq_len` in the result
    is what was reached (a shorter one when the unpadded prompt is already longer)."""
    from tokenizers import Tokenizer

    from .golden import build_sequence
    from .manifest import read as read_manifest

    manifest = read_manifest(os.path.join(package_dir, "model.yaml"))
    tok = Tokenizer.from_file(os.path.join(package_dir, manifest["tokenizer"]))

    def length(q: str) -> int:
        return build_sequence(manifest, tok, q, BENCH_OPTIONS).seq_len

    question = BENCH_QUESTION
    fillers = [" and then the dog runs", " and then", " and", " a", "!"]
    while length(question) < seq_len:
        for w in fillers:  # the longest filler that does not overshoot
            if length(question + w) <= seq_len:
                question += w
                break
        else:
            break
    return {"question": question, "options": BENCH_OPTIONS, "answer": 0, "seq_len": length(question)}


def export_shaped(out_dir: str, num_layers: int = 4, dtype: str = "float16", frames: int = FRAMES_7B,
                  grid: int = GRID_7B, seq_len: int = SEQ_LEN_7B, seed: int = 0, name: str | None = None,
                  **shape) -> dict:
    """Builds the HF model in a temporary folder and exports it to `out_dir`; writes the bench
    prompt to `out_dir`/bench_prompt.json; returns {manifest, prompt}."""
    with tempfile.TemporaryDirectory() as tmp:
        hf = os.path.join(tmp, "hf")
        build_shaped(hf, num_layers=num_layers, frames=frames, grid=grid, seed=seed, **shape)
        dims = {**SHAPE_7B, **shape}
        default = f"shaped-h{dims['hidden_size']}-l{num_layers}"
        m = export_package(hf, out_dir, dtype=dtype, frames=frames, name=name or default)
    prompt = bench_prompt(out_dir, seq_len)
    with open(os.path.join(out_dir, "bench_prompt.json"), "w") as f:
        json.dump(prompt, f, indent=2)
    return {"manifest": m, "prompt": prompt}
