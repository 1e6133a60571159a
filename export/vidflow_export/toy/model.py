"""The toy model's architecture, tokenizer and prompt encoding.

The model IS a `LlavaNextVideoForConditionalGeneration`, so `python -m vidflow_export export`
exports it unchanged: a CLIP ViT applied to each frame on its own (no temporal mixing inside it),
the learned 2x2 convolutional pooler and the two-layer projector of LLaVA-NeXT-Video, and a
Llama decoder. All temporal reasoning happens in the decoder's attention over the video tokens.
"""

import json
import os

import torch

from .. import tokenizer as tk
from ..prompt import mvbench_prompt_spec, render
from ..tiny import PIL_BICUBIC, VIDEO_PROCESSOR_FILE, video_processor_settings

IMAGE_SIZE = 64

# Architecture (recorded in toy-train.json).
ARCH = {
    "vision": {"hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 3, "num_attention_heads": 2,
               "patch_size": 8, "image_size": IMAGE_SIZE},
    "vision_feature_layer": -1,
    "spatial_pool_mode": "conv",
    "spatial_pool_stride": 2,
    "text": {"hidden_size": 64, "intermediate_size": 192, "num_hidden_layers": 8, "num_attention_heads": 4,
             "num_key_value_heads": 2, "head_dim": 16, "rope_theta": 10000.0},
    "tokenizer_vocab_size": 512,
}


def tokens_per_frame(arch: dict = ARCH) -> int:
    grid = arch["vision"]["image_size"] // arch["vision"]["patch_size"] // arch["spatial_pool_stride"]
    return grid * grid


def prompt_spec() -> dict:
    return mvbench_prompt_spec(tk.VIDEO)


def train_tokenizer(texts: list[str], arch: dict = ARCH):
    """Byte-level BPE trained on the rendered prompts (each followed by an answer label)."""
    return tk.train(vocab_size=arch["tokenizer_vocab_size"], texts=texts)


def corpus(questions: list[str], candidates: list[list[str]], answers: list[int]) -> list[str]:
    spec = prompt_spec()
    return [render(spec, q, c).text + f"{spec['option_labels'][a]}) {tk.EOS}"
            for q, c, a in zip(questions, candidates, answers)]


