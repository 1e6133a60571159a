"""The extend-form decoder layer (docs/package.md: decoder layer).

Built from a HF Llama-family decoder layer's own submodules and weights (norms, q/k/v/o projections,
MLP), but with the attention written out here so that the graph has exactly the contract's I/O:
past K/V are concatenated in front of the computed rows, the additive mask is used as given (no causal
mask is added), KV heads are repeated for GQA, and scores, mask add and softmax run in float32.
"""

import torch
from torch import nn


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class ExtendLayer(nn.Module):
    """Graph I/O is float32; `compute_dtype` is the dtype of the weights and of the residual stream."""

    def __init__(self, hf_layer, num_heads: int, num_kv_heads: int, head_dim: int, with_attn: bool = False):
        super().__init__()
        attn = hf_layer.self_attn
        self.input_layernorm = hf_layer.input_layernorm
        self.post_attention_layernorm = hf_layer.post_attention_layernorm
        self.q_proj = attn.q_proj
        self.k_proj = attn.k_proj
        self.v_proj = attn.v_proj
        self.o_proj = attn.o_proj
        self.mlp = hf_layer.mlp
        self.num_heads = num_heads
        self.num_kv_heads = num_kv_heads
        self.head_dim = head_dim
        self.scaling = getattr(attn, "scaling", head_dim**-0.5)
        self.with_attn = with_attn

    @property
    def compute_dtype(self) -> torch.dtype:
        return self.q_proj.weight.dtype

    def _heads(self, x: torch.Tensor) -> torch.Tensor:
        # [B,Q,n*Dh] -> [B,n,Q,Dh]
        return x.unflatten(-1, (-1, self.head_dim)).transpose(1, 2)

    def _repeat_kv(self, x: torch.Tensor) -> torch.Tensor:
        n_rep = self.num_heads // self.num_kv_heads
        if n_rep == 1:
            return x
        # [B,Hkv,K,Dh] -> [B,Hkv*n_rep,K,Dh], each kv head repeated n_rep times in a row
        return x.unsqueeze(2).expand(-1, -1, n_rep, -1, -1).flatten(1, 2)

    def forward(self, hidden, cos, sin, past_key, past_value, mask):
        dt = self.compute_dtype
        x = hidden.to(dt)
        cos = cos.to(dt).unsqueeze(1)
        sin = sin.to(dt).unsqueeze(1)

        h = self.input_layernorm(x)
        q = self._heads(self.q_proj(h))
        k = self._heads(self.k_proj(h))
        v = self._heads(self.v_proj(h))
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin

        keys = torch.cat((past_key.to(dt), k), dim=2)
        values = torch.cat((past_value.to(dt), v), dim=2)
        keys = self._repeat_kv(keys)
        values = self._repeat_kv(values)

        scores = torch.matmul(q.float(), keys.float().transpose(2, 3)) * self.scaling
        scores = scores + mask.float()
        probs = torch.softmax(scores, dim=-1)
        out = torch.matmul(probs.to(dt), values)
        out = out.transpose(1, 2).flatten(2)

        x = x + self.o_proj(out)
        x = x + self.mlp(self.post_attention_layernorm(x))

        outputs = (x.float(), k.float(), v.float())
        if self.with_attn:
            outputs = outputs + (probs,)
        return outputs


def wrap_layer(hf_layer, config, with_attn: bool = False) -> ExtendLayer:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return ExtendLayer(
        hf_layer,
        num_heads=config.num_attention_heads,
        num_kv_heads=config.num_key_value_heads,
        head_dim=head_dim,
        with_attn=with_attn,
    ).eval()
