"""Loading HF models and reaching their parts, for LLaVA-NeXT-Video and plain Llama-family LMs."""

import json
import os

import torch


def load_video_llm(hf_dir: str):
    """Loads a LlavaNextVideoForConditionalGeneration in float32 with eager attention, eval mode."""
    from transformers import LlavaNextVideoForConditionalGeneration

    model = LlavaNextVideoForConditionalGeneration.from_pretrained(
        hf_dir, dtype=torch.float32, attn_implementation="eager"
    )
    return model.eval()


def text_model(model):
    """The decoder stack (LlamaModel): `layers`, `norm`, `rotary_emb`, `embed_tokens`."""
    inner = model.model
    return inner.language_model if hasattr(inner, "language_model") else inner


def text_config(model):
    return text_model(model).config


def lm_head(model):
    return model.get_output_embeddings()


def video_processor_settings(hf_dir: str) -> dict:
    """HF video processor settings saved next to the model, or {} when there are none."""
    for name in ("video_preprocessor_config.json", "preprocessor_config.json"):
        path = os.path.join(hf_dir, name)
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
    return {}