def build_model(tok, arch: dict = ARCH, seed: int = 0):
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaNextVideoConfig, LlavaNextVideoForConditionalGeneration

    ids = {t: tok.token_to_id(t) for t in tk.SPECIAL_TOKENS}
    t = arch["text"]
    text = LlamaConfig(
        vocab_size=tok.get_vocab_size(with_added_tokens=True),
        hidden_size=t["hidden_size"],
        intermediate_size=t["intermediate_size"],
        num_hidden_layers=t["num_hidden_layers"],
        num_attention_heads=t["num_attention_heads"],
        num_key_value_heads=t["num_key_value_heads"],
        head_dim=t["head_dim"],
        max_position_embeddings=1024,
        rms_norm_eps=1e-5,
        rope_parameters={"rope_type": "default", "rope_theta": t["rope_theta"]},
        bos_token_id=ids[tk.BOS],
        eos_token_id=ids[tk.EOS],
        pad_token_id=ids[tk.PAD],
        tie_word_embeddings=False,
    )
    v = arch["vision"]
    vision = CLIPVisionConfig(
        image_size=v["image_size"],
        patch_size=v["patch_size"],
        hidden_size=v["hidden_size"],
        intermediate_size=v["intermediate_size"],
        num_hidden_layers=v["num_hidden_layers"],
        num_attention_heads=v["num_attention_heads"],
        projection_dim=v["hidden_size"],
    )
    config = LlavaNextVideoConfig(
        text_config=text,
        vision_config=vision,
        video_token_index=ids[tk.VIDEO],
        image_token_index=ids[tk.IMAGE],
        vision_feature_layer=arch["vision_feature_layer"],
        vision_feature_select_strategy="default",
        spatial_pool_mode=arch["spatial_pool_mode"],
        spatial_pool_stride=arch["spatial_pool_stride"],
        image_grid_pinpoints=[[v["image_size"], v["image_size"]]],
        image_seq_length=(v["image_size"] // v["patch_size"]) ** 2,
        video_seq_length=8 * tokens_per_frame(arch),
        tie_word_embeddings=False,
    )
    torch.manual_seed(seed)
    model = LlavaNextVideoForConditionalGeneration(config)
    if arch.get("init", "scaled") == "scaled":
        scaled_init(model, seed)
    return model


# Output projections that write into a residual stream (scaled down by depth, as GPT-2 does).
_RESIDUAL_OUT = ("o_proj", "down_proj", "out_proj", "fc2")


@torch.no_grad()
def scaled_init(model, seed: int) -> None:
    """Fan-in scaled initialisation. HF's default (std 0.02) suits hidden sizes in the thousands;
    at width 64 it leaves attention logits near zero and training sits on a long plateau."""
    g = torch.Generator().manual_seed(seed + 1)
    text_layers = model.config.text_config.num_hidden_layers
    vision_layers = model.config.vision_config.num_hidden_layers
    for name, p in model.named_parameters():
        if p.ndim >= 2:
            fan_in = p[0].numel()
            std = fan_in ** -0.5
            if name.endswith(tuple(f"{n}.weight" for n in _RESIDUAL_OUT)):
                layers = vision_layers if "vision_tower" in name else text_layers
                std /= (2 * layers) ** 0.5
            if "embed_tokens" in name:
                std = 1.0
            p.copy_(torch.randn(p.shape, generator=g) * std)
        elif name.endswith("bias"):
            p.zero_()
        # Norm weights keep their 1.0.


def save_hf(model, tok, out_dir: str, num_frames: int) -> None:
    """HF directory the exporter reads: weights, tokenizer, video processor settings."""
    os.makedirs(out_dir, exist_ok=True)
    model.save_pretrained(out_dir)
    tk.save_hf(tok, out_dir)
    settings = video_processor_settings()
    settings["num_frames"] = num_frames
    assert settings["resample"] == PIL_BICUBIC
    with open(os.path.join(out_dir, VIDEO_PROCESSOR_FILE), "w") as f:
        json.dump(settings, f, indent=2)


class PromptEncoder:
    """Token ids of a prompt exactly as vidflow builds them (src/prompt): bos, then the rendered
    prompt tokenized without special tokens, the video placeholder expanded to F*h*w video ids;
    and the id of each option label as the token that follows the answer prefix."""

    def __init__(self, tok, tokens_per_frame: int):
        self.tok = tok
        self.spec = prompt_spec()
        self.hw = tokens_per_frame
        self.bos = tok.token_to_id(tk.BOS)
        self.pad = tok.token_to_id(tk.PAD)
        self.video = tok.token_to_id(tk.VIDEO)
        self._label_ids = {}

    def encode(self, question: str, candidates: list[str], num_frames: int, statement: str | None = None) -> list[int]:
        """With a `statement` (text-only samples), the statement stands where the video goes."""
        if statement is not None:
            spec = dict(self.spec, video_placeholder=statement)
            return [self.bos] + self.tok.encode(render(spec, question, candidates).text, add_special_tokens=False).ids
        text = render(self.spec, question, candidates).text
        ids = self.tok.encode(text, add_special_tokens=False).ids
        if ids.count(self.video) != 1:
            raise ValueError(f"prompt holds {ids.count(self.video)} video placeholders")
        i = ids.index(self.video)
        return [self.bos] + ids[:i] + [self.video] * (num_frames * self.hw) + ids[i + 1:]

    def option_ends(self, ids: list[int], k: int) -> list[int]:
        """Positions of the newline that ends each of the `k` options (after the options header)."""
        start = len(ids) - 1 - ids[::-1].index(self.tok.token_to_id("Options"))
        newlines = [i for i in range(start, len(ids)) if ids[i] == self.tok.token_to_id("Ċ")]
        if len(newlines) < k + 1:
            raise ValueError("cannot find the end of every option")
        return newlines[1 : k + 1]

    # Words of an option that carry no content (for the alignment loss).
    _FUNCTION_WORDS = {"and", "to", "the", "it", "gets", "from", "in", "changes", "colour", "object"}

    def content_words(self, option: str) -> list[int]:
        """Token ids of the content words of an option as it appears in the prompt (after a
        space): `Up and to the left.` -> [Up, left]; `From red to blue.` -> [red, blue]."""
        out = []
        for word in option.replace(".", " ").split():
            if word.lower() not in self._FUNCTION_WORDS:
                out.append(self.tok.encode(" " + word, add_special_tokens=False).ids[0])
        return out[:4]

    def question_end(self, ids: list[int]) -> int:
        """Position of the last token of the question text (just before the options header)."""
        return len(ids) - 1 - ids[::-1].index(self.tok.token_to_id("Options")) - 2

    def content_start(self) -> int:
        """Index of the first token after the user prefix (where the video or statement starts)."""
        head = self.spec["system"] + self.spec["user_prefix"].rstrip()
        return 1 + len(self.tok.encode(head, add_special_tokens=False).ids)

    def continuation(self, candidates: list[str], answer: int) -> list[int]:
        """Tokens of the full answer after the answer prefix: `A) option text` and eos (trained
        as text; evaluation reads only the label at the last prompt position)."""
        label = self.spec["option_labels"][answer]
        rest = self.tok.encode(f") {candidates[answer]}", add_special_tokens=False).ids
        return [self._label_ids[label]] + rest + [self.tok.token_to_id(tk.EOS)]

    def label_ids(self, question: str, candidates: list[str]) -> list[int]:
        """Token id of each option's label after the answer prefix (prompt + label tokenized as
        one string; the prompt's tokens must be a prefix of it, as vidflow requires)."""
        text = render(self.spec, question, candidates).text
        base = self.tok.encode(text, add_special_tokens=False).ids
        out = []
        for label in self.spec["option_labels"][: len(candidates)]:
            if label not in self._label_ids:
                full = self.tok.encode(text + label, add_special_tokens=False).ids
                if full[: len(base)] != base or len(full) != len(base) + 1:
                    raise ValueError(f"label {label!r} merges with the answer prefix")
                self._label_ids[label] = full[-1]
            out.append(self._label_ids[label])
        return out
