//! Video-prefix reuse. The rows before the question (system text, the video, the template text
//! between them) never read the question: under causal attention, and under any schedule whose
//! masks over those rows do not depend on what follows, their K/V (and hidden states) are the same
//! for every question about one video and frame sampling. A [`PrefixCache`] computes them once per
//! (pixels, prefix tokens, layers, masks over the prefix) and hands them out as `past` for the
//! question's rows, which are all that is computed per question.
//!
//! A prefix is not reused when a prefix row has no open key under the schedule: the reference
//! gives such a row uniform attention over the whole sequence, question rows included, so it
//! depends on the question.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ndarray::{Array2, Array4, ArrayView4};
use serde::Serialize;

use super::forward::{forward_until, ForwardSpec, Keep, LayerKv};
use super::inputs::{embed_tokens, encode_video, rotary, splice_video};
use super::masks::Masks;
use super::positions::Positions;
use super::pruned::restricted_mask;
use crate::error::{Error, Result};
use crate::mask::{EdgeMask, MaskedRows};
use crate::package::Package;
use crate::pathway::MaskSchedule;
use crate::prompt::VideoSlot;
use crate::runtime::Tensor;

/// The computed prefix of one (video, prompt head, masks): positions `0..len`.
#[derive(Debug)]
pub struct Prefix {
    pub len: usize,
    /// Per computed layer, `[1,Hkv,P,Dh]`.
    pub kv: Vec<LayerKv>,
    /// When kept: entry `l` is the input of layer `l` over the prefix rows `[1,P,D]` (entry 0 the
    /// spliced embeddings), the last entry the output of the last computed layer.
    pub hidden: Vec<Tensor>,
}

impl Prefix {
    fn bytes(&self) -> u64 {
        let kv: u64 = self
            .kv
            .iter()
            .map(|l| l.key.bytes() + l.value.bytes())
            .sum();
        kv + self.hidden.iter().map(Tensor::bytes).sum::<u64>()
    }

    pub fn num_layers(&self) -> usize {
        self.kv.len()
    }
}

/// What the prefix rows are made of: the video's pixels and the prompt's token ids up to the
/// question, with the video placeholder still in place.
#[derive(Debug, Clone, Copy)]
pub struct PrefixInputs<'a> {
    pub pixels: ArrayView4<'a, f32>,
    pub ids: &'a [i64],
    /// The video placeholders in `ids` and their rows.
    pub slots: &'a [VideoSlot],
    /// Spliced length P: `ids.len() - slots + video tokens`.
    pub len: usize,
    /// The video's seconds between sampled frames (M-RoPE time positions; see
    /// `SampleInputs::seconds_per_frame`).
    pub seconds_per_frame: Option<f64>,
}

/// How the prefix rows attend among themselves.
#[derive(Debug, Clone, Copy)]
pub enum PrefixMasks<'a> {
    Causal,
    /// The schedule's masks restricted to the prefix rows and keys.
    Schedule(&'a MaskSchedule),
}

/// Counters of a cache, for reports and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct PrefixStats {
    pub hits: u64,
    pub misses: u64,
    /// Requests whose schedule leaves a prefix row without an open key (computed in full).
    pub not_reusable: u64,
    pub entries: usize,
    pub bytes: u64,
}

type Key = [u8; 32];

struct Inner {
    /// Most recently used last.
    entries: Vec<(Key, Arc<Prefix>, u64)>,
    stats: PrefixStats,
}

/// Prefixes by content, least recently used evicted first, within a byte budget (0 turns reuse
/// off: every request is computed in full by its caller).
pub struct PrefixCache {
    budget: Mutex<u64>,
    inner: Mutex<Inner>,
}

impl PrefixCache {
    pub fn new(budget_bytes: u64) -> PrefixCache {
        PrefixCache {
            budget: Mutex::new(budget_bytes),
            inner: Mutex::new(Inner {
                entries: Vec::new(),
                stats: PrefixStats::default(),
            }),
        }
    }

