"""`model.yaml`: every field of src/package/manifest.rs `Manifest`, no more, no fewer."""

import math
import os
import shutil

import yaml

from . import contract as c
from .prompt import mvbench_prompt_spec

# PIL resampling codes (as stored in HF processor configs) -> manifest `resize_filter`.
PIL_FILTERS = {0: "nearest", 2: "bilinear", 3: "bicubic"}
# transformers.image_utils.OPENAI_CLIP_MEAN / _STD (LLaVA's and Qwen's processors).
CLIP_MEAN = [0.48145466, 0.4578275, 0.40821073]
CLIP_STD = [0.26862954, 0.26130258, 0.27577711]
# transformers.image_utils.IMAGENET_STANDARD_MEAN / _STD (SigLIP's, VideoLLaMA3's processors).
STANDARD_MEAN = [0.5, 0.5, 0.5]
STANDARD_STD = [0.5, 0.5, 0.5]
# transformers.image_utils.IMAGENET_DEFAULT_MEAN / _STD (InternVL's processors).
IMAGENET_MEAN = [0.485, 0.456, 0.406]
IMAGENET_STD = [0.229, 0.224, 0.225]

# Field order of the Rust structs, used to check a manifest before writing it.
MANIFEST_FIELDS = [
    "format_version", "name", "family", "dtype", "num_layers", "hidden_size", "num_heads",
    "num_kv_heads", "head_dim", "rope_dim", "vocab_size", "intermediate_size", "max_positions", "graphs",
    "tokenizer", "video", "prompt", "special_tokens",
]
GRAPHS_FIELDS = ["vision", "embed", "rope", "layers", "layers_attn", "head_norm", "head_lm", "head_embed"]
VIDEO_FIELDS = [
    "num_frames", "frame_height", "frame_width", "resize_mode", "resize_filter", "rescale_factor",
    "image_mean", "image_std", "grid_h", "grid_w", "sampling",
]
# Optional last `video` field (Rust `VideoSpec::trailing_tokens`, 0 when absent): embeddings the vision
# graph appends after the last frame (LLaVA-OneVision's newline); written only when > 0.
VIDEO_TRAILING = "trailing_tokens"
PROMPT_FIELDS = [
    "system", "user_prefix", "video_placeholder", "after_video", "question_prefix", "options_header",
    "option_format", "option_separator", "option_labels", "instruction", "assistant_prefix", "answer_prefix",
]
# Optional last `prompt` fields (Rust `PromptSpec::frame_*`, empty when absent): the per-frame video
# text (prompt.py); written only when non-empty, so other families' manifests do not change.
PROMPT_FRAME_FIELDS = ["frame_prefix", "frame_suffix", "frame_separator"]
SPECIAL_FIELDS = ["video_token_id", "bos_token_id", "eos_token_id", "pad_token_id"]
# `mrope`: the last top-level field, present exactly for the M-RoPE family (Rust `MropeSpec`).
MROPE_FIELDS = ["temporal_patch_size", "tokens_per_second", "seconds_per_group", "sections"]
FAMILIES = ("llama", "qwen2_5_vl")
MROPE_FAMILY = "qwen2_5_vl"


def graphs_section(num_layers: int) -> dict:
    return {
        "vision": c.VISION_FILE,
        "embed": c.EMBED_FILE,
        "rope": c.ROPE_FILE,
        "layers": [c.layer_file(i) for i in range(num_layers)],
        "layers_attn": [c.layer_file(i, attn=True) for i in range(num_layers)],
        "head_norm": c.HEAD_NORM_FILE,
        "head_lm": c.HEAD_LM_FILE,
        "head_embed": c.HEAD_EMBED_FILE,
    }


def resize_mode(processor: dict) -> str:
    """`shortest_edge_crop` when the processor resizes the short edge and centre-crops (CLIP's
    image processor), else `stretch`."""
    crop = processor.get("do_center_crop", True) and "shortest_edge" in processor.get("size", {"shortest_edge": 0})
    return "shortest_edge_crop" if crop else "stretch"


