//! `vidflow check`: does this package compute the right numbers on this device?
//!
//! A GPU machine has no PyTorch parity test suite and often no Rust toolchain, so the binary
//! itself checks, on the device it was asked to use, against references that travel with the
//! package or are computed there:
//!
//! - [`golden`]: the package's `golden/` files (PyTorch's outputs, written by the exporter) — the
//!   vision, embedding and rotary graphs, every layer's hidden states and the last-position logits
//!   of every golden case, and the three lenses, all under PyTorch's own masks;
//! - [`knockout`]: optimised knockout sweeps (cached prefix, suffix recomputation, batches) equal
//!   naive ones (a full forward per knockout), record for record;
//! - [`pruned`]: a compiled pathway plan that drops rows gives the dense masked run's logits.
//!
//! Every number is compared as `|a - e| / (1 + |e|)` (the golden contract of docs/testing.md), so
//! one tolerance serves hidden states, logits and probabilities; the largest absolute difference
//! is reported beside it. A non-finite value fails whatever the tolerance.

pub mod golden;
pub mod knockout;
pub mod pruned;

use ndarray::{ArrayView, Dimension};
use serde::Serialize;

use crate::error::{Error, Result};
use crate::package::Package;
use crate::pathway::PathwayConfig;
use crate::runtime::Device;

/// The tolerance of fp32 packages against PyTorch (docs/testing.md).
pub const DEFAULT_TOLERANCE: f64 = 1e-4;

/// The paper's LLaVA-NeXT-Video-7B pathway config (configs/pathways), scaled to the package's
/// layer count: the published config is what pruned runs use, and shipping it in the binary keeps
/// the check independent of where the repository is.
pub const PUBLISHED_PATHWAYS: &str =
    include_str!("../../configs/pathways/llava-next-7b-video-ft.yaml");
pub const PUBLISHED_PATHWAYS_NAME: &str = "configs/pathways/llava-next-7b-video-ft.yaml";

/// Whether a check ran and what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pass,
    Fail,
    /// Nothing to compare against (e.g. a package without `golden/`).
    Skipped,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "PASS",
            Status::Fail => "FAIL",
            Status::Skipped => "SKIP",
        }
    }
}

/// One compared quantity.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// `golden`, `knockout` or `pruned`.
    pub group: String,
    /// What was compared, e.g. `knockout: hidden states (5 x [1,153,64])`.
    pub name: String,
    pub status: Status,
    /// Largest `|a - e|`.
    pub max_abs_diff: f64,
    /// Largest `|a - e| / (1 + |e|)`, the number held against the tolerance.
    pub max_err: f64,
    /// Values compared.
    pub values: usize,
    /// Why it failed or was skipped, or what it covered.
    pub detail: Option<String>,
}

/// Differences of one comparison, accumulated over any number of arrays.
#[derive(Debug, Clone, Copy, Default)]
pub struct Diff {
    pub max_abs: f64,
    pub max_err: f64,
    pub values: usize,
    pub non_finite: usize,
}

impl Diff {
    pub fn add(&mut self, actual: f64, expected: f64) {
        self.values += 1;
        let d = (actual - expected).abs();
        if !d.is_finite() {
            // NaN or infinity in either: never within any tolerance.
            self.non_finite += 1;
            self.max_abs = f64::INFINITY;
            self.max_err = f64::INFINITY;
            return;
        }
        self.max_abs = self.max_abs.max(d);
        self.max_err = self.max_err.max(d / (1.0 + expected.abs()));
    }

    /// Compares two arrays of the same shape (a shape mismatch is an error naming `what`).
    pub fn arrays<D: Dimension>(
        &mut self,
        actual: ArrayView<'_, f32, D>,
        expected: ArrayView<'_, f32, D>,
        what: &str,
    ) -> Result<()> {
        if actual.shape() != expected.shape() {
            return Err(Error::Input(format!(
                "{what}: computed shape {:?}, reference shape {:?}",
                actual.shape(),
                expected.shape()
            )));
        }
        for (a, e) in actual.iter().zip(expected.iter()) {
            self.add(f64::from(*a), f64::from(*e));
        }
        Ok(())
    }