    pub fn enabled(&self) -> bool {
        *self.budget.lock().expect("budget") > 0
    }

    /// Changes the budget; entries beyond it are dropped.
    pub fn set_budget(&self, bytes: u64) {
        *self.budget.lock().expect("budget") = bytes;
        let mut inner = self.inner.lock().expect("prefix cache");
        evict(&mut inner, bytes);
    }

    pub fn stats(&self) -> PrefixStats {
        self.inner.lock().expect("prefix cache").stats
    }

    /// Drops every entry (the counters stay).
    pub fn clear(&self) {
        let mut inner = self.inner.lock().expect("prefix cache");
        evict(&mut inner, 0);
    }

    /// The prefix of `inputs` computed through `layers` layers under `masks`, from the cache or
    /// computed now (and kept when it fits the budget). `None` when reuse is off or the masks
    /// make the prefix depend on the question: the caller computes the whole sequence.
    pub fn get(
        &self,
        pkg: &Package,
        inputs: &PrefixInputs<'_>,
        masks: PrefixMasks<'_>,
        layers: usize,
        keep_hidden: bool,
    ) -> Result<Option<Arc<Prefix>>> {
        let budget = *self.budget.lock().expect("budget");
        if budget == 0 {
            return Ok(None);
        }
        let Some(key) = key_of(inputs, masks, layers) else {
            self.inner.lock().expect("prefix cache").stats.not_reusable += 1;
            return Ok(None);
        };
        {
            let mut inner = self.inner.lock().expect("prefix cache");
            if let Some(i) = inner
                .entries
                .iter()
                .position(|(k, p, _)| *k == key && (!keep_hidden || !p.hidden.is_empty()))
            {
                let entry = inner.entries.remove(i);
                let found = Arc::clone(&entry.1);
                inner.entries.push(entry);
                inner.stats.hits += 1;
                return Ok(Some(found));
            }
        }
        let prefix = Arc::new(compute(pkg, inputs, masks, layers, keep_hidden)?);
        let bytes = prefix.bytes();
        let mut inner = self.inner.lock().expect("prefix cache");
        inner.stats.misses += 1;
        inner.entries.retain(|(k, _, _)| *k != key);
        if bytes <= budget {
            inner.entries.push((key, Arc::clone(&prefix), bytes));
        }
        evict(&mut inner, budget);
        Ok(Some(prefix))
    }
}

fn evict(inner: &mut Inner, budget: u64) {
    let mut total: u64 = inner.entries.iter().map(|e| e.2).sum();
    while total > budget {
        let (_, _, b) = inner.entries.remove(0);
        total -= b;
    }
    inner.stats.entries = inner.entries.len();
    inner.stats.bytes = total;
}

