"""The PLLaVA family: LLaVA-NeXT-7B/13B-Video-FT checkpoints of "Map the Flow" (PLLaVA-style code).

Reference read (GitHub byminji/map-the-flow, commit 566f3ed; transformers 4.40.0 in its
requirements.txt):
- models/pllava/modeling_pllava.py (`PllavaMultiModalProjector`, `PllavaForConditionalGeneration`:
  feature selection, projector, pooling, `_merge_input_ids_with_image_features`),
  models/pllava/configuration_pllava.py (`PllavaConfig` and its defaults),
  models/pllava/processing_pllava.py (frame preprocessing), models/pllava/__init__.py,
  models/pllava/convert_pllava_weights_to_hf.py (empty: "# Not yet");
- tasks/eval/model_utils.py (`load_pllava`, `pllava_answer`), tasks/eval/eval_utils.py
  (`Conversation`, `conv_eval_mvbench`, frame sampling), tasks/eval/mvbench/pllava_eval_mvbench.py and
  tasks/eval/mvbench/__init__.py (`qa_template`), scripts/eval/eval_llava_next_7b_video_ft_tvbench.sh,
  analysis/information_flow_analysis.py and scripts/analysis/information_flow_analysis_llava_next_7b_video_ft.sh;
- tasks/train/train.py, tasks/train/config_llava_next.py, scripts/train/train_llava_next_7b_video_ft_8gpu.sh
  (how the checkpoint is written: `save_pretrained` of the whole model, full state dict).

What the reference does:
- Checkpoint layout (`PllavaForConditionalGeneration.state_dict()` with transformers 4.40):
  `vision_tower.vision_model.*` (CLIPVisionModel: embeddings.{class_embedding, patch_embedding.weight,
  position_embedding.weight}, pre_layrnorm, encoder.layers.N.{self_attn.{q,k,v,out}_proj, layer_norm1,
  mlp.fc1, mlp.fc2, layer_norm2}, post_layernorm), `multi_modal_projector.linear_{1,2}.{weight,bias}`
  (the pooling has no parameters), `language_model.model.*` and `language_model.lm_head.weight`
  (LlamaForCausalLM from `text_config`). config.json: model_type "llava", architectures
  ["PllavaForConditionalGeneration"], `PllavaConfig` fields (pooling_shape, frame_shape, num_frames,
  image_token_index, vision_feature_layer, ...) with nested `vision_config` / `text_config`;
  save_pretrained writes only values that differ from the defaults, so `read_config` fills in
  `PllavaConfig`'s defaults (CONFIG_DEFAULTS).
- Video features: CLIP `hidden_states[vision_feature_layer]` (-2: the second-to-last encoder layer's
  output, post_layernorm unused), CLS dropped ("default" strategy), then PROJECTOR FIRST
  (linear_1, act, linear_2 on every frame token), then `AdaptiveAvgPool3d(pooling_shape)` over
  (frames, h, w) of each video, tokens laid out frame-major, then row, then column. The eval runs
  8 input frames with pooling_shape (8, 12, 12): 24x24 patches -> 12x12, frames kept apart.
- Prompt: one `<image>` token (image_token_index) that the merge replaces by all T*h*w features;
  positions 0..S-1 (Llama). The TVBench/MVBench template is `conv_eval_mvbench` with
  post_query_prompt "\\nOnly give the best option." and answer_prompt "Best option:(" (`prompt_spec`).

What differs from LLaVA-NeXT-Video (transformers' LlavaNextVideoForConditionalGeneration): LLaVA-NeXT-Video
pools each frame's CLIP features (AvgPool2d, stride 2) BEFORE the projector; PLLaVA pools the
projected features (after the GELU MLP) with an adaptive 3D pool, which can also pool frames together
and uses adaptive (possibly overlapping) windows. The projector is nonlinear, so no LLaVA-NeXT-Video
config reproduces it: the vision graph here is our own module (`VisionGraph`: CLIP tower + projector +
the adaptive pool written as constant averaging matrices, exactly AdaptiveAvgPool3d's windows). Also no
`image_newline`, no anyres tiling, and CLIP is laid out as 4.40's `vision_model.*` (transformers 5's
CLIPVisionModel drops that prefix, hence our own CLIP modules with the 4.40 names).

Package: family `llama`; video.num_frames = the pooled frame count, grid = the pooled h x w. The
package feeds exactly that many frames, so the input frame count must equal pooling_shape[0] (the
eval and analysis scripts run num_frames = pooling_shape[0]); the graph's temporal averaging matrix
is fixed to that count.

Not verified (no checkpoint or hub access here): the released config.json and weights themselves
(key names follow the code above and transformers 4.40's CLIP/Llama modules; a 4.40 diff-form
config is assumed to leave out default values); the tokenizer (Vicuna SentencePiece, `<image>` =
32000); the preprocessing (PllavaProcessor first resizes short edges to at least 336 then
CLIPImageProcessor resizes the short edge to 336 and centre-crops; the manifest describes this as one
`shortest_edge_crop` resize, which differs from the two-step resampling by small pixel differences);
bfloat16 numerics of the reference run.
"""

