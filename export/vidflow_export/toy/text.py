"""Stage 0, language pretraining: text-only multiple-choice questions in the evaluation template.

Published VideoLLMs start from a language model that already answers multiple-choice questions;
the toy model learns that first, from text alone. Each sample states the answer's content in a
sentence where the video would be ("USER: The circle is red.\\nQuestion: What colour is the
circle?..."), so the decoder learns to match an option against its context and emit that
option's label after "Best option:(". No visual content is involved: whatever the model later
knows about videos comes from the image and video stages.
"""

import re


def statement(question: str, answer: str) -> str:
    """A sentence stating `answer` to `question` (the question templates of `vidflow synth`)."""
    low = answer[0].lower() + answer[1:]
    if question == "What colour is the object?":
        return f"The object is {answer}."
    if question == "What shape is the object?":
        return f"The object is a {answer}."
    if question == "Where is the object?":
        return f"The object is {low}"
    m = re.fullmatch(r"What colour is the (\w+)\?", question)
    if m:
        return f"The {m.group(1)} is {answer}."
    m = re.fullmatch(r"What shape is the (\w+) object\?", question)
    if m:
        return f"The {m.group(1)} object is a {answer}."
    m = re.fullmatch(r"Where is the (\w+ \w+)\?", question)
    if m:
        return f"The {m.group(1)} is {low}"
    if question == "How many objects are there?":
        return f"There are {answer} objects."
    if question == "How many objects are moving when the video begins?":
        return f"{answer} objects are moving."
    if question == "In which direction does the moving object move?":
        return f"The moving object moves {low}"
    if question == "How does the size of the object change?":
        return f"The object {low[3:]}" if low.startswith("it ") else f"The object: {low}"
    if question == "How does the background colour change?":
        return f"The background changes {low}"
    if question == "What happens first?":
        return f"First, {low}"
    raise ValueError(f"no statement template for the question {question!r}")