def video_spec(processor: dict, num_frames: int, height: int, width: int, grid_h: int, grid_w: int,
               mean: list, std: list, resize_mode: str = "stretch") -> dict:
    """The `video` section (fields in manifest order): frame count, size and token grid as given;
    resampling filter, rescale factor and normalisation from the HF processor settings (`mean` /
    `std` when they name none); frames sampled at segment middles."""
    return {
        "num_frames": int(num_frames),
        "frame_height": int(height),
        "frame_width": int(width),
        "resize_mode": resize_mode,
        "resize_filter": PIL_FILTERS[int(processor.get("resample", 3))],
        "rescale_factor": float(processor.get("rescale_factor", 1 / 255)),
        "image_mean": [float(x) for x in processor.get("image_mean", mean)],
        "image_std": [float(x) for x in processor.get("image_std", std)],
        "grid_h": int(grid_h),
        "grid_w": int(grid_w),
        "sampling": "segment_middle",
    }


def video_section(config, processor: dict, num_frames: int) -> dict:
    """Video preprocessing from the model config and the HF video processor settings."""
    vcfg = config.vision_config
    size = processor.get("crop_size") or {"height": vcfg.image_size, "width": vcfg.image_size}
    patches = vcfg.image_size // vcfg.patch_size
    stride = config.spatial_pool_stride
    grid = patches // stride
    return video_spec(processor, num_frames, size["height"], size["width"], grid, grid, CLIP_MEAN, CLIP_STD,
                      resize_mode(processor))


def build(model, name: str, dtype: str, processor: dict, num_frames: int, video_placeholder: str,
          special_ids: dict) -> dict:
    """The manifest of a LLaVA-NeXT-Video package (family `llama`)."""
    from .hf import text_model

    return assemble(text_model(model).config, name, dtype, "llama",
                    video_section(model.config, processor, num_frames),
                    mvbench_prompt_spec(video_placeholder), special_ids)


def config_special_ids(video, bos, eos, pad) -> dict:
    """Special ids as the manifest holds them: ints or None; a list (a config's several EOS ids,
    say) gives its first."""

    def first(x):
        return x[0] if isinstance(x, (list, tuple)) else x

    ids = {"video": video, "bos": first(bos), "eos": first(eos), "pad": first(pad)}
    return {k: (None if v is None else int(v)) for k, v in ids.items()}


def chatml_special_ids(tok, video_id: int, eos: str, pad: str) -> dict:
    """Special ids of a Qwen2 (ChatML) tokenizer family: the video placeholder `video_id`, no BOS
    (Qwen2 prepends none), EOS `eos` and pad `pad` as the tokenizer's ids (ValueError when absent)."""
    ids = {"video": int(video_id), "bos": None}
    for key, token in (("eos", eos), ("pad", pad)):
        tid = tok.token_to_id(token)
        if tid is None:
            raise ValueError(f"the tokenizer has no {token} token")
        ids[key] = int(tid)
    return ids


def checked_placeholder(tok, ids: dict, vocab_size: int, what: str = "video") -> str:
    """The placeholder token of `ids["video"]`, checked: one token of the tokenizer, whose ids all
    fit the model's `vocab_size` (`what`: the kind of token, for the error)."""
    placeholder = tok.id_to_token(ids["video"])
    if placeholder is None or tok.encode(placeholder, add_special_tokens=False).ids != [ids["video"]]:
        raise ValueError(f"{what} token id {ids['video']} is not a single-token placeholder in the tokenizer")
    if tok.get_vocab_size(with_added_tokens=True) > vocab_size:
        raise ValueError("tokenizer has more ids than the model's vocabulary")
    return placeholder


