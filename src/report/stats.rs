//! Mean and 95% confidence interval of a set of values (Student's t, two-sided), computed here
//! so that summaries are deterministic and need no statistics dependency.

/// Mean of `values` with the 95% interval `mean ± t(0.975, n−1) · sd / √n`. The interval is
/// `None` for fewer than two values (no spread to estimate).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct MeanInterval {
    pub n: usize,
    pub mean: f64,
    pub interval: Option<(f64, f64)>,
}

impl MeanInterval {
    /// The interval cut to `[lo, hi]`: the t interval of values that lie in a bounded range (a
    /// probability) can reach past it, and a reader should not see a probability below 0.
    pub fn clipped(self, lo: f64, hi: f64) -> MeanInterval {
        MeanInterval {
            interval: self.interval.map(|(a, b)| (a.max(lo), b.min(hi))),
            ..self
        }
    }
}

pub fn mean_interval(values: &[f64]) -> Option<MeanInterval> {
    let n = values.len();
    if n == 0 {
        return None;
    }
    let mean = values.iter().sum::<f64>() / n as f64;
    let interval = (n > 1).then(|| {
        let var = values.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (n - 1) as f64;
        let half = t_quantile_975(n - 1) * (var / n as f64).sqrt();
        (mean - half, mean + half)
    });
    Some(MeanInterval { n, mean, interval })
}

/// The 0.975 quantile of Student's t with `df` degrees of freedom (bisection on the CDF).
pub fn t_quantile_975(df: usize) -> f64 {
    let (mut lo, mut hi) = (0.0f64, 1.0e3f64);
    for _ in 0..200 {
        let mid = 0.5 * (lo + hi);
        if t_cdf(mid, df as f64) < 0.975 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    0.5 * (lo + hi)
}

/// CDF of Student's t at `t ≥ 0`: `1 − I_x(ν/2, 1/2) / 2` with `x = ν / (ν + t²)`.
fn t_cdf(t: f64, nu: f64) -> f64 {
    1.0 - 0.5 * incomplete_beta(nu / (nu + t * t), nu / 2.0, 0.5)
}

/// Regularised incomplete beta `I_x(a, b)` by its continued fraction (modified Lentz).
fn incomplete_beta(x: f64, a: f64, b: f64) -> f64 {
    if x <= 0.0 {
        return 0.0;
    }
    if x >= 1.0 {
        return 1.0;
    }
    let front =
        (ln_gamma(a + b) - ln_gamma(a) - ln_gamma(b) + a * x.ln() + b * (1.0 - x).ln()).exp();
    // The fraction converges fast for x < (a + 1) / (a + b + 2); use the symmetry otherwise.
    if x < (a + 1.0) / (a + b + 2.0) {
        front * beta_fraction(x, a, b) / a
    } else {
        1.0 - front * beta_fraction(1.0 - x, b, a) / b
    }
}

fn beta_fraction(x: f64, a: f64, b: f64) -> f64 {
    const TINY: f64 = 1e-300;
    let mut c = 1.0;
    let mut d = 1.0 - (a + b) * x / (a + 1.0);
    if d.abs() < TINY {
        d = TINY;
    }
    d = 1.0 / d;
    let mut f = d;
    for m in 1..500 {
        let m = m as f64;
        for step in 0..2 {
            let num = if step == 0 {
                m * (b - m) * x / ((a + 2.0 * m - 1.0) * (a + 2.0 * m))
            } else {
                -(a + m) * (a + b + m) * x / ((a + 2.0 * m) * (a + 2.0 * m + 1.0))
            };
            d = 1.0 + num * d;
            if d.abs() < TINY {
                d = TINY;
            }
            c = 1.0 + num / c;
            if c.abs() < TINY {
                c = TINY;
            }
            d = 1.0 / d;
            f *= c * d;
        }
        if (c * d - 1.0).abs() < 1e-15 {
            break;
        }
    }
    f
}

/// `ln Γ(x)` for `x > 0` (Lanczos, g = 7, nine terms; ~15 significant digits).
fn ln_gamma(x: f64) -> f64 {
    const G: f64 = 7.0;
    const C: [f64; 9] = [
        0.999_999_999_999_809_9,
        676.520_368_121_885_1,
        -1_259.139_216_722_402_8,
        771.323_428_777_653_1,
        -176.615_029_162_140_6,
        12.507_343_278_686_905,
        -0.138_571_095_265_720_12,
        9.984_369_578_019_572e-6,
        1.505_632_735_149_311_6e-7,
    ];
    if x < 0.5 {
        // Reflection: Γ(x) Γ(1 − x) = π / sin(πx).
        return (std::f64::consts::PI / (std::f64::consts::PI * x).sin()).ln() - ln_gamma(1.0 - x);
    }
    let x = x - 1.0;
    let mut sum = C[0];
    for (i, &c) in C.iter().enumerate().skip(1) {
        sum += c / (x + i as f64);
    }
    let t = x + G + 0.5;
    0.5 * (2.0 * std::f64::consts::PI).ln() + (x + 0.5) * t.ln() - t + sum.ln()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn t_quantiles_match_published_tables() {
        // Two-sided 95% critical values of Student's t.
        for (df, want) in [
            (1, 12.7062),
            (2, 4.3027),
            (5, 2.5706),
            (10, 2.2281),
            (30, 2.0423),
            (1000, 1.9623),
        ] {
            let got = t_quantile_975(df);
            assert!((got - want).abs() < 5e-4, "df {df}: {got} vs {want}");
        }
    }

    #[test]
    fn ln_gamma_at_known_points() {
        assert!(ln_gamma(1.0).abs() < 1e-12);
        assert!((ln_gamma(0.5) - std::f64::consts::PI.sqrt().ln()).abs() < 1e-12);
        assert!((ln_gamma(10.0) - 362_880f64.ln()).abs() < 1e-10);
    }

    #[test]
    fn mean_and_interval() {
        assert_eq!(mean_interval(&[]), None);
        let one = mean_interval(&[3.0]).unwrap();
        assert_eq!((one.n, one.mean, one.interval), (1, 3.0, None));
        // values 1, 2, 3: mean 2, sd 1, half-width t(2) / sqrt(3).
        let m = mean_interval(&[1.0, 2.0, 3.0]).unwrap();
        let half = 4.302_652_7 / 3f64.sqrt();
        let (lo, hi) = m.interval.unwrap();
        assert!((m.mean - 2.0).abs() < 1e-12);
        assert!((lo - (2.0 - half)).abs() < 1e-6 && (hi - (2.0 + half)).abs() < 1e-6);
    }
}
