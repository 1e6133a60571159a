//! FLOP counts of layer calls, as the extend-form layer graphs execute them.
//!
//! One multiply-add is 2 FLOPs. A layer call computing Q rows against K keys (K = P + Q) costs
//!
//! - projections: `2·Q·D·(H·Dh + 2·Hkv·Dh)` (q, k, v) `+ 2·Q·H·Dh·D` (o);
//! - attention: `2·H·Q·K·Dh` (scores) `+ 2·H·Q·K·Dh` (weighted values): the graph's dense kernel
//!   computes every (row, key) pair of the call, masked or not, so blocked edges inside a call
//!   cost as much as open ones;
//! - MLP (gated): `3 · 2·Q·D·I`.
//!
//! The head costs `2·N·D·V` for N projected rows (the last position only, in every mode). Norms,
//! rotary, softmax and residual adds (O(Q·D) or O(H·Q·K), no matrix products) are left out, and so
//! are the vision tower and the embedding lookup, which every mode runs identically.

use serde::Serialize;

use super::shape::ModelShape;

/// The sizes FLOP counts depend on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FlopModel {
    pub hidden: u64,
    pub heads: u64,
    pub kv_heads: u64,
    pub head_dim: u64,
    pub mlp: u64,
    pub vocab: u64,
}

/// FLOPs of one layer call, by part.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
pub struct LayerFlops {
    pub projections: u64,
    pub attention: u64,
    pub mlp: u64,
}

impl LayerFlops {
    pub fn total(&self) -> u64 {
        self.projections + self.attention + self.mlp
    }
}

impl FlopModel {
    pub fn new(shape: &ModelShape) -> FlopModel {
        FlopModel {
            hidden: shape.hidden_size as u64,
            heads: shape.num_heads as u64,
            kv_heads: shape.num_kv_heads as u64,
            head_dim: shape.head_dim as u64,
            mlp: shape.intermediate_size as u64,
            vocab: shape.vocab_size as u64,
        }
    }

    /// One layer call computing `rows` rows against `keys` keys.
    pub fn layer(&self, rows: usize, keys: usize) -> LayerFlops {
        let (q, k) = (rows as u64, keys as u64);
        let (d, h, hkv, dh) = (self.hidden, self.heads, self.kv_heads, self.head_dim);
        LayerFlops {
            projections: 2 * q * d * (h * dh + 2 * hkv * dh) + 2 * q * h * dh * d,
            attention: 4 * h * q * k * dh,
            mlp: 6 * q * d * self.mlp,
        }
    }

    /// Projecting `rows` hidden states to logits.
    pub fn head(&self, rows: usize) -> u64 {
        2 * rows as u64 * self.hidden * self.vocab
    }
}