import json
import os

import torch
from tokenizers import Tokenizer
from torch import nn

from . import contract as c
from . import graphs, manifest
from . import tokenizer as tk
from .hf import video_processor_settings
from .manifest import CLIP_MEAN, CLIP_STD
from .reference_modules import VisionEncoder, VisionMlp, stack_hidden_states

ARCHITECTURE = "PllavaForConditionalGeneration"

# `PllavaConfig.__init__` defaults (configuration_pllava.py) for keys a saved config.json may leave out.
CONFIG_DEFAULTS = {
    "ignore_index": -100,
    "image_token_index": 32000,
    "projector_hidden_act": "gelu",
    "vision_feature_select_strategy": "default",
    "vision_feature_layer": -2,
    "vocab_size": 32000,
    "pooling_method": "avg",
    "pooling_shape": [8, 16, 16],
    "frame_shape": [24, 24],
    "num_frames": 1,
    "use_pooling": True,
}
# PllavaConfig's vision tower when config.json has no vision_config (CLIP ViT-L/14-336).
DEFAULT_VISION = {
    "model_type": "clip_vision_model", "intermediate_size": 4096, "hidden_size": 1024, "patch_size": 14,
    "image_size": 336, "num_hidden_layers": 24, "num_attention_heads": 16, "vocab_size": 32000,
    "projection_dim": 768,
}

IMAGE_TOKEN = "<image>"
# The tiny tokenizer's special tokens, in Vicuna's id order (<unk> 0, <s> 1, </s> 2), then <image>.
UNK, BOS, EOS = "<unk>", "<s>", "</s>"
SPECIAL_TOKENS = [UNK, BOS, EOS, IMAGE_TOKEN]

# tasks/eval/eval_utils.py SYSTEM_MVBENCH.
SYSTEM_MVBENCH = (
    "Carefully watch the video and pay attention to the cause and sequence of events, the detail and "
    "movement of objects, and the action and pose of persons. Based on your observations, select the best "
    "option that accurately addresses the question.\n"
)
PREPROCESSOR_FILE = "preprocessor_config.json"
CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"


# ---- prompt ------------------------------------------------------------------------------------------


def prompt_spec(video_placeholder: str = IMAGE_TOKEN) -> dict:
    """The manifest's prompt spec (keys in manifest order): `conv_eval_mvbench` as the TVBench eval
    and the analysis scripts use it. `Conversation.get_prompt` gives
    `system + " " + "USER: " + "<image>\\n" + " " + "USER: " + query + " " + "ASSISTANT:" + "Best option:("`
    with query = `qa_template`'s "Question: {q}\\nOptions:\\n(A) a\\n(B) b" (trailing newline stripped)
    + " " + post_query_prompt "\\nOnly give the best option."; the answer prompt follows "ASSISTANT:"
    without a space. The tokenizer adds BOS (the manifest's bos_token_id)."""
    return {
        "system": SYSTEM_MVBENCH,
        "user_prefix": " USER: ",
        "video_placeholder": video_placeholder,
        "after_video": "\n USER: ",
        "question_prefix": "Question: ",
        "options_header": "\nOptions:\n",
        "option_format": "({label}) {text}",
        "option_separator": "\n",
        "option_labels": list("ABCDEFGH"),
        "instruction": " \nOnly give the best option.",
        "assistant_prefix": " ASSISTANT:",
        "answer_prefix": "Best option:(",
    }


