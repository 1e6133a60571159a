"""The VideoLLaMA3 family (`VideoLlama3ForConditionalGeneration`: its own SigLIP-style vision encoder with
2D axial rope, a 2-layer MLP projector, Qwen2 text).

The manifest family is `llama`: the language model is a plain Qwen2Model that gets no position ids
from VideoLlama3Model.forward, so its positions are token indices (1D rope), and the shared rope
graph, extend-form decoder layer (`layer.ExtendLayer`; Qwen2's q/k/v biases come with the HF
`q_proj`/`k_proj`/`v_proj` Linear modules), embedding and head graphs are the LLaVA ones. What
differs, in one place:

- the prompt (`prompt_spec`): the video is written frame by frame, `Time {t}s:` before each
  frame's tokens and `,` between frames (HF VideoLlama3Processor.replace_video_token), so the
  manifest sets the per-frame prompt fields `frame_prefix` and `frame_separator` (prompt.py);
- the tiny random-weight model and its tokenizer (`build_tiny`);
- the vision graph: plain normalized frames [F,3,H,W] in, patchified here exactly as the HF
  VideoLLaMA3 video processor lays out `pixel_values_videos` (`patchify`, temporal_patch_size 1),
  then the model's own `get_video_features` on a constant `video_grid_thw` [[F, H/p, W/p]] and
  `video_merge_sizes` [2]: per-frame attention, the bilinear 2x downsampling (`pixel_unshuffle`) and
  the projector. Token compression (the processor's `use_token_compression`, which drops tokens of
  frames that barely change) is OFF: vidflow needs a fixed number of tokens per frame, so every frame
  keeps all its grid_h * grid_w tokens (the processor's all-ones `video_compression_mask`).
"""

import copy
import os

import torch
from tokenizers import Tokenizer
from torch import nn

from . import contract as c
from . import graphs, manifest
from . import tiny
from .hf import load_eager, start_export, text_model
from .manifest import STANDARD_MEAN, STANDARD_STD
from .tiny import qwen2_text_config
from .tokenizer import ENDOFTEXT, IM_END, IM_START

ARCHITECTURE = "VideoLlama3ForConditionalGeneration"
FAMILY = "llama"

# Special tokens of the VideoLLaMA3 (Qwen2) tokenizer that prompts and configs use (ENDOFTEXT, IM_START,
# IM_END: tokenizer.py's ChatML ones); the HF processor's defaults for the image and video tokens.
IMAGE_PAD = "<|image_pad|>"
VIDEO_PAD = "<|video_pad|>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END, IMAGE_PAD, VIDEO_PAD]

# The tiny model: 64x64 frames, 8x8 patches -> 8x8 patches per frame, 4x4 tokens after the 2x2
# downsampling; 4 frames.
TINY_FRAMES = 4
TINY_FRAME = 64
# Defaults for an HF directory whose processor settings fix neither (a real checkpoint): the paper's
# 8 frames of 448x448 (with patch 14 and merge 2: 16x16 tokens per frame).
DEFAULT_FRAMES = 8
DEFAULT_FRAME = 448
# The VideoLLaMA3 processors' normalisation: manifest.STANDARD_MEAN / _STD.
# The instruction after the options (the reference's multiple-choice template).
INSTRUCTION = "Answer with the option's letter from the given choices directly and only give the best option."


# ---- prompt ------------------------------------------------------------------------------------------


