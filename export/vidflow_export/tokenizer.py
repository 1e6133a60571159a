"""A tiny byte-level BPE tokenizer trained on a generated corpus of video-QA prompts.

The defaults are the LLaVA-NeXT-Video family's (its special tokens, the MVBench-style prompt); another
family passes its own special tokens, prompt spec and answer ending (qwen2_5_vl.py)."""

import random

from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers

from .prompt import mvbench_prompt_spec, render

BOS = "<s>"
EOS = "</s>"
PAD = "<pad>"
VIDEO = "<video>"
# LLaVA-NeXT-Video configs also need an image token id; it never appears in prompts here.
IMAGE = "<image>"
SPECIAL_TOKENS = [BOS, EOS, PAD, VIDEO, IMAGE]
# The Qwen2 (ChatML) tokenizers' text special tokens, shared by the Qwen2-based families.
ENDOFTEXT = "<|endoftext|>"
IM_START = "<|im_start|>"
IM_END = "<|im_end|>"

_SUBJECTS = ["the man", "the woman", "the child", "the dog", "the cat", "the red ball", "the car",
             "the person", "the bird", "the robot", "the girl", "the boy", "the cube", "the player"]
_VERBS = ["open", "close", "pick up", "put down", "throw", "catch", "push", "pull", "move", "turn",
          "roll", "drop", "lift", "hold", "rotate", "hit", "kick", "wave", "jump", "run"]
_OBJECTS = ["the door", "the box", "the ball", "the cup", "the book", "the bottle", "the chair",
            "the bag", "the phone", "the table", "the window", "the toy", "the shoe", "the wall"]
_DIRECTIONS = ["left", "right", "up", "down", "forward", "backward", "clockwise", "counterclockwise"]
_QUESTION_FORMS = [
    "What does {s} do after {s2} {v}s {o}?",
    "What happens before {s} {v}s {o}?",
    "In which direction does {s} move?",
    "How many times does {s} {v} {o}?",
    "What is the order of the actions of {s}?",
    "Which object does {s} {v} first?",
    "Is {s} moving {d} or {d2}?",
    "What did {s} do with {o}?",
]
_OPTION_FORMS = ["{s} {v}s {o}", "it moves {d}", "{n} times", "nothing happens", "{s} stops",
                 "it turns {d}", "{o} falls", "{s} {v}s it {d}"]


def _fill(rng: random.Random, form: str) -> str:
    d, d2 = rng.sample(_DIRECTIONS, 2)
    s, s2 = rng.sample(_SUBJECTS, 2)
    return form.format(s=s, s2=s2, v=rng.choice(_VERBS), o=rng.choice(_OBJECTS), d=d, d2=d2,
                       n=rng.randint(1, 9))


def corpus(seed: int = 0, n: int = 400, spec: dict | None = None, answer_end: str = f") {EOS}",
           num_frames: int | None = None) -> list[str]:
    """Rendered multiple-choice prompts with random questions and options, plus answers: the
    label followed by `answer_end`. `spec` defaults to the MVBench-style spec with `<video>`;
    `num_frames`: the frames of a per-frame spec (prompt.render)."""
    rng = random.Random(seed)
    spec = mvbench_prompt_spec(VIDEO) if spec is None else spec
    texts = []
    for _ in range(n):
        question = _fill(rng, rng.choice(_QUESTION_FORMS))
        question = question[0].upper() + question[1:]
        options = [_fill(rng, rng.choice(_OPTION_FORMS)).capitalize() for _ in range(rng.randint(2, 6))]
        label = spec["option_labels"][rng.randrange(len(options))]
        texts.append(render(spec, question, options, num_frames=num_frames).text + label + answer_end)
    return texts


def train_on_prompts(spec: dict, special_tokens: list[str], answer_end: str, seed: int = 0,
                     num_frames: int | None = None) -> Tokenizer:
    """A family's tiny tokenizer: trained on the generated corpus rendered with its prompt `spec`
    (each prompt followed by its answer and `answer_end`; `num_frames` frames for a per-frame spec),
    its `special_tokens` at ids 0.."""
    return train(seed=seed, texts=corpus(seed, spec=spec, answer_end=answer_end, num_frames=num_frames),
                 special_tokens=special_tokens)


def train(vocab_size: int = 800, seed: int = 0, texts: list[str] | None = None,
          special_tokens: list[str] | None = None) -> Tokenizer:
    """Trains the tokenizer on `texts` (default: the generated corpus of `seed`); the special
    tokens (default SPECIAL_TOKENS) get ids 0.. in that order."""
    special_tokens = SPECIAL_TOKENS if special_tokens is None else special_tokens
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    # Trims the leading space out of each token's character offsets (for token groups); adds nothing.
    tok.post_processor = processors.ByteLevel(trim_offsets=True)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(special_tokens),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus(seed) if texts is None else texts, trainer=trainer)
    for t in special_tokens:
        if len(tok.encode(t, add_special_tokens=False).ids) != 1:
            raise AssertionError(f"special token {t} does not tokenize to one id")
    return tok


def save_hf(tok: Tokenizer, out_dir: str, bos: str | None = BOS, eos: str = EOS, pad: str = PAD,
            extra: dict | None = None) -> None:
    """Saves `tokenizer.json` plus the HF tokenizer config files next to the model (`bos` None: the
    family has no BOS token; `extra`: named special tokens, default the LLaVA video/image ones)."""
    from transformers import PreTrainedTokenizerFast

    hf = PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token=bos,
        eos_token=eos,
        pad_token=pad,
        extra_special_tokens={"video_token": VIDEO, "image_token": IMAGE} if extra is None else extra,
    )
    hf.save_pretrained(out_dir)
    # The raw file the package ships, exactly as trained (no HF-side rewrites).
    tok.save(f"{out_dir}/tokenizer.json")
