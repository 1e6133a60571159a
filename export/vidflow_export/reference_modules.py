"""Vision-tower pieces that the converters of the paper's checkpoint layouts (pllava.py's CLIP,
internvl.py's InternViT) share: same parameter names, same math. What differs between the two
towers (attention layout, the block's norms and layer scales, embeddings) stays in each converter."""

from torch import nn


class VisionMlp(nn.Module):
    """fc1 -> `hidden_act` -> fc2 (CLIP's `CLIPMLP`, InternViT's `InternMLP`). The activation (no
    parameters) is held as `act_name`: the exported ONNX graph's node names follow it."""

    def __init__(self, vcfg, act_name: str = "act"):
        super().__init__()
        from transformers.activations import ACT2FN

        self.act_name = act_name
        setattr(self, act_name, ACT2FN[vcfg.hidden_act])
        self.fc1 = nn.Linear(vcfg.hidden_size, vcfg.intermediate_size)
        self.fc2 = nn.Linear(vcfg.intermediate_size, vcfg.hidden_size)

    def forward(self, x):
        return self.fc2(getattr(self, self.act_name)(self.fc1(x)))


class VisionEncoder(nn.Module):
    """`encoder`: `layers`, num_hidden_layers blocks of `layer_class(vcfg)`."""

    def __init__(self, vcfg, layer_class):
        super().__init__()
        self.layers = nn.ModuleList([layer_class(vcfg) for _ in range(vcfg.num_hidden_layers)])


def stack_hidden_states(h, layers, upto: int | None = None) -> list:
    """`output_hidden_states` of a layer stack from its input `h`: [h, layer 1 out, ..., layer N out];
    `upto` stops after that many layers (later entries are not computed)."""
    out = [h]
    for layer in layers[:upto]:
        h = layer(h)
        out.append(h)
    return out
