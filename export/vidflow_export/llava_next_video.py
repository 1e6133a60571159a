"""The LLaVA-NeXT-Video family (`LlavaNextVideoForConditionalGeneration`, manifest family `llama`).

CLIP vision tower, per-frame 2x2 average pooling, the LLaVA projector, a Llama decoder. The graphs
are the shared ones (graphs.export_all: the model's own `get_video_features`, its rotary module, the
extend-form layer); the prompt is the MVBench/TVBench template of the paper's evaluation
(prompt.mvbench_prompt_spec). The tiny test model is built by tiny.py.
"""

from tokenizers import Tokenizer

from . import graphs, manifest
from .graphs import DTYPES
from .hf import load_video_llm, start_export, text_model


def special_ids(model, tok: Tokenizer) -> dict:
    tcfg = text_model(model).config
    return manifest.config_special_ids(model.config.video_token_index, tcfg.bos_token_id, tcfg.eos_token_id,
                                       tcfg.pad_token_id)


def export_package(hf_dir: str, out_dir: str, dtype: str = "float32", frames: int | None = None,
                   name: str | None = None, attention: str = "eager") -> dict:
    """Writes every graph, `tokenizer.json` and `model.yaml` to `out_dir`; returns the manifest."""
    model, tok, processor = start_export(hf_dir, out_dir, dtype, attention, load_video_llm)
    ids = special_ids(model, tok)
    placeholder = manifest.checked_placeholder(tok, ids, text_model(model).config.vocab_size)
    num_frames = frames or processor.get("num_frames") or 8
    m = manifest.build(
        model,
        name=manifest.package_name(name, hf_dir),
        dtype=dtype,
        processor=processor,
        num_frames=num_frames,
        video_placeholder=placeholder,
        special_ids=ids,
    )
    graphs.export_all(model, out_dir, DTYPES[dtype], attention)
    manifest.finish_package(hf_dir, out_dir, m)
    return m
