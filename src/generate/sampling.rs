//! Choosing the next token from logits: greedy, or seeded temperature / top-p (nucleus) sampling.

use crate::error::{Error, Result};
use crate::synth::rng::Rng;

/// How each next token is chosen.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Sampling {
    /// 0 is greedy (argmax, the lowest id on a tie); above 0 the logits are divided by it and
    /// sampled from.
    pub temperature: f32,
    /// Nucleus: sample only among the most likely tokens whose probabilities sum to at least this
    /// (1 keeps every token). Ignored when greedy.
    pub top_p: f32,
    /// Seed of the sampler's own stream: the same seed, prompt and settings give the same tokens.
    pub seed: u64,
}

impl Default for Sampling {
    fn default() -> Self {
        Sampling::greedy()
    }
}

impl Sampling {
    pub fn greedy() -> Sampling {
        Sampling {
            temperature: 0.0,
            top_p: 1.0,
            seed: 0,
        }
    }

    /// Checks the settings; names the field that is out of range.
    pub fn validate(&self) -> Result<()> {
        if !(self.temperature.is_finite() && (0.0..=100.0).contains(&self.temperature)) {
            return Err(Error::Input(format!(
                "temperature {}: expected a number from 0 (greedy) to 100",
                self.temperature
            )));
        }
        if !(self.top_p.is_finite() && self.top_p > 0.0 && self.top_p <= 1.0) {
            return Err(Error::Input(format!(
                "top_p {}: expected a number in (0, 1]",
                self.top_p
            )));
        }
        Ok(())
    }

    pub fn is_greedy(&self) -> bool {
        self.temperature == 0.0
    }
}

/// Draws tokens with one [`Rng`] stream per generation.
pub struct Sampler {
    sampling: Sampling,
    rng: Rng,
}

impl Sampler {
    pub fn new(sampling: Sampling) -> Sampler {
        Sampler {
            sampling,
            rng: Rng::derive(sampling.seed, "vidflow generate", 0),
        }
    }

    /// The next token id from logits `[V]`.
    pub fn next(&mut self, logits: &[f32]) -> i64 {
        if self.sampling.is_greedy() {
            return argmax(logits) as i64;
        }
        let t = self.sampling.temperature as f64;
        let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        let mut probs: Vec<(usize, f64)> = logits
            .iter()
            .enumerate()
            .map(|(i, &x)| (i, ((x as f64 - max) / t).exp()))
            .collect();
        let total: f64 = probs.iter().map(|p| p.1).sum();
        // Most likely first; ties by id, so the order never depends on the sort's stability.
        probs.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
        let mut kept = 0;
        let mut mass = 0.0;
        for (_, p) in &probs {
            kept += 1;
            mass += p / total;
            if mass >= self.sampling.top_p as f64 {
                break;
            }
        }
        probs.truncate(kept);
        let sum: f64 = probs.iter().map(|p| p.1).sum();
        // 53 random bits: a uniform draw in [0, sum).
        let u = (self.rng.next_u64() >> 11) as f64 / (1u64 << 53) as f64 * sum;
        let mut acc = 0.0;
        for (i, p) in &probs {
            acc += p;
            if u < acc {
                return *i as i64;
            }
        }
        probs.last().expect("at least one token").0 as i64
    }
}

/// Index of the largest value; the first on a tie.
pub fn argmax(xs: &[f32]) -> usize {
    let mut best = 0;
    for (i, &x) in xs.iter().enumerate() {
        if x > xs[best] {
            best = i;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn greedy_is_argmax_first_on_tie() {
        let mut s = Sampler::new(Sampling::greedy());
        assert_eq!(s.next(&[0.1, 2.0, 2.0, -1.0]), 1);
    }

    #[test]
    fn tiny_top_p_keeps_only_the_most_likely() {
        let mut s = Sampler::new(Sampling {
            temperature: 1.0,
            top_p: 1e-6,
            seed: 9,
        });
        for _ in 0..50 {
            assert_eq!(s.next(&[0.0, 3.0, 2.9, 1.0]), 1);
        }
    }

    #[test]
    fn sampling_follows_the_softmax_and_is_seeded() {
        // Probabilities e^0, e^ln2, e^ln3, e^ln4 over 10: 0.1, 0.2, 0.3, 0.4.
        let logits = [0.0, 2f32.ln(), 3f32.ln(), 4f32.ln()];
        let draw = |seed| {
            let mut s = Sampler::new(Sampling {
                temperature: 1.0,
                top_p: 1.0,
                seed,
            });
            (0..20000).map(|_| s.next(&logits)).collect::<Vec<_>>()
        };
        let a = draw(3);
        assert_eq!(a, draw(3));
        assert_ne!(a, draw(4));
        for (k, want) in [0.1, 0.2, 0.3, 0.4].iter().enumerate() {
            let got = a.iter().filter(|&&t| t == k as i64).count() as f64 / a.len() as f64;
            assert!((got - want).abs() < 0.015, "token {k}: {got} vs {want}");
        }
        // top_p 0.7 keeps 0.4 + 0.3 (renormalised to 4/7, 3/7).
        let mut s = Sampler::new(Sampling {
            temperature: 1.0,
            top_p: 0.7,
            seed: 1,
        });
        let b: Vec<i64> = (0..20000).map(|_| s.next(&logits)).collect();
        assert!(b.iter().all(|&t| t == 2 || t == 3));
        let share3 = b.iter().filter(|&&t| t == 3).count() as f64 / b.len() as f64;
        assert!((share3 - 4.0 / 7.0).abs() < 0.015, "{share3}");
    }

    #[test]
    fn bad_settings_name_the_field() {
        let bad = |t, p| {
            Sampling {
                temperature: t,
                top_p: p,
                seed: 0,
            }
            .validate()
            .unwrap_err()
            .to_string()
        };
        assert!(bad(-1.0, 1.0).contains("temperature"));
        assert!(bad(f32::NAN, 1.0).contains("temperature"));
        assert!(bad(1.0, 0.0).contains("top_p"));
        assert!(bad(1.0, 1.5).contains("top_p"));
    }
}
