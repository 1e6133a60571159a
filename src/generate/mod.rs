//! Open-ended answers: tokens generated one at a time after the prompt, with a K/V cache in
//! extend form (Q = 1 per step), under full attention, a knockout or a pathway config.
//!
//! **How rules apply to generated tokens.** Each generated token joins `last` (and the group
//! `generated`, see [`SequenceGroups::with_generated`]): it is the new reading position, so a rule
//! "X ↛ last" keeps every generated token from reading X in the rule's layers, and "last ↛ last"
//! keeps them from reading one another and the prompt's last position. The masks of a run are the
//! rows of one dense schedule over prompt + `max_tokens` positions; the prompt's rows never see a
//! generated key (causality), so they are the prompt's own masks. Decoding is therefore exact with
//! respect to the dense masked model re-run over the whole sequence at every step, which is what
//! the tests compare against (and HF `generate` under full attention).
//!
//! A row with no open key is refused under the `uniform` masked-rows policy: the reference spreads
//! such a row over the whole sequence, future positions included, so its output would change as
//! tokens are appended. The `zero` policy is exact and allowed.
//!
//! The prompt rows before the question reuse the package's video-prefix cache when it applies, as
//! multiple-choice answers do.

mod sampling;

use std::time::Instant;

use ndarray::{Array2, Array4, Axis};
use serde::Serialize;

pub use sampling::{argmax, Sampler, Sampling};

use crate::answer::{self, SampleInputs};
use crate::engine::{
    self, causal_after, restricted_keys, schedule_keys, ForwardSpec, Keep, LayerKv, Masks,
    Positions, PrefixMasks,
};
use crate::error::{Error, Result};
use crate::mask::MaskedRows;
use crate::package::{Package, Projection};
use crate::pathway::{MaskSchedule, PathwayConfig, SequenceGroups};
use crate::runtime::Tensor;

/// What to generate and under which masks.
#[derive(Debug, Clone)]
pub struct GenerateSpec<'a> {
    /// Most tokens generated (a stop token counts as one).
    pub max_tokens: usize,
    pub sampling: Sampling,
    /// A pathway config (a knockout is a config with its rules); `None` is full attention.
    pub pathways: Option<&'a PathwayConfig>,
    pub masked_rows: MaskedRows,
    /// Token ids that end the answer (the model's eos); the stop token is returned too.
    pub stop: Vec<i64>,
}

/// Why generation ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Finish {
    /// A stop token was generated.
    Stop,
    /// `max_tokens` were generated.
    Length,
    /// The caller's callback asked to stop (a deadline, a closed connection).
    Cancelled,
}

impl Finish {
    /// The OpenAI `finish_reason` for it.
    pub fn reason(self) -> &'static str {
        match self {
            Finish::Stop => "stop",
            Finish::Length => "length",
            Finish::Cancelled => "cancelled",
        }
    }
}

/// The generated tokens and what it took.
#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub tokens: Vec<i64>,
    pub finish: Finish,
    /// Spliced prompt positions (video tokens included).
    pub prompt_len: usize,
    /// Whether the video prefix came from the cache (or was put there).
    pub prefix_reused: bool,
    pub prefill_ms: f64,
    pub decode_ms: f64,
}

/// The dense schedule of a run over prompt + `max_tokens` positions, and the key of each layer's
/// mask (layers with equal masks share one upload per step).
struct Schedule {
    schedule: MaskSchedule,
    keys: Vec<usize>,
}

impl Schedule {
    fn resolve(
        pkg: &Package,
        inputs: &SampleInputs,
        config: &PathwayConfig,
        max_tokens: usize,
        masked_rows: MaskedRows,
    ) -> Result<Schedule> {
        let groups = SequenceGroups::from_prompt(&inputs.layout).with_generated(max_tokens);
        let schedule = config.resolve(&groups, pkg.num_layers())?;
        if masked_rows == MaskedRows::Uniform {
            if let Some((l, m)) = schedule
                .layers()
                .enumerate()
                .find(|(_, m)| m.rows_without_open_key() > 0)
            {
                return Err(Error::Input(format!(
                    "{}: layer {} leaves {} row(s) without an open key; under masked rows \
                     `uniform` such a row reads future positions, which generation cannot \
                     reproduce: use masked rows `zero` or open an edge",
                    config.path.display(),
                    l + 1,
                    m.rows_without_open_key()
                )));
            }
        }
        let keys = schedule_keys(&schedule);
        Ok(Schedule { schedule, keys })
    }