# ---- config ------------------------------------------------------------------------------------------


def read_raw_config(ckpt_dir: str, architecture: str) -> dict:
    """config.json as written; ValueError unless its `architectures[0]` is `architecture`."""
    with open(os.path.join(ckpt_dir, CONFIG_FILE)) as f:
        raw = json.load(f)
    archs = raw.get("architectures") or [None]
    if archs[0] != architecture:
        raise ValueError(f"{ckpt_dir}: architecture {archs[0]!r}, expected {architecture}")
    return raw


def read_config(ckpt_dir: str) -> dict:
    """config.json with `PllavaConfig`'s defaults filled in (nested configs stay dicts)."""
    raw = read_raw_config(ckpt_dir, ARCHITECTURE)
    cfg = {**CONFIG_DEFAULTS, **raw}
    cfg["vision_config"] = dict(raw.get("vision_config") or DEFAULT_VISION)
    cfg["text_config"] = dict(raw.get("text_config") or {})
    cfg["pooling_shape"] = [int(x) for x in cfg["pooling_shape"]]
    cfg["frame_shape"] = [int(x) for x in cfg["frame_shape"]]
    if "vocab_size" in cfg["text_config"]:
        cfg["vocab_size"] = cfg["text_config"]["vocab_size"]  # as PllavaConfig does
    return cfg


def vision_config(cfg: dict):
    """The CLIP vision config (missing keys: CLIPVisionConfig's defaults, as CONFIG_MAPPING fills them)."""
    from transformers import CLIPVisionConfig

    d = {k: v for k, v in cfg["vision_config"].items() if k not in ("model_type", "architectures")}
    return CLIPVisionConfig(**d)


def text_config(cfg: dict):
    """The Llama config of `language_model` (eager attention, float32)."""
    from transformers import LlamaConfig

    d = dict(cfg["text_config"])
    if d.get("model_type", "llama") != "llama":
        raise ValueError(f"text_config model_type {d['model_type']!r}: only llama is supported")
    for key in ("model_type", "torch_dtype", "dtype", "_name_or_path"):
        d.pop(key, None)
    tcfg = LlamaConfig(**d)
    tcfg._attn_implementation = "eager"
    return tcfg


def pad_token_id(cfg: dict):
    """`PllavaForConditionalGeneration.pad_token_id`: the top-level one, else the text config's."""
    pad = cfg.get("pad_token_id")
    return cfg["text_config"].get("pad_token_id") if pad is None else pad


# ---- modules (reference layout) ----------------------------------------------------------------------


