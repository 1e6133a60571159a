"""The InternVL family: Mini-InternVL-4B-Video-FT of "Map the Flow" (InternVL in PLLaVA-style code).

Reference read (GitHub byminji/map-the-flow, commit 566f3ed; transformers 4.40 era):
- models/internvl/modeling_internvl_chat.py (`InternVLChatModel`: `extract_feature`, `pixel_shuffle`,
  `mlp1`, `_merge_input_ids_with_image_features`, `forward`), models/internvl/modeling_intern_vit.py
  (`InternVisionModel` and its parts), models/internvl/configuration_internvl_chat.py and
  configuration_intern_vit.py (`InternVLChatConfig`, `InternVisionConfig`, defaults and `to_dict`),
  models/internvl/__init__.py;
- models/phi3/modeling_phi3.py and configuration_phi3.py (the Phi-3 language model the chat model
  builds for `llm_config.architectures == ["Phi3ForCausalLM"]`, incl. `Phi3SuScaledRotaryEmbedding`);
- tasks/eval/model_utils.py (`load_internvl`: tokenizer, image processor, config overrides, weight
  loading), tasks/eval/eval_utils.py (`Conversation`, `conv_eval_mvbench_phi3`), tasks/shared_utils.py
  (the InternVL tokens, IMAGENET_MEAN/STD), tasks/eval/mvbench/pllava_eval_mvbench.py and
  tasks/eval/mvbench/__init__.py (`qa_template`), models/pllava/processing_pllava.py (the processor
  InternVL is run with), scripts/eval/eval_mini_internvl_4b_video_ft_tvbench.sh,
  scripts/analysis/{information_flow,effective_pathway}_analysis_mini_internvl_4b_video_ft.sh,
  analysis/information_flow_analysis.py (prompt building, token ranges), tasks/train/config_internvl.py,
  tasks/train/train.py (`setup_model_internvl`, `save_pretrained` of the whole model).

What the reference does:
- Checkpoint (`InternVLChatModel.state_dict()`): `vision_model.*` (InternViT: embeddings.{class_embedding
  [1,1,Dv], patch_embedding.{weight,bias}, position_embedding [1,N+1,Dv]}, encoder.layers.N.{attn.qkv,
  attn.proj, attn.q_norm/k_norm (only with qk_normalization), mlp.fc1, mlp.fc2, norm1, norm2, ls1, ls2}),
  `mlp1.{0,1,3}.*` (LayerNorm, Linear, [GELU], Linear), `language_model.model.*` and
  `language_model.lm_head.weight` (Phi3ForCausalLM: self_attn.{qkv_proj,o_proj}, mlp.{gate_up_proj,
  down_proj}, input_layernorm, post_attention_layernorm). transformers 5.23's Phi3ForCausalLM has exactly
  these parameter names (no remap; the test checks a reference-layout file loads strictly).
  config.json: model_type "internvl_chat", architectures ["InternVLChatModel"], `InternVLChatConfig.to_dict`
  fields (select_layer, downsample_ratio, ps_version, template, img_context_token_id, pad_token_id,
  num_frames, ...) with nested full `vision_config` / `llm_config` dicts; `read_config` fills in
  `InternVLChatConfig`'s and `InternVisionConfig`'s defaults for keys a file leaves out.
- Video features (`extract_feature`): every frame [T,3,448,448] through InternViT; hidden state
  `select_layer` (-1: last layer; the entries are [embeddings, layer 1, ..., layer N], no final norm);
  CLS dropped; the 32x32 patch grid pixel-shuffled by downsample_ratio 0.5 into 16x16 tokens of 4*Dv
  channels (ps_version "v2": token (i, j) = patches (2i,2j), (2i,2j+1), (2i+1,2j), (2i+1,2j+1)
  concatenated; "v1" leaves the grid transposed); `mlp1`; then frames folded into the sequence,
  frame-major: [1, T*256, D].
- Prompt: ONE `<IMG_CONTEXT>` token (`img_context_token_id`, looked up in the tokenizer at load), which
  `_merge_input_ids_with_image_features` replaces by all T*256 features contiguously (LLaVA-style);
  positions 0..S-1. The analysis takes `image_placeholder_index = torch.where(input_ids ==
  image_token_index)[0].item()` and num_vis = T*16*16 (pooling_shape 8-16-16; InternVL does no pooling,
  pooling_shape only counts tokens). The TVBench eval and the analyses pass `--conv_mode
  eval_mvbench_phi3`: `Conversation(system=SYSTEM_MVBENCH, roles=['<|user|>\\n', '<|assistant|>\\n'],
  sep=[' ', '<|end|>'], mm_token='<img><IMG_CONTEXT></img>\\n', MM_ALONE)` with post_query_prompt
  "\\nOnly give the best option." and answer prompt "Best option:(" (`prompt_spec` renders it).
- Frames: `PllavaProcessor` (short edge >= 448) then CLIPImageProcessor(shortest_edge 448, centre crop
  448, bicubic, 1/255, IMAGENET mean/std); frames sampled at segment middles (8 for the eval).

What differs from transformers' native InternVLForConditionalGeneration: its processor writes
`Frame{i}: <img><IMG_CONTEXT>*256</img>` per frame (one placeholder token per feature, text between
frames); the paper's FT code has one `<IMG_CONTEXT>` between one `<img>` and `</img>` for the whole video
and splices T*256 features there. Its key names also differ (vision_tower.*, multi_modal_projector.*,
split q/k/v). Both use the same pixel shuffle (v2) and projector math (the test checks our modules
against its `get_image_features` with remapped weights).

Package: family `llama` (positions = token index); video.num_frames = T (config.json's num_frames, or
`num_frames=`; the vision graph itself takes any frame count), grid = the pixel-shuffled grid (16x16 for
448 px; 4x4 for the tiny model); the video placeholder `<IMG_CONTEXT>` is one token. Decoder layers are
the shared extend-form layer (layer.py splits Phi-3's fused `qkv_proj`; `Phi3MLP` is used whole).

RoPE: Phi-3-mini-128k's `su`/`longrope` scaling picks short or long factors from the sequence length
(long when max(position_ids)+1 > original_max_position_embeddings = 4096, in the reference and in
transformers 5.23 alike), and scales cos/sin by sqrt(1 + ln(s)/ln(4096)), s = max_position_embeddings /
4096. The rope graph can fix only one choice: it uses the SHORT factors (with that cos/sin scale), which
is what the reference computes for sequences of at most 4096 positions (the paper's prompts are about
2.1k tokens: 8 frames x 256 + text), and the manifest's max_positions is capped at 4096 so that longer
prompts are refused rather than run with the wrong factors. The tiny model has no rope scaling.

Not verified (no checkpoint or hub access here): the released Mini-InternVL-4B-Video-FT files (config
values such as ps_version "v2" / select_layer -1 / force_image_size 448 / rope_scaling, the key names of
the weights, a saved preprocessor_config.json); the tokenizer: the reference uses the slow SentencePiece
Phi-3 tokenizer (`use_fast=False`, `add_eos_token=False`; BOS assumed prepended as LlamaTokenizer does by
default) while the package ships a `tokenizer.json` (fast) that must give the same ids, which depends on
the SentencePiece `legacy` handling of text after `<|user|>`, `</img>` etc.; which token ends
generation (the manifest's eos is llm_config's eos_token_id, `<|endoftext|>`; Phi-3 chat turns end with
`<|end|>`); the two-step PllavaProcessor resize (described as one `shortest_edge_crop`); bfloat16 and
flash-attention numerics of the reference run.
"""

