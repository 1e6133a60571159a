//! Multiple-choice scoring at the last position: the probability of each option label's token.

use ndarray::ArrayView1;
use serde::Serialize;

use crate::error::{Error, Result};

/// Scores of the options of one sample, read from the last-position logits.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct OptionScores {
    /// Option labels, e.g. `["A", "B", "C"]`.
    pub labels: Vec<String>,
    /// Token id of each label as the model would emit it after the answer prefix.
    pub label_tokens: Vec<i64>,
    /// Softmax over the whole vocabulary, at each label's token (what knockouts measure).
    pub probs: Vec<f32>,
    /// The same probabilities renormalised over the options only.
    pub option_share: Vec<f32>,
    /// Index of the most probable option.
    pub predicted: usize,
    /// The most probable token over the whole vocabulary, and its probability.
    pub argmax_token: i64,
    pub argmax_prob: f32,
    /// Ground-truth option, when known.
    pub truth: Option<usize>,
}

impl OptionScores {
    pub fn correct(&self) -> Option<bool> {
        self.truth.map(|t| t == self.predicted)
    }
    pub fn truth_prob(&self) -> Option<f32> {
        self.truth.map(|t| self.probs[t])
    }
}

/// Numerically stable softmax of a logit row, in f64 to keep tiny probabilities meaningful.
pub fn softmax(logits: ArrayView1<'_, f32>) -> Vec<f64> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let exp: Vec<f64> = logits.iter().map(|&x| (x as f64 - max).exp()).collect();
    let sum: f64 = exp.iter().sum();
    exp.into_iter().map(|e| e / sum).collect()
}

pub fn score_options(
    logits: ArrayView1<'_, f32>,
    labels: &[String],
    label_tokens: &[i64],
    truth: Option<usize>,
) -> Result<OptionScores> {
    if labels.len() != label_tokens.len() || labels.is_empty() {
        return Err(Error::Input(format!(
            "{} option labels but {} label tokens",
            labels.len(),
            label_tokens.len()
        )));
    }
    if let Some(t) = truth {
        if t >= labels.len() {
            return Err(Error::Input(format!(
                "ground-truth option {t} is outside the {} options",
                labels.len()
            )));
        }
    }
    let vocab = logits.len();
    let p = softmax(logits);
    let mut probs = Vec::with_capacity(labels.len());
    for &tok in label_tokens {
        let i = usize::try_from(tok)
            .ok()
            .filter(|&i| i < vocab)
            .ok_or_else(|| {
                Error::Input(format!(
                    "label token {tok} is outside the vocabulary ({vocab})"
                ))
            })?;
        probs.push(p[i]);
    }
    let total: f64 = probs.iter().sum();
    let predicted = probs
        .iter()
        .enumerate()
        .fold(0, |best, (i, &x)| if x > probs[best] { i } else { best });
    let (argmax, argmax_prob) =
        p.iter().enumerate().fold(
            (0, 0.0),
            |(bi, bp), (i, &x)| if x > bp { (i, x) } else { (bi, bp) },
        );
    Ok(OptionScores {
        labels: labels.to_vec(),
        label_tokens: label_tokens.to_vec(),
        probs: probs.iter().map(|&x| x as f32).collect(),
        option_share: probs
            .iter()
            .map(|&x| if total > 0.0 { (x / total) as f32 } else { 0.0 })
            .collect(),
        predicted,
        argmax_token: argmax as i64,
        argmax_prob: argmax_prob as f32,
        truth,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::arr1;

    #[test]
    fn probabilities_are_softmax_over_the_vocabulary_at_label_tokens() {
        // logits: token 0..4 = [0, ln 2, ln 3, 0, ln 4]; softmax denominators 1+2+3+1+4 = 11.
        let l = arr1(&[0.0f32, 2f32.ln(), 3f32.ln(), 0.0, 4f32.ln()]);
        let s = score_options(l.view(), &["A".into(), "B".into()], &[1, 2], Some(0)).unwrap();
        assert!((s.probs[0] - 2.0 / 11.0).abs() < 1e-6);
        assert!((s.probs[1] - 3.0 / 11.0).abs() < 1e-6);
        assert!((s.option_share[0] - 0.4).abs() < 1e-6);
        assert_eq!(s.predicted, 1);
        assert_eq!(s.argmax_token, 4);
        assert_eq!(s.correct(), Some(false));
    }

    #[test]
    fn out_of_range_label_token_is_an_error() {
        let l = arr1(&[0.0f32, 1.0]);
        let e = score_options(l.view(), &["A".into()], &[7], None).unwrap_err();
        assert!(e.to_string().contains("label token 7"), "{e}");
    }
}
