"""A tiny random-weight LLaVA-NeXT-Video model (seeded) with its tokenizer, saved in HF format."""

import json
import os

import torch

from . import tokenizer as tk
from .manifest import CLIP_MEAN, CLIP_STD

NUM_FRAMES = 4
IMAGE_SIZE = 64
# CLIP normalisation: manifest.CLIP_MEAN / _STD (transformers' OPENAI_CLIP_MEAN / _STD).
# PIL's resampling codes, as HF processor configs store them.
PIL_BICUBIC = 3
# Video processor settings file written next to the model (HF's name for it).
VIDEO_PROCESSOR_FILE = "video_preprocessor_config.json"


def tiny_config(vocab_size: int, bos_id: int, eos_id: int, pad_id: int, video_id: int, image_id: int):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextVideoConfig

    text = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "linear", "factor": 2.0, "rope_theta": 10000.0},
        bos_token_id=bos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=False,
    )
    vision = CLIPVisionConfig(
        image_size=IMAGE_SIZE,
        patch_size=8,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        projection_dim=32,
    )
    grid = IMAGE_SIZE // 8 // 2
    return LlavaNextVideoConfig(
        text_config=text,
        vision_config=vision,
        video_token_index=video_id,
        image_token_index=image_id,
        vision_feature_layer=-2,
        vision_feature_select_strategy="default",
        spatial_pool_mode="average",
        spatial_pool_stride=2,
        image_grid_pinpoints=[[IMAGE_SIZE, IMAGE_SIZE]],
        image_seq_length=(IMAGE_SIZE // 8) ** 2,
        video_seq_length=NUM_FRAMES * grid * grid,
        tie_word_embeddings=False,
    )


def video_processor_settings() -> dict:
    """HF-style video processor settings of the tiny model (CLIP normalisation, bicubic, crop)."""
    return {
        "video_processor_type": "LlavaNextVideoVideoProcessor",
        "do_resize": True,
        "size": {"shortest_edge": IMAGE_SIZE},
        "resample": PIL_BICUBIC,
        "do_center_crop": True,
        "crop_size": {"height": IMAGE_SIZE, "width": IMAGE_SIZE},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": CLIP_MEAN,
        "image_std": CLIP_STD,
        "num_frames": NUM_FRAMES,
    }


def build_tiny(out_dir: str, seed: int = 0):
    """Writes the tiny model, tokenizer and video processor settings to `out_dir`; returns the model."""
    from transformers import LlavaNextVideoForConditionalGeneration

    os.makedirs(out_dir, exist_ok=True)
    tok = tk.train(seed=seed)
    ids = {t: tok.token_to_id(t) for t in tk.SPECIAL_TOKENS}
    config = tiny_config(
        vocab_size=tok.get_vocab_size(with_added_tokens=True),
        bos_id=ids[tk.BOS],
        eos_id=ids[tk.EOS],
        pad_id=ids[tk.PAD],
        video_id=ids[tk.VIDEO],
        image_id=ids[tk.IMAGE],
    )
    torch.manual_seed(seed)
    model = LlavaNextVideoForConditionalGeneration(config).eval()
    # HF's default init (std 0.02) makes every layer nearly an identity map on the residual
    # stream; larger weights make the fixture sensitive to any mask, rotary or K/V slot error.
    _rescale_init(model, seed)
    model.save_pretrained(out_dir)
    tk.save_hf(tok, out_dir)
    with open(os.path.join(out_dir, VIDEO_PROCESSOR_FILE), "w") as f:
        json.dump(video_processor_settings(), f, indent=2)
    return model


def processor_settings(processor_type: str, size: dict, mean: list, std: list, **extra) -> dict:
    """HF-style video processor settings of a tiny model: `size`, bicubic resize, 1/255 rescale,
    normalisation by `mean` / `std`, then the family's `extra` keys (in order)."""
    return {
        "video_processor_type": processor_type,
        "do_resize": True,
        "size": size,
        "resample": PIL_BICUBIC,
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": mean,
        "image_std": std,
        **extra,
    }


def chatml_model(model_class, make_config, prompt: dict, special_tokens: list, seed: int,
                 norm_names=("norm",), num_frames: int | None = None):
    """A tiny Qwen2 (ChatML) family model: its tokenizer trained on the family's `prompt` (answers end
    with `<|im_end|>`; `num_frames` for a per-frame prompt), `make_config(vocab_size, ids)` (ids by
    special token), the model seeded, then `_rescale_init` with biases ~ N(0, 0.1^2) so that every
    layer and the q/k/v and projector biases matter. Returns (tokenizer, model)."""
    frames = {} if num_frames is None else {"num_frames": num_frames}
    tok = tk.train_on_prompts(prompt, special_tokens, tk.IM_END, seed, **frames)
    ids = {t: tok.token_to_id(t) for t in special_tokens}
    config = make_config(tok.get_vocab_size(with_added_tokens=True), ids)
    torch.manual_seed(seed)
    model = model_class(config).eval()
    _rescale_init(model, seed, norm_names=norm_names, bias_std=0.1)
    return tok, model


def save_chatml(out_dir: str, model, tok, processor: dict, tokenizer_extra: dict) -> None:
    """Saves a tiny ChatML family model to `out_dir`: the model, its tokenizer (no BOS, EOS
    `<|im_end|>`, pad `<|endoftext|>`, `tokenizer_extra` tokens) and the video processor settings."""
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tk.save_hf(tok, out_dir, bos=None, eos=tk.IM_END, pad=tk.ENDOFTEXT, extra=tokenizer_extra)
    with open(os.path.join(out_dir, VIDEO_PROCESSOR_FILE), "w") as f:
        json.dump(processor, f, indent=2)


def qwen2_text_config(vocab_size: int, eos_id: int, pad_id: int) -> dict:
    """The tiny Qwen2 text config of the Qwen2-based families (LLaVA-OneVision, VideoLLaMA3, native
    InternVL): hidden 64, 4 layers, 4 heads / 2 KV heads (head_dim 16), rope_theta 10000, no BOS."""
    return dict(
        model_type="qwen2",
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=4,
        num_attention_heads=4,
        num_key_value_heads=2,
        head_dim=16,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        rope_parameters={"rope_type": "default", "rope_theta": 10000.0},
        bos_token_id=None,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
        tie_word_embeddings=False,
    )


@torch.no_grad()
def _rescale_init(model, seed: int, norm_names=("norm",), bias_std: float = 0.02) -> None:
    """Matrices ~ N(0, 1/fan_in); weights of norms (a parameter name containing one of
    `norm_names`) ~ 1 + N(0, 0.1^2); every other vector ~ N(0, bias_std^2)."""
    g = torch.Generator().manual_seed(seed + 1)
    for name, p in model.named_parameters():
        if p.ndim >= 2:
            fan_in = p.shape[1] if p.ndim == 2 else p[0].numel()
            p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
        elif any(n in name for n in norm_names) and name.endswith("weight"):
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(bias_std * torch.randn(p.shape, generator=g))
