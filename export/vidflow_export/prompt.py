"""The multiple-choice prompt (manifest `prompt:` section) and its rendering.

The rendering order is the one documented on `PromptSpec` in src/package/manifest.rs:
system, user_prefix, <video>, after_video, question_prefix, <question>, options_header,
<options joined by option_separator>, instruction, assistant_prefix, answer_prefix.

`render_open` is the open-ended (free generation) form of the same spec: system, user_prefix,
<video>, after_video, <question>, assistant_prefix.

`<video>` is `video_placeholder` once, or, when the spec sets any of the optional `frame_prefix`,
`frame_suffix`, `frame_separator` (written in the manifest only when non-empty; VideoLLaMA3's
`Time 1.0s:` and `,`), one placeholder per frame: `frame_separator`-joined `frame_prefix +
video_placeholder + frame_suffix`, where `{i}` in the prefix and suffix is the frame number from 1
and `{t}` the frame's time in seconds with one decimal (frame i at i seconds unless told).
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


# The optional per-frame fields of the prompt spec, in manifest order (after answer_prefix).
FRAME_FIELDS = ("frame_prefix", "frame_suffix", "frame_separator")


def per_frame(spec: dict) -> bool:
    """Whether the spec writes the video frame by frame (any frame field non-empty)."""
    return any(spec.get(k) for k in FRAME_FIELDS)


def frame_text(template: str, i: int, t: float) -> str:
    """`frame_prefix` / `frame_suffix` of frame i (0-based) at time t: `{i}` -> i + 1, `{t}` -> t
    with one decimal; every other character literal (no str.format, so braces elsewhere stay)."""
    return template.replace("{i}", str(i + 1)).replace("{t}", f"{t:.1f}")


def frame_times_or_default(num_frames: int | None, frame_times=None) -> list[float]:
    """The frames' times in seconds: `frame_times`, else frame i at i seconds (HF VideoLLaMA3's
    fallback fps = 1 for pre-sampled frames)."""
    if frame_times is not None:
        if num_frames is not None and len(frame_times) != num_frames:
            raise ValueError(f"{len(frame_times)} frame times for {num_frames} frames")
        return [float(t) for t in frame_times]
    if num_frames is None:
        raise ValueError("a per-frame prompt needs num_frames or frame_times")
    return [float(i) for i in range(num_frames)]


@dataclass
class Rendered:
    """A rendered prompt and the character spans [start, end) of its parts."""

    text: str
    # The whole video region: the one placeholder, or from the first frame_prefix to the last
    # frame_suffix in a per-frame prompt.
    video: tuple[int, int]
    # Question text without options.
    question_text: tuple[int, int]
    # The whole question block: question text, options header and options.
    question: tuple[int, int]
    options: list[tuple[int, int]]
    # The span of each video placeholder (one per frame in a per-frame prompt, else one).
    placeholders: list[tuple[int, int]] | None = None


def _add_video(spec: dict, add, num_frames: int | None, frame_times) -> tuple[tuple[int, int], list]:
    """Adds the video part through `add`; returns (span of the whole video, placeholder spans)."""
    if not per_frame(spec):
        span = add(spec["video_placeholder"])
        return span, [span]
    times = frame_times_or_default(num_frames, frame_times)
    if not times:
        raise ValueError("a per-frame prompt needs at least one frame")
    prefix, suffix, sep = (spec.get(k, "") for k in FRAME_FIELDS)
    spans, start, end = [], None, None
    for i, t in enumerate(times):
        if i:
            add(sep)
        first = add(frame_text(prefix, i, t))
        spans.append(add(spec["video_placeholder"]))
        last = add(frame_text(suffix, i, t))
        start = first[0] if start is None else start
        end = last[1]
    return (start, end), spans


class _Parts:
    """The rendered text so far, part by part, with the character span of each part."""

    def __init__(self):
        self.parts: list[str] = []
        self.pos = 0

    def add(self, s: str) -> tuple[int, int]:
        self.parts.append(s)
        start = self.pos
        self.pos += len(s)
        return (start, self.pos)

    def text(self) -> str:
        return "".join(self.parts)


def _through_video(spec: dict, num_frames: int | None, frame_times) -> tuple[_Parts, tuple[int, int], list]:
    """system, user_prefix, <video>, after_video: the opening both prompt forms share; returns the
    parts, the video span and the placeholder spans."""
    out = _Parts()
    out.add(spec["system"])
    out.add(spec["user_prefix"])
    video, placeholders = _add_video(spec, out.add, num_frames, frame_times)
    out.add(spec["after_video"])
    return out, video, placeholders


def render(spec: dict, question: str, options: list[str], frame_times=None, num_frames: int | None = None) -> Rendered:
    """The multiple-choice prompt. A per-frame spec needs `num_frames` (frame i at i seconds) or
    `frame_times` (seconds, one per frame); a spec without frame fields ignores both."""
    if len(options) > len(spec["option_labels"]):
        raise ValueError(f"{len(options)} options but only {len(spec['option_labels'])} labels")
    out, video, placeholders = _through_video(spec, num_frames, frame_times)
    out.add(spec["question_prefix"])
    question_text = out.add(question)
    out.add(spec["options_header"])
    option_spans = []
    for i, (label, text) in enumerate(zip(spec["option_labels"], options)):
        if i:
            out.add(spec["option_separator"])
        option_spans.append(out.add(spec["option_format"].format(label=label, text=text)))
    question_block = (question_text[0], out.pos)
    out.add(spec["instruction"])
    out.add(spec["assistant_prefix"])
    out.add(spec["answer_prefix"])
    return Rendered(out.text(), video, question_text, question_block, option_spans, placeholders)


def render_open_parts(prompt_spec: dict, question: str, frame_times=None, num_frames: int | None = None) -> Rendered:
    """`render_open` with the character spans (no options: `question` is the question text)."""
    out, video, placeholders = _through_video(prompt_spec, num_frames, frame_times)
    q = out.add(question)
    out.add(prompt_spec["assistant_prefix"])
    return Rendered(out.text(), video, q, q, [], placeholders)


def render_open(prompt_spec: dict, question: str, frame_times=None, num_frames: int | None = None) -> str:
    """The open-ended prompt: `system + user_prefix + <video> + after_video + question +
    assistant_prefix` (no question_prefix, options, instruction or answer_prefix); the model's
    answer is generated after it. `<video>` as in `render`."""
    return render_open_parts(prompt_spec, question, frame_times, num_frames).text
