"""The multiple-choice prompt (manifest `prompt:` section) and its rendering.

The rendering order is the one documented on `PromptSpec` in src/package/manifest.rs:
system, user_prefix, video_placeholder, after_video, question_prefix, <question>, options_header,
<options joined by option_separator>, instruction, assistant_prefix, answer_prefix.

`render_open` is the open-ended (free generation) form of the same spec: system, user_prefix,
video_placeholder, after_video, <question>, assistant_prefix.
"""

from dataclasses import dataclass

# LLaVA / Vicuna system text used by the MVBench-style evaluation.
VICUNA_SYSTEM = (
    "A chat between a curious user and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the user's questions."
)


def mvbench_prompt_spec(video_placeholder: str = "<video>") -> dict:
    """The manifest's prompt spec, LLaVA/Vicuna MVBench style (keys in manifest order)."""
    return {
        "system": VICUNA_SYSTEM,
        "user_prefix": " USER: ",
        "video_placeholder": video_placeholder,
        "after_video": "\n",
        "question_prefix": "Question: ",
        "options_header": "\nOptions:\n",
        "option_format": "({label}) {text}",
        "option_separator": "\n",
        "option_labels": list("ABCDEFGH"),
        "instruction": "\nOnly give the best option.",
        "assistant_prefix": " ASSISTANT: ",
        "answer_prefix": "Best option:(",
    }


@dataclass
class Rendered:
    """A rendered prompt and the character spans [start, end) of its parts."""

    text: str
    video: tuple[int, int]
    # Question text without options.
    question_text: tuple[int, int]
    # The whole question block: question text, options header and options.
    question: tuple[int, int]
    options: list[tuple[int, int]]


def render(spec: dict, question: str, options: list[str]) -> Rendered:
    if len(options) > len(spec["option_labels"]):
        raise ValueError(f"{len(options)} options but only {len(spec['option_labels'])} labels")
    parts: list[str] = []
    pos = 0

    def add(s: str) -> tuple[int, int]:
        nonlocal pos
        parts.append(s)
        start = pos
        pos += len(s)
        return (start, pos)

    add(spec["system"])
    add(spec["user_prefix"])
    video = add(spec["video_placeholder"])
    add(spec["after_video"])
    add(spec["question_prefix"])
    question_text = add(question)
    add(spec["options_header"])
    option_spans = []
    for i, (label, text) in enumerate(zip(spec["option_labels"], options)):
        if i:
            add(spec["option_separator"])
        option_spans.append(add(spec["option_format"].format(label=label, text=text)))
    question_block = (question_text[0], pos)
    add(spec["instruction"])
    add(spec["assistant_prefix"])
    add(spec["answer_prefix"])
    return Rendered("".join(parts), video, question_text, question_block, option_spans)


def render_open(prompt_spec: dict, question: str) -> str:
    """The open-ended prompt: `system + user_prefix + video_placeholder + after_video + question +
    assistant_prefix` (no question_prefix, options, instruction or answer_prefix); the model's
    answer is generated after it."""
    p = prompt_spec
    return p["system"] + p["user_prefix"] + p["video_placeholder"] + p["after_video"] + question + p["assistant_prefix"]
