"""`export`: HF LLaVA-NeXT-Video, Qwen2.5-VL or LLaVA-OneVision directory -> model package (docs/package.md).

The architecture (config.json `architectures[0]`) picks the path: LLaVA-NeXT-Video here, Qwen2.5-VL
in qwen2_5_vl.py, LLaVA-OneVision in llava_onevision.py."""

import os
import shutil

import torch
from tokenizers import Tokenizer

from . import contract as c
from . import graphs, manifest
from .hf import LLAVA_ONEVISION, QWEN2_5_VL, architecture, load_video_llm, text_model, video_processor_settings

# bfloat16: graphs for ONNX Runtime's CUDA provider (its CPU kernels have no bfloat16 MatMul).
DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}


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
                   name: str | None = None, attention: str = "eager", frame_hw: tuple[int, int] | None = None,
                   seconds_per_group: float | None = None) -> dict:
    """Writes every graph, `tokenizer.json` and `model.yaml` to `out_dir`; returns the manifest.

    `attention="fused"` (float32 only): the decoder layers' attention core as ONNX Runtime's
    com.microsoft MultiHeadAttention (graphs.export_layer); same I/O contract. `frame_hw` and
    `seconds_per_group` are Qwen2.5-VL's (qwen2_5_vl.export_package); `frames` counts its temporal
    groups there."""
    arch = architecture(hf_dir)
    if arch == QWEN2_5_VL:
        from . import qwen2_5_vl

        return qwen2_5_vl.export_package(hf_dir, out_dir, dtype=dtype, frames=frames, name=name, attention=attention,
                                         frame_hw=frame_hw, seconds_per_group=seconds_per_group)
    if frame_hw is not None or seconds_per_group is not None:
        raise ValueError("frame size and seconds per group are Qwen2.5-VL export options")
    if arch == LLAVA_ONEVISION:
        from . import llava_onevision

        return llava_onevision.export_package(hf_dir, out_dir, dtype=dtype, frames=frames, name=name,
                                              attention=attention)
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