/// The content key of a prefix, or `None` when a prefix row has no open key in some layer.
fn key_of(inputs: &PrefixInputs<'_>, masks: PrefixMasks<'_>, layers: usize) -> Option<Key> {
    let mut h = blake3::Hasher::new();
    h.update(b"vidflow prefix v1");
    h.update(&(inputs.len as u64).to_le_bytes());
    for s in inputs.slots {
        h.update(&(s.index as u64).to_le_bytes());
        h.update(&(s.rows as u64).to_le_bytes());
    }
    h.update(
        &inputs
            .seconds_per_frame
            .map_or(u64::MAX, f64::to_bits)
            .to_le_bytes(),
    );
    h.update(&(layers as u64).to_le_bytes());
    for d in inputs.pixels.shape() {
        h.update(&(*d as u64).to_le_bytes());
    }
    let pixels = inputs.pixels.as_standard_layout();
    let values = pixels.as_slice().expect("standard layout");
    if cfg!(target_endian = "little") {
        // SAFETY: f32 has no padding; on a little-endian machine its bytes are its LE encoding.
        let bytes = unsafe {
            std::slice::from_raw_parts(values.as_ptr().cast::<u8>(), std::mem::size_of_val(values))
        };
        h.update(bytes);
    } else {
        for x in values {
            h.update(&x.to_le_bytes());
        }
    }
    h.update(&(inputs.ids.len() as u64).to_le_bytes());
    for id in inputs.ids {
        h.update(&id.to_le_bytes());
    }
    match masks {
        PrefixMasks::Causal => {
            h.update(b"causal");
        }
        PrefixMasks::Schedule(schedule) => {
            let p = inputs.len;
            // Layers sharing one stored mask are hashed once (by address), the sharing itself by
            // each layer's first twin.
            let mut seen: HashMap<*const EdgeMask, usize> = HashMap::new();
            for l in 0..layers.min(schedule.num_layers()) {
                let m = schedule.layer(l);
                let first = *seen.entry(std::ptr::from_ref(m)).or_insert(l);
                h.update(&(first as u64).to_le_bytes());
                if first != l {
                    continue;
                }
                let blocked = m.blocked().as_standard_layout();
                let flags = blocked.as_slice().expect("standard layout");
                let s = schedule.seq_len();
                for q in 0..p {
                    let row = &flags[q * s..q * s + p];
                    if row[..=q].iter().all(|&b| b) {
                        return None;
                    }
                    // SAFETY: a `bool` is one byte holding 0 or 1.
                    let bytes =
                        unsafe { std::slice::from_raw_parts(row.as_ptr().cast::<u8>(), row.len()) };
                    h.update(bytes);
                }
            }
        }
    }
    Some(*h.finalize().as_bytes())
}

fn compute(
    pkg: &Package,
    inputs: &PrefixInputs<'_>,
    masks: PrefixMasks<'_>,
    layers: usize,
    keep_hidden: bool,
) -> Result<Prefix> {
    let p = inputs.len;
    let video = encode_video(pkg, inputs.pixels)?;
    let ids = Array2::from_shape_vec((1, inputs.ids.len()), inputs.ids.to_vec()).expect("one row");
    let text = embed_tokens(pkg, ids.view())?;
    let embeds = splice_video(pkg, &text, inputs.slots, &video)?;
    if embeds.dim(1) != p {
        return Err(Error::Input(format!(
            "the prefix splices to {} positions, expected {p}",
            embeds.dim(1)
        )));
    }
    let first = inputs.slots.first().map(|s| s.index);
    let positions = Positions::timed(&pkg.manifest, first, p, inputs.seconds_per_frame)?;
    let rot = rotary(pkg, &positions)?;
    let all: Vec<usize> = (0..p).collect();
    let causal;
    let masks = match masks {
        PrefixMasks::Causal => {
            causal = EdgeMask::full_causal(1, p).additive();
            Masks::same(&causal)
        }
        PrefixMasks::Schedule(schedule) => Masks::new(
            move |l| {
                (0..l)
                    .find(|&e| std::ptr::eq(schedule.layer(e), schedule.layer(l)))
                    .unwrap_or(l)
            },
            move |l| Ok(restricted_mask(schedule.layer(l), &all)),
        ),
    };
    let out = forward_until(
        pkg,
        ForwardSpec {
            start_layer: 0,
            hidden: &embeds,
            rotary: &rot,
            past: None,
            masks: &masks,
            masked_rows: MaskedRows::Uniform,
            keep: Keep {
                hidden: keep_hidden,
                kv: true,
                attn_layers: Vec::new(),
            },
        },
        layers,
    )?;
    Ok(Prefix {
        len: p,
        kv: out.kv,
        hidden: out.hidden_states,
    })
}

/// The additive causal mask `[1,1,Q,P+Q]` of rows `P..P+Q` reading keys `0..P+Q`.
pub fn causal_after(p: usize, q: usize) -> Array4<f32> {
    Array4::from_shape_fn((1, 1, q, p + q), |(_, _, i, k)| {
        if k > p + i {
            crate::mask::BLOCKED
        } else {
            0.0
        }
    })
}