    /// Rows `rows` reading keys `0..p` then `rows` (sorted, contiguous after `p`) in layer `l`.
    fn mask(&self, l: usize, rows: &[usize], p: usize) -> Array4<f32> {
        restricted_keys(self.schedule.layer(l), rows, p, rows)
    }
}

/// The tokens that end an answer: the package's eos, when it has one.
pub fn stop_tokens(pkg: &Package) -> Vec<i64> {
    pkg.manifest
        .special_tokens
        .eos_token_id
        .into_iter()
        .collect()
}

/// Generates after `inputs`' prompt; `on_token` sees each token as it is chosen and returns
/// `false` to stop (the run then ends as [`Finish::Cancelled`], the token kept).
pub fn generate(
    pkg: &Package,
    inputs: &SampleInputs,
    spec: &GenerateSpec<'_>,
    mut on_token: impl FnMut(i64) -> bool,
) -> Result<Generation> {
    spec.sampling.validate()?;
    let s = inputs.layout.seq_len;
    if spec.max_tokens == 0 {
        return Err(Error::Input(
            "max_tokens 0: expected at least one token to generate".into(),
        ));
    }
    let max = pkg.manifest.max_positions;
    if s + spec.max_tokens > max {
        return Err(Error::Input(format!(
            "max_tokens {}: the prompt takes {s} positions and the model {max} (model.yaml \
             max_positions), so at most {} tokens can follow it",
            spec.max_tokens,
            max.saturating_sub(s)
        )));
    }
    let schedule = spec
        .pathways
        .map(|c| Schedule::resolve(pkg, inputs, c, spec.max_tokens, spec.masked_rows))
        .transpose()?;
    let layers = schedule
        .as_ref()
        .map_or(pkg.num_layers(), |sc| sc.schedule.num_layers());

    let started = Instant::now();
    let (mut kv, logits, prefix_reused) =
        prefill(pkg, inputs, schedule.as_ref(), layers, spec.masked_rows)?;
    let prefill_ms = started.elapsed().as_secs_f64() * 1e3;

    let started = Instant::now();
    let mut sampler = Sampler::new(spec.sampling);
    let mut tokens = Vec::new();
    let mut next = sampler.next(&logits);
    // Generated tokens continue after the prompt's largest position (the family's rule).
    let positions = Positions::of_sample(&pkg.manifest, inputs)?.with_generated(spec.max_tokens);
    let finish = loop {
        tokens.push(next);
        if !on_token(next) {
            break Finish::Cancelled;
        }
        if spec.stop.contains(&next) {
            break Finish::Stop;
        }
        if tokens.len() == spec.max_tokens {
            break Finish::Length;
        }
        let pos = s + tokens.len() - 1;
        let logits = step(
            pkg,
            next,
            pos,
            &positions,
            &mut kv,
            schedule.as_ref(),
            layers,
            spec.masked_rows,
        )?;
        next = sampler.next(&logits);
    };
    Ok(Generation {
        tokens,
        finish,
        prompt_len: s,
        prefix_reused,
        prefill_ms,
        decode_ms: started.elapsed().as_secs_f64() * 1e3,
    })
}