import copy
import json
import math
import os
from types import SimpleNamespace

import torch
import torch.nn.functional as F
from tokenizers import Tokenizer
from torch import nn

from . import contract as c
from . import graphs, manifest, pllava
from . import tokenizer as tk
from .hf import video_processor_settings
from .manifest import IMAGENET_MEAN, IMAGENET_STD
from .pllava import SYSTEM_MVBENCH, load_state_dict, read_raw_config
from .reference_modules import VisionEncoder, VisionMlp, stack_hidden_states

ARCHITECTURE = "InternVLChatModel"
MODEL_TYPE = "internvl_chat"
LLM_ARCHITECTURE = "Phi3ForCausalLM"

# `InternVLChatConfig.__init__` defaults (configuration_internvl_chat.py).
CONFIG_DEFAULTS = {
    "use_backbone_lora": 0,
    "use_llm_lora": 0,
    "pad2square": False,
    "select_layer": -1,
    "force_image_size": None,
    "downsample_ratio": 0.5,
    "template": None,
    "dynamic_image_size": False,
    "use_thumbnail": False,
    "ps_version": "v1",
    "min_dynamic_patch": 1,
    "max_dynamic_patch": 6,
    "img_context_token_id": None,
    "pad_token_id": 0,
    "ignore_index": -100,
    "num_frames": 1,
    "force_eager": False,
}
# `InternVisionConfig.__init__` defaults (configuration_intern_vit.py).
VISION_DEFAULTS = {
    "num_channels": 3,
    "patch_size": 14,
    "image_size": 224,
    "qkv_bias": False,
    "hidden_size": 3200,
    "num_attention_heads": 25,
    "intermediate_size": 12800,
    "qk_normalization": True,
    "num_hidden_layers": 48,
    "use_flash_attn": True,
    "hidden_act": "gelu",
    "norm_type": "rms_norm",
    "layer_norm_eps": 1e-6,
    "dropout": 0.0,
    "drop_path_rate": 0.0,
    "attention_dropout": 0.0,
    "initializer_range": 0.02,
    "initializer_factor": 0.1,
}
# The reference Phi3Config's arguments (models/phi3/configuration_phi3.py); every other key of a saved
# llm_config (PretrainedConfig bookkeeping, auto_map, generation defaults, ...) is left out.
PHI3_KEYS = (
    "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
    "num_key_value_heads", "resid_pdrop", "embd_pdrop", "attention_dropout", "hidden_act",
    "max_position_embeddings", "original_max_position_embeddings", "initializer_range", "rms_norm_eps",
    "use_cache", "tie_word_embeddings", "rope_theta", "rope_scaling", "bos_token_id", "eos_token_id",
    "pad_token_id", "sliding_window",
)

