"""Loading HF models and reaching their parts, for LLaVA-NeXT-Video, Qwen2.5-VL, LLaVA-OneVision, VideoLLaMA3,
InternVL (transformers' native InternVLForConditionalGeneration) and plain Llama-family LMs."""

import json
import os

import torch


LLAVA_NEXT_VIDEO = "LlavaNextVideoForConditionalGeneration"
QWEN2_5_VL = "Qwen2_5_VLForConditionalGeneration"
LLAVA_ONEVISION = "LlavaOnevisionForConditionalGeneration"
VIDEOLLAMA3 = "VideoLlama3ForConditionalGeneration"
INTERNVL_HF = "InternVLForConditionalGeneration"
# The architectures `export` takes (config.json `architectures[0]`).
ARCHITECTURES = (LLAVA_NEXT_VIDEO, QWEN2_5_VL, LLAVA_ONEVISION, VIDEOLLAMA3, INTERNVL_HF)


def architecture(hf_dir: str) -> str:
    """`architectures[0]` of the HF directory's config.json; ValueError for one `export` does not take."""
    with open(os.path.join(hf_dir, "config.json")) as f:
        archs = json.load(f).get("architectures") or [None]
    if archs[0] not in ARCHITECTURES:
        raise ValueError(f"{hf_dir}: architecture {archs[0]!r} is not supported; supported: {', '.join(ARCHITECTURES)}")
    return archs[0]


def load_eager(model_class, hf_dir: str):
    """`model_class.from_pretrained(hf_dir)` in float32 with eager attention, eval mode: the form
    every export and golden reference runs (attention written out, no fused kernels)."""
    return model_class.from_pretrained(hf_dir, dtype=torch.float32, attn_implementation="eager").eval()


def load_video_llm(hf_dir: str):
    """Loads a LlavaNextVideoForConditionalGeneration (load_eager)."""
    from transformers import LlavaNextVideoForConditionalGeneration

    return load_eager(LlavaNextVideoForConditionalGeneration, hf_dir)


def text_model(model):
    """The decoder stack (LlamaModel, Qwen2Model): `layers`, `norm`, `rotary_emb`, `embed_tokens`."""
    inner = model.model
    return inner.language_model if hasattr(inner, "language_model") else inner


def text_config(model):
    return text_model(model).config


def lm_head(model):
    return model.get_output_embeddings()


def video_processor_settings(hf_dir: str, names=("video_preprocessor_config.json", "preprocessor_config.json")) -> dict:
    """HF video processor settings saved next to the model (the first of the files `names` there),
    or {} when there are none."""
    for name in names:
        path = os.path.join(hf_dir, name)
        if os.path.exists(path):
            with open(path) as f:
                return json.load(f)
    return {}


def start_export(hf_dir: str, out_dir: str, dtype: str, attention: str, load):
    """The first steps of a family's `export_package`: the dtype / attention pair checked, `out_dir`
    made, the model loaded (`load(hf_dir)`); returns (model, tokenizer, video processor settings)."""
    from tokenizers import Tokenizer

    from .contract import TOKENIZER_FILE
    from .graphs import check_attention

    check_attention(attention, dtype)
    os.makedirs(out_dir, exist_ok=True)
    model = load(hf_dir)
    tok = Tokenizer.from_file(os.path.join(hf_dir, TOKENIZER_FILE))
    return model, tok, video_processor_settings(hf_dir)
