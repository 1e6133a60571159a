//! A mask schedule: which edges are open in each layer of a full prefill.

use crate::error::{Error, Result};
use crate::mask::EdgeMask;

/// One single-entry [`EdgeMask`] per layer over all positions `0..S` (queries and keys). Layers
/// with identical masks share one stored mask: configs switch rules on and off in a few layer
/// ranges, so a 30-layer schedule typically holds 5 distinct masks.
#[derive(Debug, Clone, PartialEq)]
pub struct MaskSchedule {
    seq_len: usize,
    masks: Vec<EdgeMask>,
    /// Per layer, the index of its mask in `masks`.
    layer_mask: Vec<usize>,
    /// Open edges per layer, counted once (plans and reports read them repeatedly).
    open: Vec<usize>,
    /// Layers of the model; more than `layer_mask.len()` when the schedule exits early (the
    /// answer is read after its last layer, and the model's later layers never run).
    model_layers: usize,
}

impl MaskSchedule {
    /// Checks that every mask has batch 1 and covers positions `0..S` in order as queries and keys.
    pub fn new(layers: Vec<EdgeMask>) -> Result<MaskSchedule> {
        let seq_len = layers
            .first()
            .ok_or_else(|| Error::Input("a mask schedule needs at least one layer".into()))?
            .queries()
            .len();
        for (l, m) in layers.iter().enumerate() {
            let in_order =
                |p: &[usize]| p.len() == seq_len && p.iter().enumerate().all(|(i, &x)| i == x);
            if m.batch() != 1 || !in_order(m.queries()) || !in_order(m.keys()) {
                return Err(Error::Input(format!(
                    "mask schedule layer {l}: expected batch 1 over positions 0..{seq_len} as \
                     queries and keys, got batch {} with {} queries and {} keys",
                    m.batch(),
                    m.queries().len(),
                    m.keys().len()
                )));
            }
        }
        // Equal masks are stored once, so that the layers sharing one share its upload.
        let mut masks: Vec<EdgeMask> = Vec::new();
        let mut layer_mask = Vec::with_capacity(layers.len());
        let mut open = Vec::with_capacity(layers.len());
        for m in layers {
            open.push(m.open_edges()[0]);
            match masks.iter().position(|kept| *kept == m) {
                Some(i) => layer_mask.push(i),
                None => {
                    layer_mask.push(masks.len());
                    masks.push(m);
                }
            }
        }
        Ok(MaskSchedule {
            seq_len,
            model_layers: layer_mask.len(),
            layer_mask,
            masks,
            open,
        })
    }

    /// For each layer, the index of its stored mask: equal indices, one mask. Builders store each
    /// distinct mask once ([`MaskSchedule::new`] compares them; configs share by rule signature).
    pub fn mask_ids(&self) -> &[usize] {
        &self.layer_mask
    }

    /// For builders that know which layers share a mask and each mask's open-edge count.
    pub(crate) fn from_shared(
        seq_len: usize,
        masks: Vec<EdgeMask>,
        layer_mask: Vec<usize>,
        open_per_mask: &[usize],
    ) -> MaskSchedule {
        debug_assert!(masks
            .iter()
            .zip(open_per_mask)
            .all(|(m, &n)| m.open_edges()[0] == n && m.queries().len() == seq_len));
        MaskSchedule {
            seq_len,
            model_layers: layer_mask.len(),
            open: layer_mask.iter().map(|&i| open_per_mask[i]).collect(),
            masks,
            layer_mask,
        }
    }

    /// Plain causal attention in every layer.
    pub fn full_causal(num_layers: usize, seq_len: usize) -> MaskSchedule {
        MaskSchedule {
            seq_len,
            masks: vec![EdgeMask::full_causal(1, seq_len)],
            layer_mask: vec![0; num_layers],
            open: vec![seq_len * (seq_len + 1) / 2; num_layers],
            model_layers: num_layers,
        }
    }

    /// The schedule of an early answer: layers `1..=k` (1-based) run, the answer is read after
    /// layer `k` through final norm + head, and no later layer runs.
    pub fn exit_after(&self, k: usize) -> Result<MaskSchedule> {
        if k == 0 || k > self.model_layers {
            return Err(Error::Input(format!(
                "exit layer {k}: expected a layer from 1 to {} (the answer is read after it)",
                self.model_layers
            )));
        }
        let mut out = self.clone();
        out.layer_mask.truncate(k);
        out.open.truncate(k);
        Ok(out)
    }

    /// Layers of the model the schedule was made for.
    pub fn model_layers(&self) -> usize {
        self.model_layers
    }

    /// The 1-based layer after which the answer is read, when it is not the model's last.
    pub fn exit_layer(&self) -> Option<usize> {
        (self.num_layers() < self.model_layers).then_some(self.num_layers())
    }

    pub fn seq_len(&self) -> usize {
        self.seq_len
    }
    /// Layers that run (the model's, or fewer for an early exit).
    pub fn num_layers(&self) -> usize {
        self.layer_mask.len()
    }
    pub fn layer(&self, l: usize) -> &EdgeMask {
        &self.masks[self.layer_mask[l]]
    }
    /// The masks of layers `0..L`, in order.
    pub fn layers(&self) -> impl Iterator<Item = &EdgeMask> + '_ {
        self.layer_mask.iter().map(|&i| &self.masks[i])
    }

    /// Whether query position `q` reads key position `k` in layer `l`.
    pub fn is_open(&self, l: usize, q: usize, k: usize) -> bool {
        !self.layer(l).blocked()[[0, q, k]]
    }

    /// Open (query, key) pairs per layer.
    pub fn open_edges(&self) -> &[usize] {
        &self.open
    }

    /// Causal pairs of one layer, S(S+1)/2: the edge count of an unpruned layer.
    pub fn causal_edges_per_layer(&self) -> usize {
        self.seq_len * (self.seq_len + 1) / 2
    }
}
