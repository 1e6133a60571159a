"""The extend-form decoder layer (docs/package.md: decoder layer).

Built from a HF Llama-family decoder layer's own submodules and weights (norms, q/k/v/o projections,
MLP; Phi-3's fused `qkv_proj` is split into q/k/v Linear modules when the layer is wrapped), but with
the attention written out here so that the graph has exactly the contract's I/O: past K/V are
concatenated in front of the computed rows, the additive mask is used as given (no causal mask is
added), KV heads are repeated for GQA, and scores, mask add and softmax run in float32.

`attention="fused"` (float32 only, no attention-weights output) exports the attention core (scores,
mask add, softmax, weighted sum) as one ONNX Runtime com.microsoft MultiHeadAttention node; the
PyTorch forward and the graph I/O are the same as the default's.
"""

import torch
from torch import nn


def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


ATTENTION_MODES = ("eager", "fused")


def attend(q, keys, values, mask, scaling: float):
    """q [B,H,Q,Dh], keys/values [B,H,K,Dh], additive mask [B,1,Q,K] -> (out [B,Q,H*Dh], probs).
    Scores, mask add and softmax in float32; the weighted sum in the dtype of `values`."""
    scores = torch.matmul(q.float(), keys.float().transpose(2, 3)) * scaling
    scores = scores + mask.float()
    probs = torch.softmax(scores, dim=-1)
    out = torch.matmul(probs.to(values.dtype), values)
    return out.transpose(1, 2).flatten(2), probs


class FusedAttention(torch.autograd.Function):
    """`attend` on q [B,Q,H*Dh]; exported as com.microsoft MultiHeadAttention with key/value in
    [B,H,K,Dh] (BNSH) layout and the mask as its attention_bias (added to the scaled scores, as here;
    a row with every key blocked gets uniform weights in both)."""

    @staticmethod
    def forward(ctx, q, keys, values, mask, scaling: float, num_heads: int):
        heads = q.unflatten(-1, (num_heads, -1)).transpose(1, 2)
        return attend(heads, keys, values, mask, scaling)[0]

    @staticmethod
    def symbolic(g, q, keys, values, mask, scaling: float, num_heads: int):
        absent = g.op("prim::Constant")
        absent.setType(torch._C.OptionalType.ofTensor())
        out = g.op("com.microsoft::MultiHeadAttention", q, keys, values, absent, absent, mask,
                   num_heads_i=num_heads, scale_f=scaling)
        out.setType(q.type())
        return out


def split_qkv(qkv: nn.Linear, q_size: int, kv_size: int) -> tuple[nn.Linear, nn.Linear, nn.Linear]:
    """A fused projection (Phi-3's `qkv_proj`: output rows q, then k, then v) as three separate Linear
    modules holding copies of its row blocks [0, q), [q, q+kv), [q+kv, q+2kv) (and of its bias, if any)."""
    if qkv.out_features != q_size + 2 * kv_size:
        raise ValueError(f"qkv_proj has {qkv.out_features} output rows, expected {q_size} + 2 * {kv_size}")
    parts = []
    start = 0
    for size in (q_size, kv_size, kv_size):
        lin = nn.Linear(qkv.in_features, size, bias=qkv.bias is not None,
                        dtype=qkv.weight.dtype, device=qkv.weight.device)
        with torch.no_grad():
            lin.weight.copy_(qkv.weight[start:start + size])
            if qkv.bias is not None:
                lin.bias.copy_(qkv.bias[start:start + size])
        parts.append(lin)
        start += size
    return tuple(parts)


class ExtendLayer(nn.Module):
    """Graph I/O is float32; `compute_dtype` is the dtype of the weights and of the residual stream."""

    def __init__(self, hf_layer, num_heads: int, num_kv_heads: int, head_dim: int, with_attn: bool = False,
                 attention: str = "eager"):
        super().__init__()
        if attention not in ATTENTION_MODES:
            raise ValueError(f"attention {attention!r}: expected one of {ATTENTION_MODES}")
        if attention == "fused" and with_attn:
            raise ValueError("fused attention has no attention-weights output: export the _attn graph eager")
        attn = hf_layer.self_attn
        self.input_layernorm = hf_layer.input_layernorm
        self.post_attention_layernorm = hf_layer.post_attention_layernorm
        if not hasattr(attn, "q_proj") and hasattr(attn, "qkv_proj"):
            # Phi-3: one fused projection; split into the same three Linear modules as Llama's.
            self.q_proj, self.k_proj, self.v_proj = split_qkv(
                attn.qkv_proj, num_heads * head_dim, num_kv_heads * head_dim)
        else:
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
        self.attention = attention
        if attention == "fused" and self.compute_dtype != torch.float32:
            raise ValueError(f"fused attention is float32 only, not {self.compute_dtype}")

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

        if self.attention == "fused":
            out = FusedAttention.apply(q.transpose(1, 2).flatten(2), keys, values, mask, float(self.scaling),
                                       self.num_heads)
        else:
            out, probs = attend(q, keys, values, mask, self.scaling)

        x = x + self.o_proj(out)
        x = x + self.mlp(self.post_attention_layernorm(x))

        outputs = (x.float(), k.float(), v.float())
        if self.with_attn:
            outputs = outputs + (probs,)
        return outputs


def wrap_layer(hf_layer, config, with_attn: bool = False, attention: str = "eager") -> ExtendLayer:
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    return ExtendLayer(
        hf_layer,
        num_heads=config.num_attention_heads,
        num_kv_heads=config.num_key_value_heads,
        head_dim=head_dim,
        with_attn=with_attn,
        attention=attention,
    ).eval()
