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

/// For each layer, the index of its stored mask: layers with equal indices share one mask (a
/// schedule stores each distinct mask once), so they share one upload.
pub(crate) fn schedule_keys(schedule: &MaskSchedule) -> Vec<usize> {
    schedule.mask_ids().to_vec()
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

    /// Builds and uploads the masks of `layers` now. A forward calls it before its first layer:
    /// host work between two ONNX Runtime calls lets the runtime's worker threads fall asleep,
    /// and the layers then wait for them to wake.
    pub(crate) fn prepare(&mut self, pkg: &Package, layers: std::ops::Range<usize>) -> Result<()> {
        for l in layers {
            self.layer(pkg, l)?;
        }
        Ok(())
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