# tasks/shared_utils.py
IMG_CONTEXT = "<IMG_CONTEXT>"
IMG_START = "<img>"
IMG_END = "</img>"
# IMAGENET_MEAN / _STD: manifest's.
# Phi-3 chat tokens used by `conv_eval_mvbench_phi3`.
USER = "<|user|>"
ASSISTANT = "<|assistant|>"
END = "<|end|>"
ENDOFTEXT = "<|endoftext|>"
# The tiny tokenizer's special tokens: <unk> 0, <s> 1, </s> 2 as in Phi-3's vocabulary, then the rest.
UNK, BOS, EOS = "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = [UNK, BOS, EOS, ENDOFTEXT, ASSISTANT, END, USER, IMG_START, IMG_END, IMG_CONTEXT]

PREPROCESSOR_FILE = "preprocessor_config.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


# ---- prompt ------------------------------------------------------------------------------------------


def prompt_spec(video_placeholder: str = IMG_CONTEXT) -> dict:
    """The manifest's prompt spec (keys in manifest order): `conv_eval_mvbench_phi3` as the TVBench eval
    and the analysis scripts use it. `Conversation.get_prompt` gives
    `system + " " + "<|user|>\\n" + "<img><IMG_CONTEXT></img>\\n" + " " + "<|user|>\\n" + query + " "
    + "<|assistant|>\\n" + "Best option:("` with query = `qa_template`'s "Question: {q}\\nOptions:\\n(A)
    a\\n(B) b" (trailing newline stripped) + " " + "\\nOnly give the best option."; `<img>` and `</img>`
    stay text tokens around the one placeholder. The tokenizer adds BOS (the manifest's bos_token_id)."""
    return {
        "system": SYSTEM_MVBENCH,
        "user_prefix": f" {USER}\n{IMG_START}",
        "video_placeholder": video_placeholder,
        "after_video": f"{IMG_END}\n {USER}\n",
        "question_prefix": "Question: ",
        "options_header": "\nOptions:\n",
        "option_format": "({label}) {text}",
        "option_separator": "\n",
        "option_labels": list("ABCDEFGH"),
        "instruction": " \nOnly give the best option.",
        "assistant_prefix": f" {ASSISTANT}\n",
        "answer_prefix": "Best option:(",
    }


# ---- config ------------------------------------------------------------------------------------------


def read_config(ckpt_dir: str) -> dict:
    """config.json with `InternVLChatConfig`'s defaults filled in; `vision_config` with
    `InternVisionConfig`'s defaults; `llm_config` as written."""
    raw = read_raw_config(ckpt_dir, ARCHITECTURE)
    cfg = {**CONFIG_DEFAULTS, **raw}
    cfg["vision_config"] = {**VISION_DEFAULTS, **(raw.get("vision_config") or {})}
    cfg["llm_config"] = dict(raw.get("llm_config") or {})
    llm_arch = (cfg["llm_config"].get("architectures") or [None])[0]
    if llm_arch != LLM_ARCHITECTURE:
        raise ValueError(f"{ckpt_dir}: llm_config architecture {llm_arch!r}; only {LLM_ARCHITECTURE} "
                         "(Mini-InternVL-4B) is implemented")
    if cfg["use_backbone_lora"] or cfg["use_llm_lora"]:
        raise ValueError(f"{ckpt_dir}: LoRA-wrapped model; merge the LoRA weights first")
    return cfg


def vision_config(cfg: dict) -> SimpleNamespace:
    return SimpleNamespace(**cfg["vision_config"])


def text_config(cfg: dict):
    """transformers' Phi3Config from llm_config (the reference Phi3Config's arguments only; eager).
    A `su`/`longrope` rope_scaling gets `original_max_position_embeddings` copied into it, as
    transformers 5 requires; the reference's `yarn` variant (another cos/sin scale) is refused."""
    from transformers import Phi3Config

    d = {k: copy.deepcopy(v) for k, v in cfg["llm_config"].items() if k in PHI3_KEYS}
    scaling = d.get("rope_scaling")
    if scaling is not None:
        kind = scaling.get("rope_type", scaling.get("type"))
        if kind not in ("su", "longrope"):
            raise ValueError(f"rope_scaling type {kind!r}: only su/longrope (Phi-3-mini-128k) is implemented")
        scaling.setdefault("original_max_position_embeddings", d.get("original_max_position_embeddings", 4096))
    tcfg = Phi3Config(**d)
    tcfg._attn_implementation = "eager"
    return tcfg


# ---- modules (reference layout) ----------------------------------------------------------------------


