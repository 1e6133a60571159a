"""transformers' native InternVL family (`InternVLForConditionalGeneration`: InternViT with a CLS
token and absolute position embeddings, pixel shuffle, a LayerNorm + 2-layer MLP projector, Qwen2
text; the `-hf` checkpoints such as InternVL3-1B-hf).

Not the paper's own `InternVLChatModel` checkpoint layout, which `internvl.py` converts.

The manifest family is `llama`: InternVLModel.forward passes no position ids of its own to the
Qwen2 language model, so positions are token indices (1D rope), and the shared rope graph,
extend-form decoder layer (`layer.ExtendLayer`; Qwen2's q/k/v biases come with the HF Linear
modules), embedding and head graphs are the LLaVA ones. What differs, in one place:

- the prompt (`prompt_spec`): HF's InternVLProcessor writes a video frame by frame,
  `Frame{i}: <img>` + the frame's `<IMG_CONTEXT>` tokens + `</img>`, frames joined by `\\n`
  (processing_internvl.py `replace_video_token`), so the manifest sets the per-frame prompt fields
  `frame_prefix`, `frame_suffix` and `frame_separator` (prompt.py); the placeholder is the image
  token `<IMG_CONTEXT>` (the model scatters every video frame into image-token positions);
- the tiny random-weight model and its tokenizer (`build_tiny`);
- the vision graph: normalized frames [F,3,H,W] in, each frame one image tile (the processor does
  no dynamic tiling for video), through the model's own `get_image_features` (vision feature layer,
  CLS drop, pixel shuffle by downsample_ratio, projector), flattened frame-major to [F*h*w, D].
  Every frame is encoded on its own (the frame axis is a batch axis), so the graph keeps F dynamic.
"""

import copy
import json
import os

import torch
from tokenizers import Tokenizer
from torch import nn

from . import contract as c
from . import graphs, manifest
from . import tiny
from .hf import load_eager, start_export, text_model
from .manifest import IMAGENET_MEAN, IMAGENET_STD
from .tiny import qwen2_text_config
from .tokenizer import ENDOFTEXT, IM_END, IM_START

ARCHITECTURE = "InternVLForConditionalGeneration"
FAMILY = "llama"

# Special tokens of the InternVL (Qwen2.5-based) `-hf` tokenizer that prompts and configs use: the
# tokenizer's `start_image_token`, `end_image_token`, `context_image_token` (the processor's
# image_token, config.image_token_id) and `video_token` (the chat template's video placeholder,
# which the processor replaces by the frames; never in a rendered prompt); ENDOFTEXT, IM_START, IM_END
# are tokenizer.py's ChatML ones.
IMG_START = "<img>"
IMG_END = "</img>"
IMG_CONTEXT = "<IMG_CONTEXT>"
VIDEO = "<video>"
SPECIAL_TOKENS = [ENDOFTEXT, IM_START, IM_END, IMG_START, IMG_END, IMG_CONTEXT, VIDEO]
TOKENIZER_EXTRA = {"start_image_token": IMG_START, "end_image_token": IMG_END,
                   "context_image_token": IMG_CONTEXT, "video_token": VIDEO}

# InternVL's default system message (the `internvl2_5` conversation template of InternVL2.5 / InternVL3,
# which the original model's `chat` always writes).
SYSTEM_MESSAGE = ("你是书生·万象，英文名是InternVL，是由上海人工智能实验室、清华大学及多家合作单位联合开发的"
                  "多模态大语言模型。")

# The tiny model: 64x64 frames, patch 8 -> 8x8 patches, pixel shuffle 0.5 -> 4x4 tokens per frame; 4 frames.
TINY_FRAMES = 4
TINY_FRAME = 64
# Defaults for an HF directory whose video processor settings name no frame count (a real checkpoint).
DEFAULT_FRAMES = 8
# InternVL's normalisation (its -hf image and video processor configs): manifest.IMAGENET_MEAN / _STD.
PROCESSOR_FILE = "processor_config.json"
INSTRUCTION = "Answer with the option letter only."


