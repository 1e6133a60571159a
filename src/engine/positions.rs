//! Position ids, the family's rule (design.md §1: the manifest's `family` says how positions are
//! made; only the rope graph and this rule differ between families).
//!
//! - `llama`: a token's position is its index in the spliced sequence.
//! - `qwen2_5_vl` (M-RoPE): three axes (t, h, w). Text before the video counts 0, 1, 2, … on all
//!   three. The video token of temporal group g, row r, column c sits at
//!   `(s + ⌊g · tokens_per_second · seconds_per_group⌋, s + r, s + c)`, s being the number of
//!   tokens before the video. Text after the video continues at one more than the largest vision
//!   position, on all three axes — the rule of the original Qwen2.5-VL code (transformers ≤ 5.2);
//!   transformers 5.23's helper advances by `max(grid_h, grid_w)` instead, which differs as soon as
//!   the temporal span reaches the grid size (docs/families/qwen2_5_vl.md).
//!
//! The time between groups is the video's own (its frame spacing times the frames per group) when
//! its frame rate is known, as in the reference, and the manifest's `seconds_per_group` otherwise
//! (frame folders without `--fps`, the golden files).
//!
//! Rows keep their original positions whatever subset is computed (plans never renumber).

use std::ops::Range;

use ndarray::{Array2, Array3, ArrayD, Axis, Ix2, Ix3};

use crate::answer::SampleInputs;
use crate::error::{Error, Result};
use crate::package::manifest::{Family, Manifest};

/// Position ids of a sequence (or of some of its rows), `[A,S]` with A = 1 or 3 axes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Positions {
    ids: Array2<i64>,
}

impl Positions {
    /// The positions of a sequence of `len` tokens whose video tokens start at `video_start`
    /// (none: text only) and fill the manifest's frame grid.
    pub fn new(m: &Manifest, video_start: Option<usize>, len: usize) -> Result<Positions> {
        Positions::timed(m, video_start, len, None)
    }

    /// [`Positions::new`] with the seconds between this video's sampled frames (M-RoPE: a
    /// temporal group spans `frames_per_group` of them, the reference's `second_per_grid_t`;
    /// `None`: the manifest's `mrope.seconds_per_group`).
    pub fn timed(
        m: &Manifest,
        video_start: Option<usize>,
        len: usize,
        seconds_per_frame: Option<f64>,
    ) -> Result<Positions> {
        match (m.family, &m.mrope) {
            (Family::Llama, _) => Ok(Positions {
                ids: Array2::from_shape_fn((1, len), |(_, i)| i as i64),
            }),
            (Family::Qwen25Vl, None) => Err(Error::Input(format!(
                "{}: family qwen2_5_vl without an mrope section",
                m.name
            ))),
            (Family::Qwen25Vl, Some(mrope)) => {
                let Some(vs) = video_start else {
                    return Ok(Positions {
                        ids: Array2::from_shape_fn((3, len), |(_, i)| i as i64),
                    });
                };
                let v = &m.video;
                let (groups, gh, gw) = (v.num_frames, v.grid_h, v.grid_w);
                let n = groups * gh * gw;
                if vs + n > len {
                    return Err(Error::Input(format!(
                        "the video tokens {vs}..{} run past the sequence of {len} tokens",
                        vs + n
                    )));
                }
                let seconds = seconds_per_frame.map_or(mrope.seconds_per_group, |s| {
                    s * mrope.temporal_patch_size as f64
                });
                let step = mrope.tokens_per_second * seconds;
                let mut ids = Array2::<i64>::zeros((3, len));
                let s = vs as i64;
                for i in 0..vs {
                    ids.column_mut(i).fill(i as i64);
                }
                let mut top = s - 1;
                for k in 0..n {
                    let (g, rc) = (k / (gh * gw), k % (gh * gw));
                    let t = s + (g as f64 * step).floor() as i64;
                    let (h, w) = (s + (rc / gw) as i64, s + (rc % gw) as i64);
                    let mut col = ids.column_mut(vs + k);
                    col[0] = t;
                    col[1] = h;
                    col[2] = w;
                    top = top.max(t).max(h).max(w);
                }
                for (j, i) in (vs + n..len).enumerate() {
                    ids.column_mut(i).fill(top + 1 + j as i64);
                }
                Ok(Positions { ids })
            }
        }
    }

    /// The positions of a sample's whole sequence: its video at the placeholder, timed by the
    /// video's own frame spacing when known, else by the manifest.
    pub fn of_sample(m: &Manifest, inputs: &SampleInputs) -> Result<Positions> {
        let layout = &inputs.layout;
        let video = (layout.num_video_tokens() > 0).then_some(layout.placeholder_index);
        Positions::timed(m, video, layout.seq_len, inputs.seconds_per_frame)
    }

    /// Positions read from a tensor `[B,S]` (one axis) or `[A,B,S]`, batch element 0.
    pub fn from_ids(ids: ArrayD<i64>) -> Result<Positions> {
        let shape = ids.shape().to_vec();
        let ids = match shape.len() {
            2 => ids
                .into_dimensionality::<Ix2>()
                .expect("rank 2")
                .row(0)
                .insert_axis(Axis(0))
                .to_owned(),
            3 => ids
                .into_dimensionality::<Ix3>()
                .expect("rank 3")
                .index_axis(Axis(1), 0)
                .to_owned(),
            _ => {
                return Err(Error::Input(format!(
                    "position ids have shape {shape:?}, expected [B,S] or [3,B,S]"
                )))
            }
        };
        Ok(Positions { ids })
    }

    /// Rows covered.
    pub fn len(&self) -> usize {
        self.ids.ncols()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ids, `[A,S]`.
    pub fn ids(&self) -> &Array2<i64> {
        &self.ids
    }

    /// Rows `idx`, in that order.
    pub fn select(&self, idx: &[usize]) -> Positions {
        Positions {
            ids: self.ids.select(Axis(1), idx),
        }
    }

    /// Rows `range`.
    pub fn range(&self, range: Range<usize>) -> Positions {
        Positions {
            ids: self.ids.slice(ndarray::s![.., range]).to_owned(),
        }
    }

    /// These positions followed by `n` generated tokens, which continue one after the largest
    /// position so far on every axis (token index for `llama`).
    pub fn with_generated(&self, n: usize) -> Positions {
        let next = self.ids.iter().max().map_or(0, |&m| m + 1);
        let (a, s) = self.ids.dim();
        let ids = Array2::from_shape_fn((a, s + n), |(x, i)| {
            if i < s {
                self.ids[(x, i)]
            } else {
                next + (i - s) as i64
            }
        });
        Positions { ids }
    }

    /// The rope graph's input for a batch of `b`: `[b,S]` for one axis, `[3,b,S]` for three.
    pub fn input(&self, b: usize) -> ArrayD<i64> {
        let (a, s) = self.ids.dim();
        if a == 1 {
            Array2::from_shape_fn((b, s), |(_, i)| self.ids[(0, i)]).into_dyn()
        } else {
            Array3::from_shape_fn((a, b, s), |(x, _, i)| self.ids[(x, i)]).into_dyn()
        }
    }
}