class InternRMSNorm(nn.Module):
    def __init__(self, hidden_size: int, eps: float = 1e-6):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(hidden_size))
        self.variance_epsilon = eps

    def forward(self, x):
        dtype = x.dtype
        x = x.float()
        x = x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return self.weight * x.to(dtype)


def make_norm(norm_type: str, dim: int, eps: float) -> nn.Module:
    if norm_type == "rms_norm":
        return InternRMSNorm(dim, eps)
    if norm_type == "layer_norm":
        return nn.LayerNorm(dim, eps=eps)
    raise ValueError(f"norm_type {norm_type!r}")


class InternVisionEmbeddings(nn.Module):
    def __init__(self, vcfg):
        super().__init__()
        d = vcfg.hidden_size
        self.image_size, self.patch_size = vcfg.image_size, vcfg.patch_size
        self.class_embedding = nn.Parameter(torch.zeros(1, 1, d))
        self.patch_embedding = nn.Conv2d(3, d, kernel_size=self.patch_size, stride=self.patch_size)
        self.position_embedding = nn.Parameter(torch.zeros(1, (self.image_size // self.patch_size) ** 2 + 1, d))

    def patch_position_embedding(self, h: int, w: int):
        """The patch part of position_embedding resized (bicubic, as the reference always does) to h x w."""
        grid = self.image_size // self.patch_size
        pos = self.position_embedding[:, 1:].float().reshape(1, grid, grid, -1).permute(0, 3, 1, 2)
        pos = F.interpolate(pos, size=(h, w), mode="bicubic", align_corners=False)
        return pos.reshape(1, -1, h * w).permute(0, 2, 1).to(self.position_embedding.dtype)

    def forward(self, pixel_values):
        dtype = self.patch_embedding.weight.dtype
        patches = self.patch_embedding(pixel_values.to(dtype))  # [F, D, h, w]
        n, _, h, w = patches.shape
        patches = patches.flatten(2).transpose(1, 2)
        cls = self.class_embedding.expand(n, 1, -1).to(dtype)
        pos = torch.cat([self.position_embedding[:, :1], self.patch_position_embedding(h, w)], dim=1)
        return torch.cat([cls, patches], dim=1) + pos.to(dtype)


class InternAttention(nn.Module):
    """The reference's `_naive_attn` (its flash-attention path computes the same)."""

    def __init__(self, vcfg):
        super().__init__()
        d = vcfg.hidden_size
        self.num_heads = vcfg.num_attention_heads
        self.head_dim = d // self.num_heads
        self.scale = self.head_dim**-0.5
        self.qkv = nn.Linear(d, 3 * d, bias=vcfg.qkv_bias)
        self.qk_normalization = vcfg.qk_normalization
        if self.qk_normalization:
            self.q_norm = InternRMSNorm(d, eps=vcfg.layer_norm_eps)
            self.k_norm = InternRMSNorm(d, eps=vcfg.layer_norm_eps)
        self.proj = nn.Linear(d, d)

    def forward(self, x):
        b, n, d = x.shape
        q, k, v = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if self.qk_normalization:  # over all heads of a token at once
            q = self.q_norm(q.transpose(1, 2).flatten(-2)).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
            k = self.k_norm(k.transpose(1, 2).flatten(-2)).view(b, n, self.num_heads, self.head_dim).transpose(1, 2)
        probs = ((q * self.scale) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((probs @ v).transpose(1, 2).reshape(b, n, d))


class InternVisionEncoderLayer(nn.Module):
    """Pre-norm block with layer scales: x + attn(norm1(x)) * ls1, then + mlp(norm2(x)) * ls2."""

    def __init__(self, vcfg):
        super().__init__()
        d = vcfg.hidden_size
        self.attn = InternAttention(vcfg)
        self.mlp = VisionMlp(vcfg)
        self.norm1 = make_norm(vcfg.norm_type, d, vcfg.layer_norm_eps)
        self.norm2 = make_norm(vcfg.norm_type, d, vcfg.layer_norm_eps)
        self.ls1 = nn.Parameter(vcfg.initializer_factor * torch.ones(d))
        self.ls2 = nn.Parameter(vcfg.initializer_factor * torch.ones(d))

    def forward(self, x):
        x = x + self.attn(self.norm1(x)) * self.ls1
        return x + self.mlp(self.norm2(x)) * self.ls2


class InternVisionModel(nn.Module):
    """`vision_model`: embeddings + encoder (no final norm)."""

    def __init__(self, vcfg):
        super().__init__()
        self.embeddings = InternVisionEmbeddings(vcfg)
        self.encoder = VisionEncoder(vcfg, InternVisionEncoderLayer)

    def hidden_states(self, pixel_values, upto: int | None = None) -> list:
        """The reference's `output_hidden_states`: [embeddings, layer 1 out, ..., layer N out]; `upto`
        stops after that many layers."""
        return stack_hidden_states(self.embeddings(pixel_values), self.encoder.layers, upto)


def pixel_shuffle(x, scale_factor: float = 0.5, ps_version: str = "v2"):
    """The reference's `pixel_shuffle` on [N, h, w, C] (its comments call the axes W, H): -> [N, h*s,
    w*s, C/s^2]. "v2" keeps the grid's orientation; "v1" leaves it transposed."""
    n, w, h, ch = x.size()
    x = x.view(n, w, int(h * scale_factor), int(ch / scale_factor))
    x = x.permute(0, 2, 1, 3).contiguous()
    x = x.view(n, int(h * scale_factor), int(w * scale_factor), int(ch / (scale_factor * scale_factor)))
    if ps_version != "v1":
        x = x.permute(0, 2, 1, 3).contiguous()
    return x


def frame_features(vision_model: InternVisionModel, mlp1: nn.Module, pixel_values, select_layer: int,
                   downsample_ratio: float, ps_version: str):
    """`extract_feature` up to and including mlp1, per frame: [F,3,H,W] -> [F, h'*w', D] (tokens
    row-major): hidden state `select_layer`, CLS dropped, pixel shuffle, mlp1."""
    index = select_layer % (len(vision_model.encoder.layers) + 1)
    x = vision_model.hidden_states(pixel_values, upto=index)[index]
    x = x[:, 1:, :]
    h = w = int(x.shape[1] ** 0.5)
    x = x.reshape(x.shape[0], h, w, -1)
    x = pixel_shuffle(x, downsample_ratio, ps_version)
    x = x.reshape(x.shape[0], -1, x.shape[-1])
    return mlp1(x)


class InternVLChatModel(nn.Module):
    """The reference model's structure and state-dict keys: `vision_model` (InternViT), `language_model`
    (transformers' Phi3ForCausalLM, eager attention) and `mlp1`."""

    def __init__(self, cfg: dict):
        super().__init__()
        from transformers import Phi3ForCausalLM

        self.config = cfg
        vcfg, tcfg = vision_config(cfg), text_config(cfg)
        self.vision_config, self.text_config = vcfg, tcfg
        self.select_layer = int(cfg["select_layer"])
        self.downsample_ratio = float(cfg["downsample_ratio"])
        self.ps_version = cfg["ps_version"]
        self.num_frames = int(cfg["num_frames"])
        self.img_context_token_id = cfg["img_context_token_id"]
        self.pad_token_id = cfg["pad_token_id"]
        if self.pad_token_id is None:
            raise ValueError("pad_token_id is None (the reference asserts it is set)")
        self.vision_model = InternVisionModel(vcfg)
        self.language_model = Phi3ForCausalLM._from_config(tcfg, attn_implementation="eager", dtype=torch.float32)
        shuffled = vcfg.hidden_size * int(1 / self.downsample_ratio) ** 2
        self.mlp1 = nn.Sequential(
            nn.LayerNorm(shuffled),
            nn.Linear(shuffled, tcfg.hidden_size),
            nn.GELU(),
            nn.Linear(tcfg.hidden_size, tcfg.hidden_size),
        )

    def frame_features(self, pixel_values):
        return frame_features(self.vision_model, self.mlp1, pixel_values, self.select_layer,
                              self.downsample_ratio, self.ps_version)

    def extract_feature(self, pixel_values):
        """[B*T,3,H,W] -> [B, T*h'*w', D]: frames folded into the sequence, frame-major."""
        x = self.frame_features(pixel_values)
        return x.reshape(x.shape[0] // self.num_frames, self.num_frames * x.shape[1], x.shape[2])

    def forward(self, input_ids, pixel_values):
        """Logits [1,S,V] of one prompt [1,T] holding one `<IMG_CONTEXT>`, merged as the reference's
        `_merge_input_ids_with_image_features` does without padding: text before, the T*h'*w' features,
        text after; the placeholder's own id is embedded as pad_token_id and dropped."""
        if input_ids.shape[0] != 1:
            raise ValueError("one prompt at a time")
        ctx = int(self.img_context_token_id)
        ids = torch.where(input_ids != ctx, input_ids, torch.tensor(int(self.pad_token_id)))
        embeds = self.language_model.get_input_embeddings()(ids)
        where = (input_ids[0] == ctx).nonzero().flatten().tolist()
        if len(where) != 1:
            raise ValueError(f"expected one {IMG_CONTEXT} token, found {len(where)}")
        v = where[0]
        feats = self.extract_feature(pixel_values).to(embeds.dtype)
        if feats.shape[0] != 1:
            raise ValueError(f"{pixel_values.shape[0]} frames for num_frames {self.num_frames}: one video expected")
        embeds = torch.cat((embeds[:, :v], feats, embeds[:, v + 1:]), dim=1)
        positions = torch.arange(embeds.shape[1]).unsqueeze(0)
        return self.language_model(inputs_embeds=embeds, position_ids=positions).logits


# ---- checkpoint files --------------------------------------------------------------------------------


def load(ckpt_dir: str, num_frames: int | None = None) -> InternVLChatModel:
    """The reference-structure model with every parameter loaded by its reference key (strict),
    float32, eval mode. `img_context_token_id` comes from the tokenizer (as `load_internvl` sets it);
    `num_frames` overrides config.json's (as the eval's --num_frames)."""
    cfg = read_config(ckpt_dir)
    tok_path = os.path.join(ckpt_dir, c.TOKENIZER_FILE)
    if os.path.exists(tok_path):
        ctx = Tokenizer.from_file(tok_path).token_to_id(IMG_CONTEXT)
        if ctx is None:
            raise ValueError(f"{tok_path}: no {IMG_CONTEXT} token")
        cfg["img_context_token_id"] = ctx
    if cfg["img_context_token_id"] is None:
        raise ValueError(f"{ckpt_dir}: no img_context_token_id and no {c.TOKENIZER_FILE} to look it up")
    if num_frames is not None:
        cfg["num_frames"] = int(num_frames)
    model = InternVLChatModel(cfg)
    model.load_state_dict(load_state_dict(ckpt_dir), strict=True)
    return model.eval()


def tiny_config(vocab_size: int, ids: dict) -> dict:
    """config.json of the tiny checkpoint, in the form `InternVLChatConfig.to_dict` gives (nested full
    config dicts; a few of the PretrainedConfig bookkeeping keys a real file holds are kept to show they
    are ignored). Vision: 64x64 frames, 8x8 patches -> 4x4 tokens after the pixel shuffle, hidden 32,
    2 layers, 2 heads (InternViT-300M's layer_norm / qkv bias / no qk-norm); LLM: Phi-3 hidden 64, 4
    layers, 4 heads = 4 kv heads, head_dim 16, no rope scaling; 4 frames."""
    return {
        "architectures": [ARCHITECTURE],
        "model_type": MODEL_TYPE,
        "vision_config": {
            "architectures": ["InternVisionModel"],
            "model_type": "intern_vit_6b",
            "num_channels": 3,
            "patch_size": 8,
            "image_size": 64,
            "qkv_bias": True,
            "hidden_size": 32,
            "num_attention_heads": 2,
            "intermediate_size": 64,
            "qk_normalization": False,
            "num_hidden_layers": 2,
            "use_flash_attn": True,
            "hidden_act": "gelu",
            "norm_type": "layer_norm",
            "layer_norm_eps": 1e-6,
            "dropout": 0.0,
            "drop_path_rate": 0.0,
            "attention_dropout": 0.0,
            "initializer_range": 0.02,
            "initializer_factor": 1.0,
            "return_dict": True,
            "output_hidden_states": False,
            "torch_dtype": "float32",
        },
        "llm_config": {
            "_name_or_path": "tiny-phi3",
            "architectures": [LLM_ARCHITECTURE],
            "model_type": "phi3",
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 4,
            "resid_pdrop": 0.0,
            "embd_pdrop": 0.0,
            "attention_dropout": 0.0,
            "hidden_act": "silu",
            "max_position_embeddings": 512,
            "original_max_position_embeddings": 512,
            "initializer_range": 0.02,
            "rms_norm_eps": 1e-5,
            "use_cache": True,
            "tie_word_embeddings": False,
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "bos_token_id": ids[BOS],
            "eos_token_id": ids[ENDOFTEXT],
            "pad_token_id": ids[ENDOFTEXT],
            "sliding_window": None,
            "id2label": {"0": "LABEL_0", "1": "LABEL_1"},
            "return_dict": True,
            "torch_dtype": "float32",
            "transformers_version": "4.40.0",
        },
        "use_backbone_lora": 0,
        "use_llm_lora": 0,
        "pad2square": False,
        "select_layer": -1,
        "force_image_size": 64,
        "downsample_ratio": 0.5,
        "template": "phi3-chat",
        "dynamic_image_size": True,
        "use_thumbnail": True,
        "ps_version": "v2",
        "min_dynamic_patch": 1,
        "max_dynamic_patch": 12,
        "img_context_token_id": ids[IMG_CONTEXT],
        "pad_token_id": ids[UNK],
        "ignore_index": -100,
        "num_frames": 4,
        "force_eager": False,
        "hidden_size": 64,
        "tie_word_embeddings": False,
        "torch_dtype": "float32",
        "transformers_version": "4.40.0",
    }


def tiny_preprocessor(image_size: int = 64) -> dict:
    """preprocessor_config.json as `PllavaProcessor.save_pretrained` writes the InternVL processor of
    `load_internvl` / `setup_model_internvl` (a CLIPImageProcessor with ImageNet mean/std)."""
    return pllava.tiny_preprocessor(image_size, IMAGENET_MEAN, IMAGENET_STD)


@torch.no_grad()
def randomize(model: nn.Module, seed: int) -> None:
    """Matrices ~ N(0, 1/fan_in); norm weights and layer scales ~ 1 + N(0, 0.1^2); class and position
    embeddings ~ N(0, 1); other vectors ~ N(0, 0.02^2). Larger than HF's init so that every layer matters."""
    g = torch.Generator().manual_seed(seed + 1)
    for name, p in model.named_parameters():
        if name.endswith(("class_embedding", "position_embedding")):
            p.copy_(torch.randn(p.shape, generator=g))
        elif p.ndim >= 2:
            p.copy_(torch.randn(p.shape, generator=g) / p[0].numel() ** 0.5)
        elif name.endswith(("ls1", "ls2")) or (
                ("norm" in name or name.startswith("mlp1.0.")) and name.endswith("weight")):
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
        else:
            p.copy_(0.02 * torch.randn(p.shape, generator=g))


def write_random_checkpoint(out_dir: str, seed: int = 0, config_overrides: dict | None = None,
                            vision_overrides: dict | None = None) -> dict:
    """A tiny random-weight checkpoint in the reference layout: config.json (`tiny_config`, then the
    overrides), model.safetensors with the reference keys, the tokenizer files and
    preprocessor_config.json. Returns the config written."""
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    tok = tk.train_on_prompts(prompt_spec(), SPECIAL_TOKENS, f"){END}", seed)
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    config = tiny_config(tok.get_vocab_size(with_added_tokens=True), ids)
    config.update(config_overrides or {})
    config["vision_config"].update(vision_overrides or {})
    with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=2)
    model = InternVLChatModel(read_config(out_dir))
    randomize(model, seed)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(out_dir, WEIGHTS_FILE), metadata={"format": "pt"})
    tk.save_hf(tok, out_dir, bos=BOS, eos=ENDOFTEXT, pad=UNK,
               extra={"context_image_token": IMG_CONTEXT, "start_image_token": IMG_START,
                      "end_image_token": IMG_END})
    size = config.get("force_image_size") or config["vision_config"]["image_size"]
    with open(os.path.join(out_dir, PREPROCESSOR_FILE), "w") as f:
        json.dump(tiny_preprocessor(size), f, indent=2)
    return config


# ---- the vision graph --------------------------------------------------------------------------------


class VisionGraph(nn.Module):
    """pixel_values [F,3,H,W] -> video_embeds [F*h'*w', D]: `extract_feature` of one video (InternViT
    hidden state select_layer, CLS dropped, pixel shuffle, mlp1), frames folded frame-major. Any F.
    `select_layer` / `ps_version` override the model's (negative controls only)."""

    def __init__(self, model: InternVLChatModel, select_layer: int | None = None, ps_version: str | None = None):
        super().__init__()
        # Only the vision parts (a float16 copy of this module must not copy the language model).
        self.vision_model = model.vision_model
        self.mlp1 = model.mlp1
        self.select_layer = model.select_layer if select_layer is None else select_layer
        self.ps_version = model.ps_version if ps_version is None else ps_version
        self.downsample_ratio = model.downsample_ratio

    def forward(self, pixel_values):
        x = frame_features(self.vision_model, self.mlp1, pixel_values.to(self.mlp1[1].weight.dtype),
                           self.select_layer, self.downsample_ratio, self.ps_version)
        return x.flatten(0, 1).float()


def frame_size(model: InternVLChatModel) -> int:
    """The frame size the reference feeds: `force_image_size`, else the vision config's image_size."""
    return int(model.config.get("force_image_size") or model.vision_config.image_size)


def export_vision(model: InternVLChatModel, path: str, dtype=torch.float32, size: int | None = None,
                  select_layer: int | None = None, ps_version: str | None = None) -> None:
    size = size or frame_size(model)
    pixels = torch.randn(3, 3, size, size, generator=torch.Generator().manual_seed(0))
    graphs.export_vision(graphs.to_dtype(VisionGraph(model, select_layer, ps_version).eval(), dtype), pixels, path)


# ---- rope --------------------------------------------------------------------------------------------


def short_rope(tcfg) -> tuple[torch.Tensor, float]:
    """(inv_freq [Dh/2], cos/sin scale) of the reference's Phi-3 rotary for sequences of at most
    original_max_position_embeddings positions: plain RoPE without rope_scaling; with su/longrope,
    `Phi3SuScaledRotaryEmbedding`'s short-factor branch: inv_freq = 1 / (short_factor * theta^(2i/Dh)),
    scale = sqrt(1 + ln(s) / ln(original)) for s = max_position_embeddings / original > 1, else 1."""
    rp = tcfg.rope_parameters
    head_dim = tcfg.hidden_size // tcfg.num_attention_heads
    exponent = torch.arange(0, head_dim, 2, dtype=torch.int64).float() / head_dim
    base = float(rp["rope_theta"])
    if rp.get("rope_type", "default") == "default":
        return 1.0 / (base**exponent), 1.0
    factors = torch.tensor(rp["short_factor"], dtype=torch.float32)
    original = rp["original_max_position_embeddings"]
    scale = tcfg.max_position_embeddings / original
    attention_factor = rp.get("attention_factor")
    if attention_factor is None:
        attention_factor = 1.0 if scale <= 1.0 else math.sqrt(1 + math.log(scale) / math.log(original))
    return 1.0 / (factors * base**exponent), float(attention_factor)


class ShortRope(nn.Module):
    """The rotary module of the package's rope graph: `rotary_emb(x, position_ids) -> cos, sin [B,T,Dh]`
    with the short-factor tables fixed (see `short_rope`); float32."""

    def __init__(self, tcfg):
        super().__init__()
        inv_freq, self.attention_scaling = short_rope(tcfg)
        self.register_buffer("inv_freq", inv_freq, persistent=False)

    def forward(self, x, position_ids):
        freqs = position_ids[..., None].float() * self.inv_freq
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos() * self.attention_scaling, emb.sin() * self.attention_scaling


def max_positions(tcfg) -> int:
    """The longest sequence the package computes as the reference does: with su/longrope scaling, the
    short-factor range (original_max_position_embeddings); else max_position_embeddings."""
    if tcfg.rope_parameters.get("rope_type", "default") == "default":
        return int(tcfg.max_position_embeddings)
    return int(min(tcfg.max_position_embeddings, tcfg.rope_parameters["original_max_position_embeddings"]))


def export_text(model: InternVLChatModel, out_dir: str, dtype=torch.float32, attention: str = "eager") -> None:
    """`graphs.export_text` of the Phi-3 language model, with its rotary module swapped for `ShortRope`
    while the rope graph is traced (transformers' longrope module picks the factors at run time)."""
    text = model.language_model.model
    original = text.rotary_emb
    text.rotary_emb = ShortRope(model.text_config)
    try:
        graphs.export_text(model.language_model, out_dir, dtype, attention)
    finally:
        text.rotary_emb = original


# ---- package -----------------------------------------------------------------------------------------


def video_section(model: InternVLChatModel, processor: dict) -> dict:
    """Frames as `load_internvl`'s CLIPImageProcessor prepares them (short edge resize + centre crop,
    bicubic, ImageNet mean/std; its built-in settings when the checkpoint has no preprocessor_config.json);
    the grid is the pixel-shuffled one."""
    vcfg = model.vision_config
    size = frame_size(model)
    crop = processor.get("crop_size") or {"height": size, "width": size}
    if (int(crop["height"]), int(crop["width"])) != (size, size):
        raise ValueError(f"crop size {crop} is not the model's frame size {size}")
    grid = int((size // vcfg.patch_size) * model.downsample_ratio)
    return manifest.video_spec(processor, model.num_frames, size, size, grid, grid, IMAGENET_MEAN, IMAGENET_STD,
                               manifest.resize_mode(processor))


def special_ids(model: InternVLChatModel) -> dict:
    """Video = img_context_token_id; bos/eos from llm_config; pad = the chat config's pad_token_id
    (what the reference embeds in the placeholder's place; `load_internvl` also sets the generation pad
    to the tokenizer's unk, id 0, which is the default pad_token_id)."""
    tcfg = model.text_config
    return manifest.config_special_ids(model.img_context_token_id, tcfg.bos_token_id, tcfg.eos_token_id,
                                       model.pad_token_id)


def export_package(ckpt_dir: str, out_dir: str, name: str | None = None, dtype: str = "float32",
                   num_frames: int | None = None, attention: str = "eager") -> dict:
    """Reference-layout checkpoint -> vidflow package (every graph, tokenizer.json, model.yaml); returns
    the manifest. `num_frames` overrides config.json's (the eval and the analyses run 8)."""
    graphs.check_attention(attention, dtype)
    tok = pllava.checkpoint_tokenizer(ckpt_dir)
    model = load(ckpt_dir, num_frames)
    ids = special_ids(model)
    if tok.encode(IMG_CONTEXT, add_special_tokens=False).ids != [ids["video"]]:
        raise ValueError(f"{IMG_CONTEXT} is not a single-token placeholder in the tokenizer")
    if tok.get_vocab_size(with_added_tokens=True) > model.text_config.vocab_size:
        raise ValueError("tokenizer has more ids than the model's vocabulary")
    processor = video_processor_settings(ckpt_dir, names=(PREPROCESSOR_FILE,))

    m = manifest.assemble(
        model.text_config,
        name=manifest.package_name(name, ckpt_dir),
        dtype=dtype,
        family="llama",
        video=video_section(model, processor),
        prompt=prompt_spec(IMG_CONTEXT),
        special_ids=ids,
    )
    m["max_positions"] = max_positions(model.text_config)
    manifest.check(m)
    os.makedirs(out_dir, exist_ok=True)
    dt = graphs.DTYPES[dtype]
    export_vision(model, os.path.join(out_dir, c.VISION_FILE), graphs.vision_dtype(dt), size=m["video"]["frame_height"])
    export_text(model, out_dir, dt, attention)
    manifest.finish_package(ckpt_dir, out_dir, m)
    return m