def prompt_spec(video_placeholder: str = VIDEO_PAD) -> dict:
    """The manifest's prompt spec (keys in manifest order; the frame fields last, only the non-empty).

    The reference's VideoLLaMA3 conversation (Map the Flow, byminji/map-the-flow): no system turn;
    the user turn `<|im_start|>user\\n` + the video + `\\n` + the instruction + `<|im_end|>\\n`, then
    `<|im_start|>assistant\\n`. The video is frame by frame as HF's VideoLlama3Processor writes it:
    `Time {t:.1f}s:` + the frame's video tokens, frames joined by `,` (frame_prefix "Time {t}s:",
    frame_separator ","; no suffix). The instruction is `Question: {question}\\nOptions:\\n` + one
    line `(A) text` per option, each ending with `\\n`, then "Answer with the option's letter from
    the given choices directly and only give the best option." The model answers with the bare
    letter, so `answer_prefix` is empty."""
    return {
        "system": "",
        "user_prefix": f"{IM_START}user\n",
        "video_placeholder": video_placeholder,
        "after_video": "\n",
        "question_prefix": "Question: ",
        "options_header": "\nOptions:\n",
        "option_format": "({label}) {text}",
        "option_separator": "\n",
        "option_labels": list("ABCDEFGH"),
        "instruction": "\n" + INSTRUCTION,
        "assistant_prefix": f"{IM_END}\n{IM_START}assistant\n",
        "answer_prefix": "",
        "frame_prefix": "Time {t}s:",
        "frame_separator": ",",
    }


# ---- the tiny model ------------------------------------------------------------------------------------


def tiny_config(vocab_size: int, ids: dict):
    """Text (Qwen2): hidden 64, 4 layers, 4 heads / 2 KV heads (head_dim 16), rope_theta 10000.
    Vision: hidden 32, 2 layers, 2 heads (head_dim 16, axial rope), patch 8."""
    from transformers import VideoLlama3Config

    text = qwen2_text_config(vocab_size, eos_id=ids[IM_END], pad_id=ids[ENDOFTEXT])
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        patch_size=8,
    )
    return VideoLlama3Config(
        text_config=text,
        vision_config=vision,
        image_token_id=ids[IMAGE_PAD],
        video_token_id=ids[VIDEO_PAD],
        tie_word_embeddings=False,
    )


def tiny_processor_settings() -> dict:
    """HF VideoLLaMA3 video processor settings of the tiny model: 4 frames of a fixed 64x64 (min
    pixels = max pixels per frame; the processor divides `longest_edge` by the frame count),
    bicubic, the standard 0.5 normalisation, patch 8, merge 2, no token compression."""
    pixels = TINY_FRAME * TINY_FRAME
    return tiny.processor_settings("VideoLlama3VideoProcessor",
                                   {"shortest_edge": pixels, "longest_edge": pixels * TINY_FRAMES},
                                   STANDARD_MEAN, STANDARD_STD, patch_size=8, temporal_patch_size=1, merge_size=2,
                                   num_frames=TINY_FRAMES, use_token_compression=False)


def build_tiny(out_dir: str, seed: int = 0):
    """Writes the tiny VideoLLaMA3, its tokenizer and video processor settings to `out_dir`."""
    from transformers import VideoLlama3ForConditionalGeneration

    # The vision encoder's LayerNorms are `layer_norm1/2` and `post_layernorm` ("norm" in their names).
    tok, model = tiny.chatml_model(VideoLlama3ForConditionalGeneration, tiny_config, prompt_spec(), SPECIAL_TOKENS,
                                   seed, num_frames=TINY_FRAMES)
    tiny.save_chatml(out_dir, model, tok, tiny_processor_settings(), {"video_token": VIDEO_PAD, "image_token": IMAGE_PAD})
    return model


def load(hf_dir: str):
    """Loads a VideoLlama3ForConditionalGeneration (hf.load_eager)."""
    from transformers import VideoLlama3ForConditionalGeneration

    return load_eager(VideoLlama3ForConditionalGeneration, hf_dir)


# ---- frames -> the vision tower's input ----------------------------------------------------------------

MERGE_SIZE = 2  # the processor's merge_size for video (2x2 tokens -> 1 after the downsampling)


