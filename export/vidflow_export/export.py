"""`export`: a Hugging Face directory -> model package (docs/package.md).

The architecture (config.json `architectures[0]`) picks the family's own file, one per family as
candle keeps one per architecture: llava_next_video.py, qwen2_5_vl.py, llava_onevision.py,
videollama3.py, internvl_hf.py (transformers' InternVLForConditionalGeneration). The
paper's own checkpoint layouts have their converters (pllava.py, internvl.py)."""

from .graphs import DTYPES  # noqa: F401  (the dtypes `export` takes, by name)
from .hf import INTERNVL_HF, LLAVA_NEXT_VIDEO, LLAVA_ONEVISION, QWEN2_5_VL, VIDEOLLAMA3, architecture


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
    if arch == VIDEOLLAMA3:
        from . import videollama3

        return videollama3.export_package(hf_dir, out_dir, dtype=dtype, frames=frames, name=name, attention=attention)
    if arch == INTERNVL_HF:
        from . import internvl_hf

        return internvl_hf.export_package(hf_dir, out_dir, dtype=dtype, frames=frames, name=name, attention=attention)
    assert arch == LLAVA_NEXT_VIDEO, arch
    from . import llava_next_video

    return llava_next_video.export_package(hf_dir, out_dir, dtype=dtype, frames=frames, name=name,
                                           attention=attention)