/// The prompt's rows through `layers` layers: every layer's K/V of positions `0..S` and the
/// logits at the last position.
fn prefill(
    pkg: &Package,
    inputs: &SampleInputs,
    schedule: Option<&Schedule>,
    layers: usize,
    masked_rows: MaskedRows,
) -> Result<(Vec<LayerKv>, Vec<f32>, bool)> {
    let s = inputs.layout.seq_len;
    let prefix_masks = match schedule {
        Some(sc) => PrefixMasks::Schedule(&sc.schedule),
        None => PrefixMasks::Causal,
    };
    let split = answer::split(pkg, inputs, prefix_masks, layers, false)?;
    let (p, embeds, rotary, past) = match split {
        Some(sp) => (sp.prefix.len, sp.embeds, sp.rotary, Some(sp.prefix)),
        None => {
            let (embeds, rotary) = answer::embed(pkg, inputs)?;
            (0, embeds, rotary, None)
        }
    };
    let rows: Vec<usize> = (p..s).collect();
    let causal;
    let masks = match schedule {
        Some(sc) => Masks::new(|l| sc.keys[l], |l| Ok(sc.mask(l, &rows, p))),
        None => {
            causal = causal_after(p, s - p);
            Masks::same(&causal)
        }
    };
    let past_kv = past.as_ref().map(|pr| pr.kv.as_slice());
    let out = rows_with_kv(pkg, &embeds, &rotary, past_kv, &masks, masked_rows, layers)?;
    let logits = last_logits(pkg, &out.last_row(pkg)?)?;
    let kv = match &past {
        Some(prefix) => prefix
            .kv
            .iter()
            .zip(&out.kv)
            .map(|(a, b)| append(pkg, a, b))
            .collect::<Result<Vec<_>>>()?,
        None => out.kv,
    };
    Ok((kv, logits, past.is_some()))
}

/// One decoding step: the token `id` at row `pos` reads the cache (rows `0..pos`) and itself;
/// its K/V are appended. Returns the logits of the next token.
#[allow(clippy::too_many_arguments)]
fn step(
    pkg: &Package,
    id: i64,
    pos: usize,
    positions: &Positions,
    kv: &mut Vec<LayerKv>,
    schedule: Option<&Schedule>,
    layers: usize,
    masked_rows: MaskedRows,
) -> Result<Vec<f32>> {
    let ids = Array2::from_elem((1, 1), id);
    let hidden = engine::embed_tokens(pkg, ids.view())?;
    let rotary = engine::rotary(pkg, &positions.range(pos..pos + 1))?;
    let row = [pos];
    let open;
    let masks = match schedule {
        Some(sc) => Masks::new(|l| sc.keys[l], |l| Ok(sc.mask(l, &row, pos))),
        None => {
            open = Array4::<f32>::zeros((1, 1, 1, pos + 1));
            Masks::same(&open)
        }
    };
    let out = rows_with_kv(
        pkg,
        &hidden,
        &rotary,
        Some(kv.as_slice()),
        &masks,
        masked_rows,
        layers,
    )?;
    let logits = last_logits(pkg, &out.final_hidden)?;
    for (cache, new) in kv.iter_mut().zip(&out.kv) {
        *cache = append(pkg, cache, new)?;
    }
    Ok(logits)
}

/// Rows `hidden` through layers `0..layers` after `past`, keeping their K/V.
fn rows_with_kv(
    pkg: &Package,
    hidden: &Tensor,
    rotary: &engine::Rotary,
    past: Option<&[LayerKv]>,
    masks: &Masks<'_>,
    masked_rows: MaskedRows,
    layers: usize,
) -> Result<engine::ForwardOutput> {
    engine::forward_until(
        pkg,
        ForwardSpec {
            start_layer: 0,
            hidden,
            rotary,
            past,
            masks,
            masked_rows,
            keep: Keep {
                kv: true,
                ..Keep::default()
            },
        },
        layers,
    )
}

fn append(pkg: &Package, a: &LayerKv, b: &LayerKv) -> Result<LayerKv> {
    Ok(LayerKv {
        key: pkg.data().concat(&a.key, &b.key, 2)?,
        value: pkg.data().concat(&a.value, &b.value, 2)?,
    })
}

/// Final norm + LM head of one row `[1,1,D]`, as a host vector `[V]`.
fn last_logits(pkg: &Package, row: &Tensor) -> Result<Vec<f32>> {
    let logits = engine::project(pkg, Projection::NormHead, row)?;
    Ok(logits
        .index_axis_move(Axis(0), 0)
        .index_axis_move(Axis(0), 0)
        .to_vec())
}

/// The text of generated tokens, special tokens (eos) left out.
pub fn decode_text(tokenizer: &tokenizers::Tokenizer, tokens: &[i64]) -> Result<String> {
    let ids: Vec<u32> = tokens.iter().map(|&t| t as u32).collect();
    tokenizer
        .decode(&ids, true)
        .map_err(|e| Error::Input(format!("cannot decode generated tokens {tokens:?}: {e}")))
}