def patchify(pixel_values: torch.Tensor, patch_size: int, merge_size: int = MERGE_SIZE) -> torch.Tensor:
    """[F,C,H,W] frames -> [F*gh*gw, C*p*p] patches in the HF VideoLLaMA3 video processor's layout
    (gh, gw in patches; temporal_patch_size 1): per frame, merge blocks in raster order, the patches
    of a block in raster order; each patch flattened as (C, p, p)."""
    F, C, H, W = pixel_values.shape
    p, m = patch_size, merge_size
    gh, gw = H // p, W // p
    x = pixel_values.reshape(F, C, gh // m, m, p, gw // m, m, p)
    # (frame, C, block row, row in block, y, block col, col in block, x)
    #   -> (frame, block row, block col, row in block, col in block, C, y, x)
    x = x.permute(0, 2, 5, 3, 6, 1, 4, 7)
    return x.reshape(F * gh * gw, C * p * p)


def grid_thw(vision_config, frames: int, height: int, width: int) -> torch.Tensor:
    """`video_grid_thw` [[frames, H/p, W/p]] of one video (in patches, before the downsampling)."""
    p = vision_config.patch_size
    return torch.tensor([[frames, height // p, width // p]], dtype=torch.int64)


def merge_sizes() -> torch.Tensor:
    """`video_merge_sizes` of one video."""
    return torch.tensor([MERGE_SIZE], dtype=torch.int64)


def check_frame_size(vision_config, height: int, width: int) -> None:
    factor = vision_config.patch_size * MERGE_SIZE
    if height % factor or width % factor or height <= 0 or width <= 0:
        raise ValueError(f"frame {height}x{width}: both sides must be positive multiples of patch_size x "
                         f"merge_size = {factor}")


@torch.no_grad()
def video_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """The golden's video embeddings: frames [F,3,H,W] -> [F*gh*gw, D] (frame-major, then row, then
    column) through `patchify` and the HF model's own get_video_features (no token compression)."""
    vcfg = model.config.vision_config
    F, _, H, W = pixel_values.shape
    flat = patchify(pixel_values, vcfg.patch_size)
    out = model.model.get_video_features(flat, grid_thw(vcfg, F, H, W), merge_sizes(), return_dict=True)
    return out.pooler_output[0]


class VisionGraph(nn.Module):
    """pixel_values [F,3,H,W] -> video_embeds [F*gh*gw, D] (gh, gw after the 2x downsampling).

    Only for the fixed F, H, W it is built with: the grid, the per-frame attention split and the
    downsampling size are constants of the traced graph. Its axes stay symbolic
    (contract.VISION_AXES), but another frame count or size gives wrong results or a runtime error."""

    def __init__(self, model, frames: int, height: int, width: int, dtype=torch.float32):
        super().__init__()
        vcfg = model.config.vision_config
        check_frame_size(vcfg, height, width)
        inner = model.model
        # A shallow copy of the multimodal model that holds only the vision parts (in `dtype`).
        shell = copy.copy(inner)
        shell._modules = {name: graphs.to_dtype(inner._modules[name], dtype) for name in ("vision_model", "projector")}
        shell._parameters = {}
        shell._buffers = {}
        self.model = shell
        self.patch_size = vcfg.patch_size
        self.register_buffer("grid_thw", grid_thw(vcfg, frames, height, width), persistent=False)
        self.register_buffer("merge_sizes", merge_sizes(), persistent=False)

    def forward(self, pixel_values):
        dt = self.model.projector.readout[0].weight.dtype
        flat = patchify(pixel_values, self.patch_size).to(dt)
        out = self.model.get_video_features(flat, self.grid_thw, self.merge_sizes, return_dict=True)
        return out.pooler_output[0].float()


# ---- manifest -----------------------------------------------------------------------------------------


def frame_size(processor: dict) -> tuple[int, int]:
    """The fixed frame size: the processor's when it pins one (size height/width, or a square whose
    pixels are both the minimum and the per-frame maximum, longest_edge / num_frames), else
    DEFAULT_FRAME square."""
    import math

    size = processor.get("size") or {}
    if "height" in size and "width" in size:
        return int(size["height"]), int(size["width"])
    lo = size.get("shortest_edge", processor.get("min_pixels"))
    hi = size.get("longest_edge", processor.get("max_pixels"))
    frames = processor.get("num_frames")
    if lo is not None and hi is not None and frames:
        per_frame = int(hi) // int(frames)
        if int(lo) == per_frame and math.isqrt(per_frame) ** 2 == per_frame:
            side = math.isqrt(per_frame)
            return side, side
    return DEFAULT_FRAME, DEFAULT_FRAME


def tokens_per_frame(model_config, height: int, width: int) -> int:
    """Video tokens per frame after the 2x2 downsampling."""
    side = model_config.vision_config.patch_size * MERGE_SIZE
    return (height // side) * (width // side)


def video_section(model_config, processor: dict, frames: int, height: int, width: int) -> dict:
    vcfg = model_config.vision_config
    check_frame_size(vcfg, height, width)
    tokens = vcfg.patch_size * MERGE_SIZE
    return manifest.video_spec(processor, frames, height, width, height // tokens, width // tokens, STANDARD_MEAN,
                               STANDARD_STD)


def special_ids(tok: Tokenizer, model) -> dict:
    """Video placeholder from the config; no BOS (Qwen2 prepends none); EOS `<|im_end|>` (the end of
    a turn); pad `<|endoftext|>`."""
    return manifest.chatml_special_ids(tok, model.config.video_token_id, eos=IM_END, pad=ENDOFTEXT)


def package_manifest(model, tok: Tokenizer, processor: dict, name: str, dtype: str,
                     frames: int | None = None) -> dict:
    """The checked manifest of `export_package` (same defaults), without exporting anything."""
    ids = special_ids(tok, model)
    placeholder = manifest.checked_placeholder(tok, ids, text_model(model).config.vocab_size)
    if int(processor.get("temporal_patch_size", 1)) != 1 or int(processor.get("merge_size", MERGE_SIZE)) != MERGE_SIZE:
        raise ValueError("VideoLLaMA3 video packages take temporal_patch_size 1 and merge_size 2")
    num_frames = frames or int(processor.get("num_frames") or DEFAULT_FRAMES)
    height, width = frame_size(processor)
    return manifest.assemble(
        text_model(model).config,
        name=name,
        dtype=dtype,
        family=FAMILY,
        video=video_section(model.config, processor, num_frames, height, width),
        prompt=prompt_spec(placeholder),
        special_ids=ids,
    )


# ---- export -------------------------------------------------------------------------------------------


def export_graphs(model, out_dir: str, frames: int, height: int, width: int, dtype=torch.float32,
                  attention: str = "eager") -> None:
    """Every graph of a VideoLLaMA3 package (float32 master weights in `model`)."""
    pixels = torch.randn(frames, 3, height, width, generator=torch.Generator().manual_seed(0))
    graphs.export_vision(
        VisionGraph(model, frames, height, width, graphs.vision_dtype(dtype)),
        pixels,
        os.path.join(out_dir, c.VISION_FILE),
        # The vision rotary positions and attention spans are constants of the traced frame count,
        # so the graph declares it (vidflow then runs it only on that many frames).
        static_dims={c.VISION_IN_PIXELS: {0: frames},
                     c.VISION_OUT_EMBEDS: {0: frames * tokens_per_frame(model.config, height, width)}},
    )
    graphs.export_text(model, out_dir, dtype, attention)


def export_package(hf_dir: str, out_dir: str, dtype: str = "float32", frames: int | None = None,
                   name: str | None = None, attention: str = "eager") -> dict:
    """Writes every graph, `tokenizer.json` and `model.yaml` to `out_dir`; returns the manifest.

    `frames`: the manifest's video.num_frames (default: the processor's num_frames, else
    DEFAULT_FRAMES); the vision graph is built for exactly that many frames."""
    model, tok, processor = start_export(hf_dir, out_dir, dtype, attention, load)
    m = package_manifest(model, tok, processor, manifest.package_name(name, hf_dir), dtype, frames)
    v = m["video"]
    export_graphs(model, out_dir, v["num_frames"], v["frame_height"], v["frame_width"], graphs.DTYPES[dtype], attention)
    manifest.finish_package(hf_dir, out_dir, m)
    return m