def assemble(tcfg, name: str, dtype: str, family: str, video: dict, prompt: dict, special_ids: dict,
             mrope: dict | None = None) -> dict:
    """A checked manifest from the text config `tcfg` and the sections; `mrope` (family
    qwen2_5_vl only) goes last."""
    head_dim = getattr(tcfg, "head_dim", None) or tcfg.hidden_size // tcfg.num_attention_heads
    manifest = {
        "format_version": c.FORMAT_VERSION,
        "name": name,
        "family": family,
        "dtype": dtype,
        "num_layers": int(tcfg.num_hidden_layers),
        "hidden_size": int(tcfg.hidden_size),
        "num_heads": int(tcfg.num_attention_heads),
        "num_kv_heads": int(tcfg.num_key_value_heads),
        "head_dim": int(head_dim),
        "rope_dim": int(head_dim),
        "vocab_size": int(tcfg.vocab_size),
        "intermediate_size": int(tcfg.intermediate_size),
        "max_positions": int(tcfg.max_position_embeddings),
        "graphs": graphs_section(tcfg.num_hidden_layers),
        "tokenizer": c.TOKENIZER_FILE,
        "video": video,
        "prompt": prompt,
        "special_tokens": {
            "video_token_id": int(special_ids["video"]),
            "bos_token_id": special_ids.get("bos"),
            "eos_token_id": special_ids.get("eos"),
            "pad_token_id": special_ids.get("pad"),
        },
    }
    if mrope is not None:
        manifest["mrope"] = mrope
    check(manifest)
    return manifest


def check(m: dict) -> None:
    """Same field sets as the Rust structs (deny_unknown_fields) and the same consistency rules
    (src/package/manifest.rs `Manifest::check`; the tokenizer side of the deep check is Rust's)."""

    def fields(d: dict, expected: list, where: str):
        if list(d) != expected:
            raise ValueError(f"manifest {where}: fields {list(d)}, expected {expected}")

    if m.get("family") not in FAMILIES or m.get("dtype") not in ("float32", "float16", "bfloat16"):
        raise ValueError(f"manifest: family {m.get('family')!r}, dtype {m.get('dtype')!r}")
    mrope = m["family"] == MROPE_FAMILY
    fields(m, MANIFEST_FIELDS + (["mrope"] if mrope else []), "top level")
    fields(m["graphs"], GRAPHS_FIELDS, "graphs")
    trailing = VIDEO_TRAILING in m["video"]
    fields(m["video"], VIDEO_FIELDS + ([VIDEO_TRAILING] if trailing else []), "video")
    if trailing:
        n = m["video"][VIDEO_TRAILING]
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"manifest: video.{VIDEO_TRAILING} is {n!r}, expected an integer > 0 (omit it for 0)")
    frame_fields = [k for k in PROMPT_FRAME_FIELDS if k in m["prompt"]]
    fields(m["prompt"], PROMPT_FIELDS + frame_fields, "prompt")
    for k in frame_fields:
        if not isinstance(m["prompt"][k], str) or not m["prompt"][k]:
            raise ValueError(f"manifest: prompt.{k} is {m['prompt'][k]!r}, expected a non-empty string "
                             "(omit it when empty)")
    fields(m["special_tokens"], SPECIAL_FIELDS, "special_tokens")
    if mrope:
        check_mrope(m)
    if m["format_version"] != c.FORMAT_VERSION:
        raise ValueError("manifest: wrong format_version")
    if len(m["graphs"]["layers"]) != m["num_layers"] or len(m["graphs"]["layers_attn"]) != m["num_layers"]:
        raise ValueError("manifest: graphs.layers / layers_attn must list num_layers files")
    if m["num_kv_heads"] == 0 or m["num_heads"] % m["num_kv_heads"]:
        raise ValueError("manifest: num_heads must be a multiple of num_kv_heads")
    if not isinstance(m["max_positions"], int) or m["max_positions"] < 1:
        raise ValueError(f"manifest: max_positions is {m['max_positions']!r}, expected an integer >= 1")
    v = m["video"]
    for key in ("num_frames", "frame_height", "frame_width", "grid_h", "grid_w"):
        if v[key] <= 0:
            raise ValueError(f"manifest: video.{key} is {v[key]}, expected > 0")
    if not (math.isfinite(v["rescale_factor"]) and v["rescale_factor"] > 0):
        raise ValueError(f"manifest: video.rescale_factor is {v['rescale_factor']}, expected finite > 0")
    if not all(math.isfinite(x) for x in v["image_mean"]):
        raise ValueError(f"manifest: video.image_mean {v['image_mean']} must be finite")
    if not all(math.isfinite(x) and x > 0 for x in v["image_std"]):
        raise ValueError(f"manifest: video.image_std {v['image_std']} must be finite and > 0")
    for key, tid in m["special_tokens"].items():
        if tid is not None and not 0 <= tid < m["vocab_size"]:
            raise ValueError(f"manifest: special_tokens.{key} is {tid}, outside the vocabulary {m['vocab_size']}")
    labels = m["prompt"]["option_labels"]
    if not 2 <= len(labels) <= 8 or len(set(labels)) != len(labels):
        raise ValueError(f"manifest: prompt.option_labels {labels} must be 2 to 8 distinct labels")
    if m["video"]["resize_mode"] not in ("stretch", "shortest_edge_crop"):
        raise ValueError("manifest: bad video.resize_mode")
    if m["video"]["resize_filter"] not in ("nearest", "bilinear", "bicubic"):
        raise ValueError("manifest: bad video.resize_filter")


