//! Random blocking (design.md §4), the control for pathway configs: in every layer independently,
//! a fixed share of the causal edges whose query and key both lie at or after the first video
//! token is drawn uniformly (seeded) and blocked.

use super::groups::SequenceGroups;
use super::schedule::MaskSchedule;
use crate::error::{Error, Result};
use crate::mask::EdgeMask;

/// `random:RATIO[:SEED]`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RandomBlocking {
    /// Share of the eligible edges blocked in each layer, in [0, 1].
    pub ratio: f64,
    pub seed: u64,
}

/// SplitMix64: tiny, seedable and good enough for drawing edges; keeps the draw reproducible
/// across platforms and dependency versions.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
    /// Uniform in `0..n` (multiply-shift; the bias, below n / 2^64, is negligible here).
    fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }
}

impl RandomBlocking {
    pub fn new(ratio: f64, seed: u64) -> Result<RandomBlocking> {
        if !(0.0..=1.0).contains(&ratio) {
            return Err(Error::Input(format!(
                "random blocking ratio {ratio} is outside [0, 1]"
            )));
        }
        Ok(RandomBlocking { ratio, seed })
    }

    /// Number of eligible edges of a sequence whose first video token is at `first_video`.
    pub fn eligible_edges(seq_len: usize, first_video: usize) -> usize {
        let n = seq_len.saturating_sub(first_video);
        n * (n + 1) / 2
    }

    /// Edges blocked per layer: `round(ratio * eligible)`.
    pub fn blocked_per_layer(&self, seq_len: usize, first_video: usize) -> usize {
        (self.ratio * Self::eligible_edges(seq_len, first_video) as f64).round() as usize
    }

    /// The schedule for one sequence. Each layer draws exactly `blocked_per_layer` edges without
    /// replacement by selection sampling (every subset of that size equally likely), from its own
    /// stream seeded by (seed, layer).
    pub fn schedule(&self, groups: &SequenceGroups, num_layers: usize) -> MaskSchedule {
        let s = groups.seq_len();
        let v = groups.first_video();
        let total = Self::eligible_edges(s, v);
        let want = self.blocked_per_layer(s, v);
        let causal = EdgeMask::full_causal(1, s);
        let layers: Vec<EdgeMask> = (0..num_layers)
            .map(|l| {
                let mut rng = SplitMix64(
                    self.seed
                        .wrapping_mul(0xD134_2543_DE82_EF95)
                        .wrapping_add(l as u64 + 1),
                );
                let mut mask = causal.clone();
                let (mut seen, mut chosen) = (0usize, 0usize);
                for q in v..s {
                    let mut keys = Vec::new();
                    for k in v..=q {
                        // Selection sampling: pick with probability still-wanted / still-left.
                        if rng.below(total - seen) < want - chosen {
                            keys.push(k);
                            chosen += 1;
                        }
                        seen += 1;
                    }
                    if !keys.is_empty() {
                        mask.block(None, &keys, &[q]).expect("batch 1");
                    }
                }
                debug_assert_eq!(chosen, want);
                mask
            })
            .collect();
        let open = vec![s * (s + 1) / 2 - want; num_layers];
        MaskSchedule::from_shared(s, layers, (0..num_layers).collect(), &open)
    }
}