class ClipVisionEmbeddings(nn.Module):
    def __init__(self, vcfg):
        super().__init__()
        d, p = vcfg.hidden_size, vcfg.patch_size
        self.class_embedding = nn.Parameter(torch.zeros(d))
        self.patch_embedding = nn.Conv2d(vcfg.num_channels, d, kernel_size=p, stride=p, bias=False)
        self.position_embedding = nn.Embedding((vcfg.image_size // p) ** 2 + 1, d)

    def forward(self, pixel_values):
        patches = self.patch_embedding(pixel_values).flatten(2).transpose(1, 2)  # [F, h*w, D]
        cls = self.class_embedding.expand(patches.shape[0], 1, -1)
        return torch.cat((cls, patches), dim=1) + self.position_embedding.weight


class ClipAttention(nn.Module):
    def __init__(self, vcfg):
        super().__init__()
        d = vcfg.hidden_size
        self.num_heads = vcfg.num_attention_heads
        self.head_dim = d // self.num_heads
        self.k_proj = nn.Linear(d, d)
        self.v_proj = nn.Linear(d, d)
        self.q_proj = nn.Linear(d, d)
        self.out_proj = nn.Linear(d, d)

    def forward(self, x):
        def heads(t):
            return t.unflatten(-1, (self.num_heads, self.head_dim)).transpose(1, 2)

        q, k, v = heads(self.q_proj(x)), heads(self.k_proj(x)), heads(self.v_proj(x))
        scores = torch.matmul(q, k.transpose(2, 3)) * self.head_dim**-0.5
        probs = torch.softmax(scores.float(), dim=-1).to(q.dtype)
        return self.out_proj(torch.matmul(probs, v).transpose(1, 2).flatten(2))


class ClipEncoderLayer(nn.Module):
    def __init__(self, vcfg):
        super().__init__()
        self.self_attn = ClipAttention(vcfg)
        self.layer_norm1 = nn.LayerNorm(vcfg.hidden_size, eps=vcfg.layer_norm_eps)
        self.mlp = VisionMlp(vcfg, act_name="activation_fn")  # CLIP's name
        self.layer_norm2 = nn.LayerNorm(vcfg.hidden_size, eps=vcfg.layer_norm_eps)

    def forward(self, x):
        x = x + self.self_attn(self.layer_norm1(x))
        return x + self.mlp(self.layer_norm2(x))


class ClipVisionTransformer(nn.Module):
    """transformers 4.40's CLIPVisionTransformer (pre-LN ViT with a CLS token)."""

    def __init__(self, vcfg):
        super().__init__()
        self.embeddings = ClipVisionEmbeddings(vcfg)
        self.pre_layrnorm = nn.LayerNorm(vcfg.hidden_size, eps=vcfg.layer_norm_eps)  # sic, CLIP's name
        self.encoder = VisionEncoder(vcfg, ClipEncoderLayer)
        self.post_layernorm = nn.LayerNorm(vcfg.hidden_size, eps=vcfg.layer_norm_eps)

    def hidden_states(self, pixel_values, upto: int | None = None) -> list:
        """4.40's `output_hidden_states`: [pre_layrnorm(embeddings), layer 1 out, ..., layer N out];
        `upto` stops after that many layers (later entries are not computed)."""
        return stack_hidden_states(self.pre_layrnorm(self.embeddings(pixel_values)), self.encoder.layers, upto)


class ClipVisionTower(nn.Module):
    """`vision_tower` (CLIPVisionModel): holds `vision_model`."""

    def __init__(self, vcfg):
        super().__init__()
        self.vision_model = ClipVisionTransformer(vcfg)


def select_features(vision_tower: ClipVisionTower, pixel_values, feature_layer: int):
    """[F,3,H,W] -> CLIP hidden_states[feature_layer] with CLS dropped ("default"): [F, h*w, Dv]."""
    vm = vision_tower.vision_model
    index = int(feature_layer) % (len(vm.encoder.layers) + 1)
    return vm.hidden_states(pixel_values, upto=index)[index][:, 1:]


class PllavaMultiModalProjector(nn.Module):
    """linear_1 -> act -> linear_2 on every frame token, then AdaptiveAvgPool3d(pooling_shape) over
    (frames, h, w) of each video; out [videos, T'*h'*w', D], frame-major."""

    def __init__(self, cfg: dict, vision_hidden: int, text_hidden: int):
        super().__init__()
        from transformers.activations import ACT2FN

        self.num_frames = int(cfg["num_frames"])
        self.frame_shape = tuple(cfg["frame_shape"])
        self.pooling_shape = tuple(cfg["pooling_shape"])
        self.use_pooling = bool(cfg["use_pooling"])
        self.pooling = nn.AdaptiveAvgPool3d(self.pooling_shape)
        self.linear_1 = nn.Linear(vision_hidden, text_hidden, bias=True)
        self.act = ACT2FN[cfg["projector_hidden_act"]]
        self.linear_2 = nn.Linear(text_hidden, text_hidden, bias=True)

    def project(self, x):
        return self.linear_2(self.act(self.linear_1(x)))

    def forward(self, image_features, num_videos: int = 1):
        x = image_features  # [videos*T, h*w, Dv]
        if x.shape[0] < self.num_frames and self.use_pooling:  # the reference repeats short clips
            x = x.repeat_interleave(self.num_frames // x.shape[0] + 1, dim=0)[: self.num_frames]
        total, tokens, _ = x.shape
        h, w = self.frame_shape
        if total % self.num_frames or h * w != tokens:
            raise ValueError(f"{total} frames of {tokens} tokens for num_frames {self.num_frames}, frame {h}x{w}")
        x = self.project(x)
        x = x.reshape(num_videos, total // num_videos, h, w, -1).permute(0, 4, 1, 2, 3)  # [V, D, T, h, w]
        x = self.pooling(x)
        return x.flatten(2).transpose(1, 2)  # [V, T'*h'*w', D]


class PllavaForConditionalGeneration(nn.Module):
    """The reference model's structure and state-dict keys: `vision_tower`, `multi_modal_projector`,
    `language_model` (transformers' LlamaForCausalLM, eager attention)."""

    def __init__(self, cfg: dict):
        super().__init__()
        from transformers import LlamaForCausalLM

        self.config = cfg
        vcfg, tcfg = vision_config(cfg), text_config(cfg)
        if tuple(cfg["frame_shape"]) != (vcfg.image_size // vcfg.patch_size,) * 2:
            raise ValueError(f"frame_shape {cfg['frame_shape']} is not the vision tower's patch grid "
                             f"{vcfg.image_size // vcfg.patch_size}")
        if cfg["vision_feature_select_strategy"] != "default":
            raise ValueError("only vision_feature_select_strategy 'default' is implemented (as in the reference)")
        self.vision_config, self.text_config = vcfg, tcfg
        self.vision_tower = ClipVisionTower(vcfg)
        self.multi_modal_projector = PllavaMultiModalProjector(cfg, vcfg.hidden_size, tcfg.hidden_size)
        self.language_model = LlamaForCausalLM._from_config(tcfg, attn_implementation="eager", dtype=torch.float32)
        self.image_token_index = int(cfg["image_token_index"])
        self.pad_token_id = pad_token_id(cfg)

    def video_features(self, pixel_values):
        """One video's frames [F,3,H,W] -> [1, T'*h'*w', D]."""
        feats = select_features(self.vision_tower, pixel_values, self.config["vision_feature_layer"])
        return self.multi_modal_projector(feats, num_videos=1)

    def forward(self, input_ids, pixel_values):
        """Logits [1,S,V] of one prompt [1,T] with one image token, spliced as the reference's
        `_merge_input_ids_with_image_features` (no padding): text before, the video features, text after."""
        if input_ids.shape[0] != 1:
            raise ValueError("one prompt at a time")
        ids = input_ids
        if self.pad_token_id is not None:
            ids = torch.where(ids != self.image_token_index, ids, torch.tensor(int(self.pad_token_id)))
        embeds = self.language_model.get_input_embeddings()(ids)
        where = (input_ids[0] == self.image_token_index).nonzero().flatten().tolist()
        if len(where) != 1:
            raise ValueError(f"expected one image token, found {len(where)}")
        v = where[0]
        feats = self.video_features(pixel_values).to(embeds.dtype)
        embeds = torch.cat((embeds[:, :v], feats, embeds[:, v + 1:]), dim=1)
        positions = torch.arange(embeds.shape[1]).unsqueeze(0)
        return self.language_model(inputs_embeds=embeds, position_ids=positions).logits


# ---- checkpoint files --------------------------------------------------------------------------------

# Non-persistent buffers an older save may still hold; no parameter of the reference.
_IGNORED_SUFFIXES = (".position_ids", ".inv_freq")


def load_state_dict(ckpt_dir: str) -> dict:
    """Every tensor of the checkpoint (model.safetensors, model-0*.safetensors shards, or
    pytorch_model*.bin), by its reference key, in float32."""
    from safetensors.torch import load_file

    names = sorted(os.listdir(ckpt_dir))
    st = [n for n in names if n.endswith(".safetensors") and (n == WEIGHTS_FILE or n.startswith("model-"))]
    bins = [n for n in names if n.startswith("pytorch_model") and n.endswith(".bin")]
    sd = {}
    if st:
        for n in st:
            sd.update(load_file(os.path.join(ckpt_dir, n)))
    elif bins:
        for n in bins:
            part = torch.load(os.path.join(ckpt_dir, n), map_location="cpu", weights_only=True)
            if isinstance(part.get("model"), dict):  # the reference also takes {"model": state_dict}
                part = part["model"]
            sd.update(part)
    else:
        raise FileNotFoundError(f"{ckpt_dir}: no model.safetensors, model-*.safetensors or pytorch_model*.bin")
    if any("lora_" in k for k in sd):
        raise ValueError(f"{ckpt_dir}: LoRA weights; merge them into the language model first")
    return {k: v.float() for k, v in sd.items()
            if not k.endswith(_IGNORED_SUFFIXES) and k != "image_newline"}


def load(ckpt_dir: str, pooling_shape=None) -> PllavaForConditionalGeneration:
    """The reference-structure model with every parameter loaded by its reference key (strict),
    float32, eval mode. `pooling_shape` overrides config.json's (as the eval's --pooling_shape);
    num_frames is set to pooling_shape[0] (as the analysis scripts run it)."""
    cfg = read_config(ckpt_dir)
    if pooling_shape is not None:
        cfg["pooling_shape"] = [int(x) for x in pooling_shape]
    cfg["num_frames"] = cfg["pooling_shape"][0]
    model = PllavaForConditionalGeneration(cfg)
    model.load_state_dict(load_state_dict(ckpt_dir), strict=True)
    return model.eval()


def tiny_config(vocab_size: int, ids: dict) -> dict:
    """config.json of the tiny checkpoint, in the diff form save_pretrained writes (values equal to
    PllavaConfig's defaults left out: projector_hidden_act, vision_feature_layer, ...). Vision: 64x64
    frames, 8x8 patches, hidden 32, 2 layers; text: Llama hidden 64, 4 layers, 4/2 heads, head_dim 16;
    4 frames of 8x8 patches pooled to 4 x 4x4 (2x2 spatial averages, frames kept apart)."""
    return {
        "architectures": [ARCHITECTURE],
        "model_type": "llava",
        "image_token_index": ids[IMAGE_TOKEN],
        "vocab_size": vocab_size,
        "pad_token_id": ids[UNK],
        "pooling_shape": [4, 4, 4],
        "frame_shape": [8, 8],
        "num_frames": 4,
        "gradient_checkpointing": True,
        "text_config": {
            "architectures": ["LlamaForCausalLM"],
            "model_type": "llama",
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 4,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "max_position_embeddings": 512,
            "rms_norm_eps": 1e-5,
            "rope_theta": 10000.0,
            "rope_scaling": None,
            "bos_token_id": ids[BOS],
            "eos_token_id": ids[EOS],
            "pad_token_id": ids[UNK],
            "tie_word_embeddings": False,
            "torch_dtype": "float32",
        },
        "vision_config": {
            "model_type": "clip_vision_model",
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 64,
            "patch_size": 8,
            "projection_dim": 32,
            "vocab_size": 32000,
        },
        "torch_dtype": "float32",
        "transformers_version": "4.40.0",
    }


def tiny_preprocessor(image_size: int = 64, mean: list = CLIP_MEAN, std: list = CLIP_STD) -> dict:
    """preprocessor_config.json as PllavaProcessor.save_pretrained writes it (a CLIPImageProcessor;
    CLIP normalisation unless `mean` / `std` say otherwise)."""
    return {
        "crop_size": {"height": image_size, "width": image_size},
        "do_center_crop": True,
        "do_convert_rgb": True,
        "do_normalize": True,
        "do_rescale": True,
        "do_resize": True,
        "image_mean": mean,
        "image_processor_type": "CLIPImageProcessor",
        "image_std": std,
        "processor_class": "PllavaProcessor",
        "resample": 3,
        "rescale_factor": 1 / 255,
        "size": {"shortest_edge": image_size},
    }


@torch.no_grad()
def randomize(model: nn.Module, seed: int) -> None:
    """Matrices ~ N(0, 1/fan_in); norm weights ~ 1 + N(0, 0.1^2); CLIP's class embedding ~ N(0, 1);
    other vectors ~ N(0, 0.02^2). Larger than HF's init so that every layer matters."""
    g = torch.Generator().manual_seed(seed + 1)
    for name, p in model.named_parameters():
        if p.ndim >= 2:
            fan_in = p[0].numel()
            p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)
        elif "norm" in name and name.endswith("weight"):
            p.copy_(1.0 + 0.1 * torch.randn(p.shape, generator=g))
        elif name.endswith("class_embedding"):
            p.copy_(torch.randn(p.shape, generator=g))
        else:
            p.copy_(0.02 * torch.randn(p.shape, generator=g))


def write_random_checkpoint(out_dir: str, seed: int = 0, config_overrides: dict | None = None) -> dict:
    """A tiny random-weight checkpoint in the reference layout: config.json (`tiny_config`, then
    `config_overrides`), model.safetensors with the reference keys, the tokenizer files and
    preprocessor_config.json. Returns the config written."""
    from safetensors.torch import save_file

    os.makedirs(out_dir, exist_ok=True)
    tok = tk.train_on_prompts(prompt_spec(), SPECIAL_TOKENS, f") {EOS}", seed)
    ids = {t: tok.token_to_id(t) for t in SPECIAL_TOKENS}
    config = tiny_config(tok.get_vocab_size(with_added_tokens=True), ids)
    config.update(config_overrides or {})
    with open(os.path.join(out_dir, CONFIG_FILE), "w") as f:
        json.dump(config, f, indent=2)
    model = PllavaForConditionalGeneration(read_config(out_dir))
    randomize(model, seed)
    sd = {k: v.contiguous() for k, v in model.state_dict().items()}
    save_file(sd, os.path.join(out_dir, WEIGHTS_FILE), metadata={"format": "pt"})
    tk.save_hf(tok, out_dir, bos=BOS, eos=EOS, pad=UNK, extra={"image_token": IMAGE_TOKEN})
    with open(os.path.join(out_dir, PREPROCESSOR_FILE), "w") as f:
        json.dump(tiny_preprocessor(config["vision_config"]["image_size"]), f, indent=2)
    return config


# ---- the vision graph --------------------------------------------------------------------------------


def pool_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """[n_out, n_in]: adaptive average pooling along one axis as PyTorch defines its windows
    (row i averages inputs floor(i*n_in/n_out) .. ceil((i+1)*n_in/n_out) - 1)."""
    m = torch.zeros(n_out, n_in)
    for i in range(n_out):
        lo, hi = (i * n_in) // n_out, -((-(i + 1) * n_in) // n_out)
        m[i, lo:hi] = 1.0 / (hi - lo)
    return m


class VisionGraph(nn.Module):
    """pixel_values [F,3,H,W] -> video_embeds [T'*h'*w', D]: CLIP layer selection, CLS dropped,
    projector, then AdaptiveAvgPool3d(pooling_shape) as three averaging matrices (separable, so equal
    to the 3D pool) applied over frames, rows and columns; frame-major token order.

    F must be the frame count it was built for (the temporal matrix is a constant)."""

    def __init__(self, model: PllavaForConditionalGeneration, pool_frames_first: bool = False):
        super().__init__()
        # Only the vision parts (a float16 copy of this module must not copy the language model).
        self.vision_tower = model.vision_tower
        self.multi_modal_projector = model.multi_modal_projector
        self.feature_layer = int(model.config["vision_feature_layer"])
        proj = model.multi_modal_projector
        t_out, h_out, w_out = proj.pooling_shape
        h, w = proj.frame_shape
        self.frame_shape = (h, w)
        self.register_buffer("pool_t", pool_matrix(proj.num_frames, t_out), persistent=False)
        self.register_buffer("pool_h", pool_matrix(h, h_out), persistent=False)
        self.register_buffer("pool_w", pool_matrix(w, w_out), persistent=False)
        # Only for the test's negative control: pool the CLIP features, then project.
        self.pool_frames_first = pool_frames_first

    def pool(self, x):
        x = x.unflatten(1, self.frame_shape)  # [F, h, w, D]
        return torch.einsum("at,bh,cw,thwd->abcd", self.pool_t, self.pool_h, self.pool_w, x).flatten(0, 2)

    def forward(self, pixel_values):
        proj = self.multi_modal_projector
        x = select_features(self.vision_tower, pixel_values.to(proj.linear_1.weight.dtype), self.feature_layer)
        if self.pool_frames_first:
            return proj.project(self.pool(x)).float()
        return self.pool(proj.project(x)).float()


def export_vision(model: PllavaForConditionalGeneration, path: str, dtype=torch.float32,
                  pool_frames_first: bool = False) -> None:
    vcfg = model.vision_config
    frames = model.multi_modal_projector.num_frames
    pixels = torch.randn(frames, 3, vcfg.image_size, vcfg.image_size, generator=torch.Generator().manual_seed(0))
    graphs.export_vision(graphs.to_dtype(VisionGraph(model, pool_frames_first).eval(), dtype), pixels, path)


# ---- package -----------------------------------------------------------------------------------------


def video_section(model: PllavaForConditionalGeneration, processor: dict) -> dict:
    """Frames as CLIPImageProcessor prepares them (short edge resize + centre crop, CLIP mean/std);
    num_frames and the grid are the pooled ones (input frames = pooled frames)."""
    vcfg = model.vision_config
    t_out, h_out, w_out = model.multi_modal_projector.pooling_shape
    size = processor.get("crop_size") or {"height": vcfg.image_size, "width": vcfg.image_size}
    if (int(size["height"]), int(size["width"])) != (vcfg.image_size, vcfg.image_size):
        raise ValueError(f"crop size {size} is not the vision tower's {vcfg.image_size}")
    return manifest.video_spec(processor, t_out, size["height"], size["width"], h_out, w_out, CLIP_MEAN, CLIP_STD,
                               manifest.resize_mode(processor))


def special_ids(model: PllavaForConditionalGeneration) -> dict:
    """Video = image_token_index; bos/eos from the text config (LlamaConfig's defaults 1/2 when
    absent); pad as the reference picks it (`pad_token_id`)."""
    tcfg = model.text_config
    return manifest.config_special_ids(model.image_token_index, tcfg.bos_token_id, tcfg.eos_token_id,
                                       model.pad_token_id)


def checkpoint_tokenizer(ckpt_dir: str) -> Tokenizer:
    """The checkpoint's tokenizer.json (FileNotFoundError when there is none)."""
    tok_path = os.path.join(ckpt_dir, c.TOKENIZER_FILE)
    if not os.path.exists(tok_path):
        raise FileNotFoundError(f"{ckpt_dir}: no {c.TOKENIZER_FILE} (save the fast tokenizer next to the weights)")
    return Tokenizer.from_file(tok_path)


def export_package(ckpt_dir: str, out_dir: str, name: str | None = None, dtype: str = "float32",
                   pooling_shape=None, attention: str = "eager") -> dict:
    """Reference-layout checkpoint -> vidflow package (every graph, tokenizer.json, model.yaml);
    returns the manifest. `pooling_shape` overrides config.json's; the input frame count is
    pooling_shape[0]."""
    graphs.check_attention(attention, dtype)
    model = load(ckpt_dir, pooling_shape)
    t_out = model.multi_modal_projector.pooling_shape[0]
    if model.config["pooling_method"] != "avg":
        raise ValueError(f"pooling_method {model.config['pooling_method']!r}: the reference always average-pools")
    tok = checkpoint_tokenizer(ckpt_dir)
    ids = special_ids(model)
    placeholder = manifest.checked_placeholder(tok, ids, model.text_config.vocab_size, what="image")
    processor = video_processor_settings(ckpt_dir, names=(PREPROCESSOR_FILE,))

    m = manifest.assemble(
        model.text_config,
        name=manifest.package_name(name, ckpt_dir),
        dtype=dtype,
        family="llama",
        video=video_section(model, processor),
        prompt=prompt_spec(placeholder),
        special_ids=ids,
    )
    assert m["video"]["num_frames"] == t_out
    os.makedirs(out_dir, exist_ok=True)
    export_vision(model, os.path.join(out_dir, c.VISION_FILE), graphs.vision_dtype(graphs.DTYPES[dtype]))
    graphs.export_text(model.language_model, out_dir, graphs.DTYPES[dtype], attention)
    manifest.finish_package(ckpt_dir, out_dir, m)
    return m