# ---- prompt ------------------------------------------------------------------------------------------


def prompt_spec(video_placeholder: str = IMG_CONTEXT) -> dict:
    """The manifest's prompt spec (keys in manifest order; the frame fields last, only the non-empty).

    The turns are InternVL3's chat format (Qwen2 `<|im_start|>`/`<|im_end|>`) with InternVL's
    default system message as the original model's conversation template writes it; HF's `-hf`
    chat template adds no system turn of its own, so with it a caller passes the system message
    explicitly. The user turn is the video first (HF's template writes `<video>\\n`, which the
    processor replaces by the frames: `Frame{i}: <img>` + the frame's tokens + `</img>`, joined by
    `\\n`), then lmms-eval's TVBench task format (as qwen2_5_vl.prompt_spec): the question, one line
    `A. text` per option, then "Answer with the option letter only." on its own line. The model
    answers with the bare letter, so `answer_prefix` is empty."""
    return {
        "system": f"{IM_START}system\n{SYSTEM_MESSAGE}{IM_END}\n",
        "user_prefix": f"{IM_START}user\n",
        "video_placeholder": video_placeholder,
        "after_video": "\n",
        "question_prefix": "",
        "options_header": "\n",
        "option_format": "{label}. {text}",
        "option_separator": "\n",
        "option_labels": list("ABCDEFGH"),
        "instruction": "\n" + INSTRUCTION,
        "assistant_prefix": f"{IM_END}\n{IM_START}assistant\n",
        "answer_prefix": "",
        "frame_prefix": "Frame{i}: " + IMG_START,
        "frame_suffix": IMG_END,
        "frame_separator": "\n",
    }


# ---- the tiny model ------------------------------------------------------------------------------------