def check_mrope(m: dict) -> None:
    """The `mrope` section: its four fields in order, numbers as src/package/manifest.rs checks them."""
    r = m["mrope"]
    if not isinstance(r, dict) or list(r) != MROPE_FIELDS:
        raise ValueError(f"manifest mrope: fields {list(r) if isinstance(r, dict) else r!r}, expected {MROPE_FIELDS}")
    tp = r["temporal_patch_size"]
    if not isinstance(tp, int) or tp < 1:
        raise ValueError(f"manifest: mrope.temporal_patch_size is {tp!r}, expected an integer >= 1")
    for key in ("tokens_per_second", "seconds_per_group"):
        x = r[key]
        if isinstance(x, bool) or not isinstance(x, (int, float)) or not math.isfinite(x) or x < 0:
            raise ValueError(f"manifest: mrope.{key} is {x!r}, expected a finite number >= 0")
    sections = r["sections"]
    if not (isinstance(sections, list) and len(sections) == 3 and all(isinstance(x, int) and x >= 0 for x in sections)):
        raise ValueError(f"manifest: mrope.sections is {sections!r}, expected 3 integers >= 0")
    if 2 * sum(sections) != m["rope_dim"]:
        raise ValueError(f"manifest: mrope.sections {sections} cover {2 * sum(sections)} rotary dims, "
                         f"but rope_dim is {m['rope_dim']}")


class _Dumper(yaml.SafeDumper):
    """Plain YAML for serde_yaml: no anchors/aliases, strings with newlines double-quoted."""

    def ignore_aliases(self, data):
        return True


def _str(dumper, value: str):
    style = '"' if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


def _dict(dumper, value: dict):
    return dumper.represent_mapping("tag:yaml.org,2002:map", value, flow_style=False)


_Dumper.add_representer(str, _str)
_Dumper.add_representer(dict, _dict)


def dump_yaml(data) -> str:
    """Block style, leaf lists in flow style (`layers: [1, 2]`), keys in insertion order."""
    return yaml.dump(data, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=10_000,
                     default_flow_style=None)


def package_name(name: str | None, src_dir: str) -> str:
    """The package's name: `name`, else the source directory's base name."""
    return name or os.path.basename(os.path.normpath(src_dir))


def finish_package(src_dir: str, out_dir: str, manifest: dict) -> None:
    """The last steps of every export: `src_dir`'s tokenizer.json copied, then model.yaml written."""
    shutil.copyfile(os.path.join(src_dir, c.TOKENIZER_FILE), os.path.join(out_dir, c.TOKENIZER_FILE))
    write(manifest, os.path.join(out_dir, c.MANIFEST_FILE))


def write(manifest: dict, path: str) -> None:
    check(manifest)
    text = dump_yaml(manifest)
    if yaml.safe_load(text) != manifest:
        raise AssertionError("model.yaml does not round-trip")
    with open(path, "w") as f:
        f.write(text)


def read(path: str) -> dict:
    with open(path) as f:
        m = yaml.safe_load(f)
    check(m)
    return m