    /// The result of this comparison against `tolerance`.
    pub fn result(&self, group: &str, name: String, tolerance: f64) -> CheckResult {
        let pass = self.non_finite == 0 && self.max_err <= tolerance;
        CheckResult {
            group: group.to_string(),
            name,
            status: if pass { Status::Pass } else { Status::Fail },
            max_abs_diff: self.max_abs,
            max_err: self.max_err,
            values: self.values,
            detail: (self.non_finite > 0)
                .then(|| format!("{} non-finite differences", self.non_finite)),
        }
    }
}

fn skipped(group: &str, name: &str, why: String) -> CheckResult {
    CheckResult {
        group: group.to_string(),
        name: name.to_string(),
        status: Status::Skipped,
        max_abs_diff: 0.0,
        max_err: 0.0,
        values: 0,
        detail: Some(why),
    }
}

/// A check that could not run to a comparison (a graph failed, a shape was off) fails, with the
/// error as its detail, so one broken part does not hide the others' results.
fn failed(group: &str, name: &str, e: &Error) -> CheckResult {
    CheckResult {
        group: group.to_string(),
        name: name.to_string(),
        status: Status::Fail,
        max_abs_diff: f64::INFINITY,
        max_err: f64::INFINITY,
        values: 0,
        detail: Some(e.to_string()),
    }
}

/// What to check.
#[derive(Debug, Clone)]
pub struct CheckSettings {
    /// Largest `|a - e| / (1 + |e|)` allowed.
    pub tolerance: f64,
    /// Pathway config of the pruned check (default: [`PUBLISHED_PATHWAYS`] scaled).
    pub pathways: Option<PathwayConfig>,
}

impl CheckSettings {
    pub fn new(tolerance: f64) -> Result<CheckSettings> {
        if !(tolerance.is_finite() && tolerance > 0.0) {
            return Err(Error::Input(format!(
                "--tolerance {tolerance}: expected a finite number > 0"
            )));
        }
        Ok(CheckSettings {
            tolerance,
            pathways: None,
        })
    }
}

#[derive(Debug, Clone, Serialize)]
pub struct CheckReport {
    pub model: String,
    pub dtype: String,
    pub device: String,
    pub tolerance: f64,
    pub passed: bool,
    pub failed: usize,
    pub checks: Vec<CheckResult>,
}

impl CheckReport {
    /// One line per check; the last line says whether everything passed.
    pub fn table(&self) -> String {
        let width = self.checks.iter().map(|c| c.name.len()).max().unwrap_or(0);
        let mut s = format!(
            "vidflow check: {} ({}) on {}, tolerance {:e} on |a-e|/(1+|e|)\n",
            self.model, self.dtype, self.device, self.tolerance
        );
        for c in &self.checks {
            s += &format!(
                "{}  {:<width$}  max abs diff {:>9.3e}  max err {:>9.3e}",
                c.status.label(),
                c.name,
                c.max_abs_diff,
                c.max_err,
            );
            if let Some(d) = &c.detail {
                s += &format!("  ({d})");
            }
            s += "\n";
        }
        s += &if self.passed {
            format!("all {} checks passed\n", self.checks.len())
        } else {
            format!("{} of {} checks FAILED\n", self.failed, self.checks.len())
        };
        s
    }
}

/// Runs every check on `pkg`, which was opened on `device` (only recorded in the report).
pub fn run_checks(pkg: &Package, device: Device, settings: &CheckSettings) -> Result<CheckReport> {
    let tol = settings.tolerance;
    let mut checks = golden::check(pkg, tol)?;
    let inputs = knockout::sample_inputs(pkg);
    match &inputs {
        Ok(inp) => {
            checks.extend(knockout::check(pkg, inp, tol));
            let cfg = match &settings.pathways {
                Some(c) => c.clone(),
                None => PathwayConfig::from_yaml(
                    PUBLISHED_PATHWAYS,
                    std::path::Path::new(PUBLISHED_PATHWAYS_NAME),
                )?,
            };
            checks.extend(pruned::check(pkg, inp, &cfg, tol));
        }
        Err(e) => {
            checks.push(failed("knockout", "knockout inputs", e));
            checks.push(failed("pruned", "pruned inputs", e));
        }
    }
    let failed = checks.iter().filter(|c| c.status == Status::Fail).count();
    let m = &pkg.manifest;
    Ok(CheckReport {
        model: m.name.clone(),
        dtype: format!("{:?}", m.dtype).to_lowercase(),
        device: device.to_string(),
        tolerance: tol,
        passed: failed == 0,
        failed,
        checks,
    })
}
