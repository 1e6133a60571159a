"""The LLaVA-NeXT-Video family (`LlavaNextVideoForConditionalGeneration`, manifest family `llama`).

CLIP vision tower, per-frame 2x2 average pooling, the LLaVA projector, a Llama decoder. The graphs
are the shared ones (graphs.export_all: the model's own `get_video_features`, its rotary module, the
extend-form layer); the prompt is the MVBench/TVBench template of the paper's evaluation
(prompt.mvbench_prompt_spec). The tiny test model is built by tiny.py.
"""

import os
import shutil

from tokenizers import Tokenizer

from . import contract as c
from . import graphs, manifest
from .graphs import DTYPES
from .hf import load_video_llm, text_model, video_processor_settings


def special_ids(model, tok: Tokenizer) -> dict:
    tcfg = text_model(model).config

    def first(x):
        return x[0] if isinstance(x, (list, tuple)) else x

    ids = {
        "video": model.config.video_token_index,
        "bos": first(tcfg.bos_token_id),
        "eos": first(tcfg.eos_token_id),
        "pad": first(tcfg.pad_token_id),
    }
    return {k: (None if v is None else int(v)) for k, v in ids.items()}


def export_package(hf_dir: str, out_dir: str, dtype: str = "float32", frames: int | None = None,
                   name: str | None = None, attention: str = "eager") -> dict:
    """Writes every graph, `tokenizer.json` and `model.yaml` to `out_dir`; returns the manifest."""
    if attention == "fused" and dtype != "float32":
        raise ValueError(f"fused attention is float32 only, not {dtype}")
    os.makedirs(out_dir, exist_ok=True)
    model = load_video_llm(hf_dir)
    tok = Tokenizer.from_file(os.path.join(hf_dir, c.TOKENIZER_FILE))
    ids = special_ids(model, tok)
    placeholder = tok.id_to_token(ids["video"])
    if placeholder is None or tok.encode(placeholder, add_special_tokens=False).ids != [ids["video"]]:
        raise ValueError(f"video token id {ids['video']} is not a single-token placeholder in the tokenizer")
    if tok.get_vocab_size(with_added_tokens=True) > text_model(model).config.vocab_size:
        raise ValueError("tokenizer has more ids than the model's vocabulary")

    processor = video_processor_settings(hf_dir)
    num_frames = frames or processor.get("num_frames") or 8
    m = manifest.build(
        model,
        name=name or os.path.basename(os.path.normpath(hf_dir)),
        dtype=dtype,
        processor=processor,
        num_frames=num_frames,
        video_placeholder=placeholder,
        special_ids=ids,
    )
    graphs.export_all(model, out_dir, DTYPES[dtype], attention)
    shutil.copyfile(os.path.join(hf_dir, c.TOKENIZER_FILE), os.path.join(out_dir, c.TOKENIZER_FILE))
    manifest.write(m, os.path.join(out_dir, c.MANIFEST_FILE))
    return m
