//! The baseline run of a sample: the plain causal prefill, keeping what knockouts reuse (every
//! layer's input hidden states and K/V), and the tokens the knockouts measure.

use ndarray::{ArrayView1, Axis};

use crate::answer::{embed, softmax, split, SampleInputs};
use crate::engine::{self, ForwardSpec, Keep, LayerKv, Masks, PrefixMasks, Rotary};
use crate::error::{Error, Result};
use crate::mask::{EdgeMask, MaskedRows};
use crate::package::{Package, Projection};
use crate::runtime::Tensor;

/// What a knockout reads at the last position: the probabilities of the baseline's predicted
/// token and of the ground-truth option token, and the new argmax.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Readout {
    /// Probability of the baseline's predicted token a (softmax over the whole vocabulary).
    pub p_answer: f64,
    /// Probability of the ground-truth option token g.
    pub p_truth: f64,
    /// The most probable token and its probability.
    pub argmax_token: i64,
    pub argmax_prob: f64,
}

/// Reads a last-position logit row `[V]` for tokens `answer` (a) and `truth` (g).
pub fn read_logits(logits: ArrayView1<'_, f32>, answer: i64, truth: i64) -> Result<Readout> {
    let p = softmax(logits);
    let at = |t: i64| {
        usize::try_from(t)
            .ok()
            .and_then(|i| p.get(i).copied())
            .ok_or_else(|| {
                Error::Input(format!("token {t} is outside the vocabulary ({})", p.len()))
            })
    };
    // First maximum on ties, like torch.max on CPU.
    let (argmax, argmax_prob) =
        p.iter()
            .enumerate()
            .fold((0, f64::NEG_INFINITY), |(bi, bp), (i, &x)| {
                if x > bp {
                    (i, x)
                } else {
                    (bi, bp)
                }
            });
    Ok(Readout {
        p_answer: at(answer)?,
        p_truth: at(truth)?,
        argmax_token: argmax as i64,
        argmax_prob,
    })
}

/// The baseline of one sample, cached for its knockouts.
pub struct Baseline {
    /// `[1,S,D]` spliced input embeddings (on the device, as everything the sweep reuses).
    pub embeds: Tensor,
    /// Rotary tables of positions `0..S`, batch 1.
    pub rotary: Rotary,
    /// `hidden[l]` is the input of layer `l` over all rows, `[1,S,D]`; `hidden[L]` the output of
    /// the last layer.
    pub hidden: Vec<Tensor>,
    /// Every layer's K/V over all rows, `[1,Hkv,S,Dh]`.
    pub kv: Vec<LayerKv>,
    /// The predicted token a (argmax over the whole vocabulary) and the ground-truth token g.
    pub answer_token: i64,
    pub truth_token: i64,
    pub readout: Readout,
}

impl Baseline {
    pub fn seq_len(&self) -> usize {
        self.embeds.dim(1)
    }

    /// Whether the model answers the sample correctly (a = g).
    pub fn correct(&self) -> bool {
        self.answer_token == self.truth_token
    }
}

/// Projects the last row of `[B,Q,D]` final hidden states to last-position logits `[B,V]`.
pub fn last_position_logits(
    pkg: &Package,
    out: &engine::ForwardOutput,
) -> Result<ndarray::Array2<f32>> {
    let logits = engine::project(pkg, Projection::NormHead, &out.last_row(pkg)?)?;
    Ok(logits.index_axis_move(Axis(1), 0))
}

/// Runs the baseline prefill of a prepared sample. The sample needs its ground-truth answer.
pub fn run_baseline(pkg: &Package, inputs: &SampleInputs) -> Result<Baseline> {
    let layout = &inputs.layout;
    let truth = layout.answer.ok_or_else(|| {
        Error::Input(
            "the sample has no ground-truth answer (field answer), which knockouts and the logit \
             lens measure"
                .into(),
        )
    })?;
    let truth_token = layout.option_token_ids[truth];
    let (embeds, rotary, out) =
        match split(pkg, inputs, PrefixMasks::Causal, pkg.num_layers(), true)? {
            Some(sp) => {
                // The question's rows after the cached prefix, joined to it on the device: the
                // sweep sees the same whole-sequence baseline as a full prefill.
                let p = sp.prefix.len;
                let mask = engine::causal_after(p, sp.embeds.dim(1));
                let masks = Masks::same(&mask);
                let out = engine::forward(
                    pkg,
                    ForwardSpec {
                        start_layer: 0,
                        hidden: &sp.embeds,
                        rotary: &sp.rotary,
                        past: Some(&sp.prefix.kv),
                        masks: &masks,
                        masked_rows: MaskedRows::Uniform,
                        keep: Keep {
                            hidden: true,
                            kv: true,
                            attn_layers: Vec::new(),
                        },
                    },
                )?;
                let data = pkg.data();
                let hidden = sp
                    .prefix
                    .hidden
                    .iter()
                    .zip(&out.hidden_states)
                    .map(|(a, b)| data.concat(a, b, 1))
                    .collect::<Result<Vec<_>>>()?;
                let kv = sp
                    .prefix
                    .kv
                    .iter()
                    .zip(&out.kv)
                    .map(|(a, b)| {
                        Ok(LayerKv {
                            key: data.concat(&a.key, &b.key, 2)?,
                            value: data.concat(&a.value, &b.value, 2)?,
                        })
                    })
                    .collect::<Result<Vec<_>>>()?;
                let positions = engine::Positions::of_sample(&pkg.manifest, inputs)?;
                let rotary = engine::rotary(pkg, &positions)?;
                let embeds = data.copy(&hidden[0])?;
                let joined = engine::ForwardOutput {
                    hidden_states: hidden,
                    kv,
                    attn: Vec::new(),
                    final_hidden: out.final_hidden,
                };
                (embeds, rotary, joined)
            }
            None => {
                let (embeds, rotary) = embed(pkg, inputs)?;
                let s = embeds.dim(1);
                let mask = EdgeMask::full_causal(1, s).additive();
                let masks = Masks::same(&mask);
                let out = engine::forward(
                    pkg,
                    ForwardSpec {
                        start_layer: 0,
                        hidden: &embeds,
                        rotary: &rotary,
                        past: None,
                        masks: &masks,
                        masked_rows: MaskedRows::Uniform,
                        keep: Keep {
                            hidden: true,
                            kv: true,
                            attn_layers: Vec::new(),
                        },
                    },
                )?;
                (embeds, rotary, out)
            }
        };
    let logits = last_position_logits(pkg, &out)?;
    let row = logits.index_axis(Axis(0), 0);
    let first = read_logits(row, 0, truth_token)?;
    let answer_token = first.argmax_token;
    let readout = read_logits(row, answer_token, truth_token)?;
    Ok(Baseline {
        embeds,
        rotary,
        hidden: out.hidden_states,
        kv: out.kv,
        answer_token,
        truth_token,
        readout,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr1;

    #[test]
    fn readout_is_softmax_over_the_vocabulary() {
        // exp-weights 1, 2, 3, 4 -> total 10.
        let l = arr1(&[0.0f32, 2f32.ln(), 3f32.ln(), 4f32.ln()]);
        let r = read_logits(l.view(), 1, 2).unwrap();
        assert!((r.p_answer - 0.2).abs() < 1e-7);
        assert!((r.p_truth - 0.3).abs() < 1e-7);
        assert_eq!(r.argmax_token, 3);
        assert!((r.argmax_prob - 0.4).abs() < 1e-7);
        assert!(read_logits(l.view(), 9, 0).is_err());
    }
}
