"""The LLaVA-OneVision family (`LlavaOnevisionForConditionalGeneration`: SigLIP vision, Qwen2 text).

The manifest family is `llama`: Qwen2's rotary embedding takes token-index positions [B,T], so the
shared rope graph, the shared extend-form decoder layer (`layer.ExtendLayer`; Qwen2's q/k/v biases
come with the HF `q_proj`/`k_proj`/`v_proj` Linear modules), the embedding and the three heads are
the LLaVA-NeXT-Video ones. What differs, in one place:

- the prompt: the `qwen_1_5` conversation of the LLaVA-NeXT repo around lmms-eval's TVBench question
  format (`prompt_spec`);
- the tiny random-weight model and its tokenizer (`build_tiny`);
- the vision graph: frames [F,3,H,W] through the model's own `get_video_features`: the SigLIP tower's
  hidden state at `vision_feature_layer` (strategy `full`: every patch, SigLIP has no CLS token), the
  projector, the model's 2x bilinear pooling per frame, and ONE `image_newline` embedding that the
  model appends after the last frame (transformers 5.23; the original code's `mm_newline_position
  = "one_token"`). The manifest declares that embedding as `video.trailing_tokens: 1`: part of the
  video, of no frame.
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
from .manifest import STANDARD_MEAN as SIGLIP_MEAN
from .manifest import STANDARD_STD as SIGLIP_STD
from .tiny import qwen2_text_config
from .tokenizer import ENDOFTEXT, IM_END, IM_START

ARCHITECTURE = "LlavaOnevisionForConditionalGeneration"
FAMILY = "llama"

# Special tokens of the LLaVA-OneVision (Qwen2) tokenizer that prompts and configs use (ENDOFTEXT,
# IM_START, IM_END: tokenizer.py's ChatML ones).
IMAGE = "<image>"
VIDEO = "<video>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END, IMAGE, VIDEO]

# The tiny model: 64x64 frames, 8x8 patches -> 8x8 SigLIP tokens, pooled to 4x4 = 16 per frame; 4 frames.
TINY_FRAMES = 4
TINY_FRAME = 64
# Frames per video for an HF directory whose processor settings fix none (a real checkpoint): lmms-eval's
# llava_onevision default `max_frames_num`.
DEFAULT_FRAMES = 32
# SigLIP's normalisation (the original LLaVA-OneVision image processor and the llava-hf checkpoints'
# processor configs; manifest.STANDARD_MEAN / _STD); used when the processor settings name none.


# ---- prompt ------------------------------------------------------------------------------------------


def prompt_spec(video_placeholder: str = VIDEO) -> dict:
    """The manifest's prompt spec (keys in manifest order).

    The turn structure is the LLaVA-NeXT repo's `conv_qwen` ("qwen_1_5", llava/conversation.py,
    SeparatorStyle.CHATML: `system + sep + "\\n"`, then `role + "\\n" + message + sep + "\\n"` per
    turn and `role + "\\n"` for the open assistant turn, sep `<|im_end|>`), as lmms-eval's
    llava_onevision model uses it (lmms_eval/models/llava_onevision.py: the visual token, "\\n", then
    the task's text as the user message). The visual token is the HF checkpoint's `<video>` (its
    video_token_index), one token that the video embeddings replace. The user text is lmms-eval's
    TVBench task format (lmms_eval/tasks/tvbench/utils.py `tvbench_doc_to_text`,
    _default_template_yaml): the question, one line `A. text` per option, then the default
    post_prompt "Answer with the option letter only." on its own line, as in qwen2_5_vl.prompt_spec.
    The model answers with the letter itself, so `answer_prefix` is empty."""
    return {
        "system": f"{IM_START}system\nYou are a helpful assistant.{IM_END}\n",
        "user_prefix": f"{IM_START}user\n",
        "video_placeholder": video_placeholder,
        "after_video": "\n",
        "question_prefix": "",
        "options_header": "\n",
        "option_format": "{label}. {text}",
        "option_separator": "\n",
        "option_labels": list("ABCDEFGH"),
        "instruction": "\nAnswer with the option letter only.",
        "assistant_prefix": f"{IM_END}\n{IM_START}assistant\n",
        "answer_prefix": "",
    }


# ---- the tiny model ------------------------------------------------------------------------------------


def tiny_config(vocab_size: int, ids: dict):
    """Text (Qwen2): hidden 64, 4 layers, 4 heads / 2 KV heads (head_dim 16), rope_theta 10000.
    Vision (SigLIP): 64x64 images, patch 8, hidden 32, 2 layers, 2 heads, no pooling head.
    vision_feature_layer -1 and strategy `full`, as llava-hf/llava-onevision-qwen2-7b-ov-hf (whose
    26-layer SigLIP is the original tower with its last layer removed)."""
    from transformers import LlavaOnevisionConfig

    text = qwen2_text_config(vocab_size, eos_id=ids[IM_END], pad_id=ids[ENDOFTEXT])
    vision = dict(
        model_type="siglip_vision_model",
        image_size=TINY_FRAME,
        patch_size=8,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        vision_use_head=False,
    )
    return LlavaOnevisionConfig(
        text_config=text,
        vision_config=vision,
        image_token_index=ids[IMAGE],
        video_token_index=ids[VIDEO],
        vision_feature_layer=-1,
        vision_feature_select_strategy="full",
        image_grid_pinpoints=[[TINY_FRAME, TINY_FRAME]],
        tie_word_embeddings=False,
    )


def tiny_processor_settings() -> dict:
    """HF LLaVA-OneVision video processor settings of the tiny model: a 64x64 stretch resize,
    bicubic, SigLIP normalisation, 4 frames."""
    return tiny.processor_settings("LlavaOnevisionVideoProcessor", {"height": TINY_FRAME, "width": TINY_FRAME},
                                   SIGLIP_MEAN, SIGLIP_STD, num_frames=TINY_FRAMES)


def build_tiny(out_dir: str, seed: int = 0):
    """Writes the tiny LLaVA-OneVision, its tokenizer and video processor settings to `out_dir`."""
    from transformers import LlavaOnevisionForConditionalGeneration

    # The newline embedding must matter too: image_newline is a vector, N(0, 0.1^2) like the biases,
    # then scaled to the typical size of a video embedding below.
    tok, model = tiny.chatml_model(LlavaOnevisionForConditionalGeneration, tiny_config, prompt_spec(), SPECIAL_TOKENS,
                                   seed)
    with torch.no_grad():
        frames = torch.randn(1, TINY_FRAMES, 3, TINY_FRAME, TINY_FRAME, generator=torch.Generator().manual_seed(seed))
        feats = model.model.get_video_features(frames, return_dict=True).pooler_output[0, :-1]
        newline = model.model.image_newline
        newline.mul_(feats.norm(dim=-1).mean() / newline.norm())
    tiny.save_chatml(out_dir, model, tok, tiny_processor_settings(), {"video_token": VIDEO, "image_token": IMAGE})
    return model


def load(hf_dir: str):
    """Loads a LlavaOnevisionForConditionalGeneration (hf.load_eager)."""
    from transformers import LlavaOnevisionForConditionalGeneration

    return load_eager(LlavaOnevisionForConditionalGeneration, hf_dir)


# ---- vision -----------------------------------------------------------------------------------------


def grid_size(vision_config) -> int:
    """Tokens per frame side after the model's pooling: ceil(patches / 2) (`apply_pooling`)."""
    patches = vision_config.image_size // vision_config.patch_size
    return -(-patches // 2)


@torch.no_grad()
def video_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """Frames [F,3,H,W] -> [F*grid*grid + 1, D]: the HF model's own get_video_features on one video
    (the frames' pooled tokens, frame-major then row then column, then the newline)."""
    return model.model.get_video_features(pixel_values[None], return_dict=True).pooler_output[0]


def trailing_tokens(model) -> int:
    """Embeddings get_video_features appends after the last frame, measured on a 2-frame video (1:
    the newline)."""
    vcfg = model.config.vision_config
    frames = torch.zeros(2, 3, vcfg.image_size, vcfg.image_size)
    n = video_features(model, frames).shape[0] - 2 * grid_size(vcfg) ** 2
    if n < 0:
        raise AssertionError(f"get_video_features gave {n + 2 * grid_size(vcfg) ** 2} embeddings for 2 frames")
    return n


class VisionGraph(nn.Module):
    """pixel_values [F,3,H,W] -> video_embeds [F*grid_h*grid_w + 1, D] through the model's own
    get_video_features (frame-major, then row, then column; the newline last). F is free; H and W
    must be the tower's image_size (the pooling reshapes to image_size / patch_size patches)."""

    def __init__(self, model, dtype=torch.float32):
        super().__init__()
        inner = model.model
        # A shallow copy of the multimodal model that holds only the vision parts (in `dtype`).
        shell = copy.copy(inner)
        shell._modules = {name: graphs.to_dtype(inner._modules[name], dtype)
                          for name in ("vision_tower", "multi_modal_projector")}
        shell._parameters = {"image_newline": nn.Parameter(inner.image_newline.detach().to(dtype), requires_grad=False)}
        shell._buffers = {}
        self.model = shell

    def forward(self, pixel_values):
        dt = self.model.multi_modal_projector.linear_1.weight.dtype
        out = self.model.get_video_features(pixel_values.unsqueeze(0).to(dt), return_dict=True)
        return out.pooler_output[0].float()


# ---- manifest -----------------------------------------------------------------------------------------


def frame_size(processor: dict, vision_config) -> tuple[int, int]:
    """The frame size: the processor's `size` height/width when it names them, else the tower's
    image_size; either way it must be the tower's image_size."""
    size = processor.get("size") or {}
    side = int(vision_config.image_size)
    hw = (int(size["height"]), int(size["width"])) if "height" in size and "width" in size else (side, side)
    if hw != (side, side):
        raise ValueError(f"video processor frame size {hw[0]}x{hw[1]} is not the vision tower's {side}x{side}")
    return hw


def video_section(model_config, processor: dict, num_frames: int, trailing: int) -> dict:
    """A stretch resize to the tower's size (HF LlavaOnevisionVideoProcessor `size` height/width;
    the original SigLIP processor resizes to (384, 384)), then `trailing_tokens` last."""
    vcfg = model_config.vision_config
    height, width = frame_size(processor, vcfg)
    grid = grid_size(vcfg)
    video = manifest.video_spec(processor, num_frames, height, width, grid, grid, SIGLIP_MEAN, SIGLIP_STD)
    if trailing > 0:
        video["trailing_tokens"] = int(trailing)
    return video


def special_ids(tok: Tokenizer, model) -> dict:
    """Video placeholder from the config; no BOS (Qwen2 prepends none); EOS `<|im_end|>` (the end of
    a turn, the conversation's separator); pad `<|endoftext|>`."""
    return manifest.chatml_special_ids(tok, model.config.video_token_index, eos=IM_END, pad=ENDOFTEXT)


def package_manifest(model, tok: Tokenizer, processor: dict, name: str, dtype: str,
                     frames: int | None = None) -> dict:
    """The checked manifest of `export_package` (same defaults), without exporting anything."""
    ids = special_ids(tok, model)
    placeholder = manifest.checked_placeholder(tok, ids, text_model(model).config.vocab_size)
    num_frames = frames or int(processor.get("num_frames") or DEFAULT_FRAMES)
    return manifest.assemble(
        text_model(model).config,
        name=name,
        dtype=dtype,
        family=FAMILY,
        video=video_section(model.config, processor, num_frames, trailing_tokens(model)),
        prompt=prompt_spec(placeholder),
        special_ids=ids,
    )


# ---- export -------------------------------------------------------------------------------------------


def export_graphs(model, out_dir: str, dtype=torch.float32, attention: str = "eager") -> None:
    """Every graph of a LLaVA-OneVision package (float32 master weights in `model`)."""
    side = model.config.vision_config.image_size
    pixels = torch.randn(graphs.TRACE_F, 3, side, side, generator=torch.Generator().manual_seed(0))
    graphs.export_vision(
        VisionGraph(model, graphs.vision_dtype(dtype)),
        pixels,
        os.path.join(out_dir, c.VISION_FILE),
        # The exporter's shape inference loses the embedding width at the newline's concat.
        static_dims={c.VISION_OUT_EMBEDS: {1: int(model.config.text_config.hidden_size)}},
    )
    graphs.export_text(model, out_dir, dtype, attention)


def export_package(hf_dir: str, out_dir: str, dtype: str = "float32", frames: int | None = None,
                   name: str | None = None, attention: str = "eager") -> dict:
    """Writes every graph, `tokenizer.json` and `model.yaml` to `out_dir`; returns the manifest.

    `frames`: the manifest's video.num_frames (default: the processor's num_frames, else
    DEFAULT_FRAMES); the vision graph itself takes any frame count."""
    model, tok, processor = start_export(hf_dir, out_dir, dtype, attention, load)
    m = package_manifest(model, tok, processor, manifest.package_name(name, hf_dir), dtype, frames)
    export_graphs(model, out_dir, graphs.DTYPES[dtype], attention)
    manifest.finish_package(hf_dir, out_dir, m)
    return m