def tiny_config(vocab_size: int, ids: dict):
    """Text (Qwen2): hidden 64, 4 layers, 4 heads / 2 KV heads (head_dim 16), rope_theta 10000.
    Vision (InternViT): hidden 32, 2 layers, 2 heads, q/k/v biases, image 64, patch 8; pixel shuffle
    0.5 -> 16 tokens per frame of 4 * 32 channels into the projector."""
    from transformers import InternVLConfig

    text = qwen2_text_config(vocab_size, eos_id=ids[IM_END], pad_id=ids[ENDOFTEXT])
    vision = dict(
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        attention_bias=True,
        image_size=TINY_FRAME,
        patch_size=8,
    )
    tokens = (TINY_FRAME // 8 // 2) ** 2
    return InternVLConfig(
        text_config=text,
        vision_config=vision,
        image_token_id=ids[IMG_CONTEXT],
        image_seq_length=tokens,
        downsample_ratio=0.5,
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=False,
    )


def tiny_processor_settings() -> dict:
    """HF InternVL video processor settings of the tiny model: frames resized to a fixed 64x64
    (bicubic), ImageNet normalisation, 4 frames."""
    return tiny.processor_settings("InternVLVideoProcessor", {"height": TINY_FRAME, "width": TINY_FRAME},
                                   IMAGENET_MEAN, IMAGENET_STD, do_convert_rgb=True, num_frames=TINY_FRAMES,
                                   initial_shift=True)


def build_tiny(out_dir: str, seed: int = 0):
    """Writes the tiny InternVL, its tokenizer, video processor and processor settings to `out_dir`."""
    from transformers import InternVLForConditionalGeneration

    # LayerNorms: `layernorm_before/after`, the projector's `layer_norm`. The CLS token and the
    # position embeddings are made to matter too, and the layer scales `lambda_1/2` are near 1
    # instead of HF's 0.1.
    tok, model = tiny.chatml_model(InternVLForConditionalGeneration, tiny_config, prompt_spec(), SPECIAL_TOKENS, seed,
                                   num_frames=TINY_FRAMES)
    with torch.no_grad():
        g = torch.Generator().manual_seed(seed + 2)
        emb = model.model.vision_tower.embeddings
        emb.position_embeddings.copy_(0.5 * torch.randn(emb.position_embeddings.shape, generator=g))
        emb.cls_token.copy_(torch.randn(emb.cls_token.shape, generator=g))
        for layer in model.model.vision_tower.encoder.layer:
            for p in (layer.lambda_1, layer.lambda_2):
                p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
    tiny.save_chatml(out_dir, model, tok, tiny_processor_settings(), TOKENIZER_EXTRA)
    with open(os.path.join(out_dir, PROCESSOR_FILE), "w") as f:
        json.dump({"processor_class": "InternVLProcessor", "image_seq_length": model.config.image_seq_length}, f, indent=2)
    return model


def load(hf_dir: str):
    """Loads an InternVLForConditionalGeneration (hf.load_eager)."""
    from transformers import InternVLForConditionalGeneration

    return load_eager(InternVLForConditionalGeneration, hf_dir)


# ---- frames -> video embeddings ------------------------------------------------------------------------


def image_size(vision_config) -> tuple[int, int]:
    """The vision tower's tile (height, width)."""
    size = vision_config.image_size
    return (int(size[0]), int(size[1])) if isinstance(size, (list, tuple)) else (int(size), int(size))


def patch_size(vision_config) -> tuple[int, int]:
    p = vision_config.patch_size
    return (int(p[0]), int(p[1])) if isinstance(p, (list, tuple)) else (int(p), int(p))


def grid(model_config) -> tuple[int, int]:
    """(grid_h, grid_w): tokens per frame side after the pixel shuffle."""
    vcfg = model_config.vision_config
    (h, w), (ph, pw) = image_size(vcfg), patch_size(vcfg)
    r = float(model_config.downsample_ratio)
    return int(h // ph * r), int(w // pw * r)


def tokens_per_frame(model_config) -> int:
    gh, gw = grid(model_config)
    return gh * gw


def check_model(model_config) -> None:
    """What the package needs of the config: square tiles whose patch grid the pixel shuffle divides,
    image_seq_length equal to the tokens per tile (the processor writes that many per frame)."""
    vcfg = model_config.vision_config
    (h, w), (ph, pw) = image_size(vcfg), patch_size(vcfg)
    r = float(model_config.downsample_ratio)
    if h != w or ph != pw or h % ph:
        raise ValueError(f"InternVL packages take square tiles of whole patches, not {h}x{w} / patch {ph}x{pw}")
    if (h // ph) * r != int((h // ph) * r):
        raise ValueError(f"downsample_ratio {r} does not divide the {h // ph}x{w // pw} patch grid")
    n = tokens_per_frame(model_config)
    if int(model_config.image_seq_length) != n:
        raise ValueError(f"image_seq_length {model_config.image_seq_length} is not the {n} tokens per tile")


@torch.no_grad()
def video_features(model, pixel_values: torch.Tensor) -> torch.Tensor:
    """The golden's video embeddings: frames [F,3,H,W] (each one tile) -> [F*h*w, D], frame-major,
    then row, then column, through the HF model's own get_image_features."""
    out = model.model.get_image_features(pixel_values=pixel_values, return_dict=True)
    return out.pooler_output.flatten(0, 1)


class VisionGraph(nn.Module):
    """pixel_values [F,3,H,W] -> video_embeds [F*h*w, D] through the model's own get_image_features
    (frames as a batch of single-tile images; F free)."""

    def __init__(self, model, dtype=torch.float32):
        super().__init__()
        inner = model.model
        # A shallow copy of the multimodal model that holds only the vision parts (in `dtype`).
        shell = copy.copy(inner)
        shell._modules = {name: graphs.to_dtype(inner._modules[name], dtype)
                          for name in ("vision_tower", "multi_modal_projector")}
        shell._parameters = {}
        shell._buffers = {}
        self.model = shell

    def forward(self, pixel_values):
        dt = self.model.multi_modal_projector.linear_1.weight.dtype
        out = self.model.get_image_features(pixel_values=pixel_values.to(dt), return_dict=True)
        return out.pooler_output.flatten(0, 1).float()


# ---- manifest -----------------------------------------------------------------------------------------


def frame_size(model_config, processor: dict) -> tuple[int, int]:
    """The fixed frame size: the vision tower's tile; the processor's resize size must agree when it
    names one."""
    h, w = image_size(model_config.vision_config)
    size = processor.get("size") or {}
    if "height" in size and "width" in size and (int(size["height"]), int(size["width"])) != (h, w):
        raise ValueError(f"the video processor resizes to {size['height']}x{size['width']}, the vision tower "
                         f"takes {h}x{w} tiles")
    return h, w


def video_section(model_config, processor: dict, frames: int) -> dict:
    check_model(model_config)
    height, width = frame_size(model_config, processor)
    gh, gw = grid(model_config)
    return manifest.video_spec(processor, frames, height, width, gh, gw, IMAGENET_MEAN, IMAGENET_STD)


def special_ids(tok: Tokenizer, model) -> dict:
    """Video placeholder: the image token of the config (`<IMG_CONTEXT>`); no BOS (Qwen2 prepends
    none); EOS `<|im_end|>` (the end of a turn); pad `<|endoftext|>`."""
    return manifest.chatml_special_ids(tok, model.config.image_token_id, eos=IM_END, pad=ENDOFTEXT)


def package_manifest(model, tok: Tokenizer, processor: dict, name: str, dtype: str,
                     frames: int | None = None) -> dict:
    """The checked manifest of `export_package` (same defaults), without exporting anything."""
    ids = special_ids(tok, model)
    placeholder = manifest.checked_placeholder(tok, ids, text_model(model).config.vocab_size, what="image")
    for token in (IMG_START, IMG_END):
        if tok.token_to_id(token) is None or len(tok.encode(token, add_special_tokens=False).ids) != 1:
            raise ValueError(f"the tokenizer has no single {token} token")
    num_frames = frames or int(processor.get("num_frames") or DEFAULT_FRAMES)
    return manifest.assemble(
        text_model(model).config,
        name=name,
        dtype=dtype,
        family=FAMILY,
        video=video_section(model.config, processor, num_frames),
        prompt=prompt_spec(placeholder),
        special_ids=ids,
    )


# ---- export -------------------------------------------------------------------------------------------


def export_graphs(model, out_dir: str, height: int, width: int, dtype=torch.float32, attention: str = "eager") -> None:
    """Every graph of an InternVL package (float32 master weights in `model`)."""
    pixels = torch.randn(graphs.TRACE_F, 3, height, width, generator=torch.Generator().manual_seed(0))
    graphs.export_vision(VisionGraph(model, graphs.vision_dtype(dtype)), pixels, os.path.join(out_dir, c.VISION_FILE))
    graphs.export_text(model, out_dir, dtype, attention)


def export_package(hf_dir: str, out_dir: str, dtype: str = "float32", frames: int | None = None,
                   name: str | None = None, attention: str = "eager") -> dict:
    """Writes every graph, `tokenizer.json` and `model.yaml` to `out_dir`; returns the manifest.

    `frames`: the manifest's video.num_frames (default: the video processor's num_frames, else
    DEFAULT_FRAMES); the vision graph takes any frame count."""
    model, tok, processor = start_export(hf_dir, out_dir, dtype, attention, load)
    m = package_manifest(model, tok, processor, manifest.package_name(name, hf_dir), dtype, frames)
    v = m["video"]
    export_graphs(model, out_dir, v["frame_height"], v["frame_width"], graphs.DTYPES[dtype], attention)
    manifest.finish_package(hf_dir, out_dir, m)
    return m
