//! The masks of one forward pass: each distinct mask is built on the host and uploaded once,
//! however many layers use it.

use std::collections::HashMap;

use ndarray::Array4;

use super::layer::LayerMask;
use crate::error::Result;
use crate::mask::MaskedRows;
use crate::package::Package;
use crate::pathway::MaskSchedule;

type KeyFn<'a> = dyn Fn(usize) -> usize + 'a;
type BuildFn<'a> = dyn Fn(usize) -> Result<Array4<f32>> + 'a;

/// Which mask each layer uses: `key(l)` names it (layers with equal keys must have equal
/// masks), `build(l)` builds the additive `[B,1,Q,P+Q]` mask of layer `l`, called only for the
/// first layer of each key.
pub struct Masks<'a> {
    key: Box<KeyFn<'a>>,
    build: Box<BuildFn<'a>>,
}

impl<'a> Masks<'a> {
    pub fn new(
        key: impl Fn(usize) -> usize + 'a,
        build: impl Fn(usize) -> Result<Array4<f32>> + 'a,
    ) -> Masks<'a> {
        Masks {
            key: Box::new(key),
            build: Box::new(build),
        }
    }

    /// One mask for every layer.
    pub fn same(mask: &'a Array4<f32>) -> Masks<'a> {
        Masks::new(|_| 0, move |_| Ok(mask.clone()))
    }

    /// `inside` in `layers`, `outside` in every other layer: two uploads at most (a knockout
    /// window over a causal run).
    pub fn in_layers(
        layers: &'a [usize],
        inside: &'a Array4<f32>,
        outside: &'a Array4<f32>,
    ) -> Masks<'a> {
        Masks::new(
            move |l| usize::from(layers.contains(&l)),
            move |l| {
                Ok(if layers.contains(&l) {
                    inside.clone()
                } else {
                    outside.clone()
                })
            },
        )
    }

    /// A mask per layer, none shared.
    pub fn per_layer(build: impl Fn(usize) -> Result<Array4<f32>> + 'a) -> Masks<'a> {
        Masks::new(|l| l, build)
    }

    /// The layers of a schedule; layers with equal masks share one upload.
    pub fn schedule(schedule: &'a MaskSchedule) -> Masks<'a> {
        let keys = schedule_keys(schedule);
        Masks::new(move |l| keys[l], move |l| Ok(schedule.layer(l).additive()))
    }
}

/// For each layer, the first layer whose blocked edges are the same (compared by digest).
pub(crate) fn schedule_keys(schedule: &MaskSchedule) -> Vec<usize> {
    let mut first: HashMap<[u8; 32], usize> = HashMap::new();
    schedule
        .layers()
        .enumerate()
        .map(|(l, m)| {
            let mut h = blake3::Hasher::new();
            for d in m.blocked().shape() {
                h.update(&(*d as u64).to_le_bytes());
            }
            let blocked = m.blocked().as_standard_layout();
            let flags = blocked.as_slice().expect("standard layout");
            // SAFETY: a `bool` is one byte holding 0 or 1, so a slice of them reads as bytes;
            // hashing them in place spares a copy per layer (S x S bytes each).
            let bytes =
                unsafe { std::slice::from_raw_parts(flags.as_ptr().cast::<u8>(), flags.len()) };
            h.update(bytes);
            for list in [m.queries(), m.keys()] {
                for p in list {
                    h.update(&(*p as u64).to_le_bytes());
                }
            }
            *first.entry(*h.finalize().as_bytes()).or_insert(l)
        })
        .collect()
}

/// The uploaded masks of one forward, by key.
pub(crate) struct MaskCache<'m, 'a> {
    masks: &'m Masks<'a>,
    masked_rows: MaskedRows,
    uploaded: HashMap<usize, LayerMask>,
}

impl<'m, 'a> MaskCache<'m, 'a> {
    pub(crate) fn new(masks: &'m Masks<'a>, masked_rows: MaskedRows) -> Self {
        MaskCache {
            masks,
            masked_rows,
            uploaded: HashMap::new(),
        }
    }

    /// Layer `l`'s mask, uploaded on first use of its key.
    pub(crate) fn layer(&mut self, pkg: &Package, l: usize) -> Result<&LayerMask> {
        let key = (self.masks.key)(l);
        if !self.uploaded.contains_key(&key) {
            let host = (self.masks.build)(l)?;
            let m = LayerMask::upload_owned(pkg, host, self.masked_rows)?;
            self.uploaded.insert(key, m);
        }
        Ok(&self.uploaded[&key])
    }
}
