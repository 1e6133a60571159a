//! `vidflow check` on the shipped test package (tests/fixtures/tiny) on the CPU: it passes at the
//! golden contract's 1e-4, and it fails where it must — a tolerance no float run meets, a golden
//! logit or hidden-state value moved in a copy of the package (only the check that reads that value
//! fails, by the amount it was moved), a tolerance that is no number.

mod common;

use std::path::Path;
use std::process::{Command, Output};

use common::*;
use ndarray::Axis;
use serde_json::Value;
use vidflow::engine::{self, ForwardSpec, Keep, Masks};
use vidflow::mask::MaskedRows;
use vidflow::package::Projection;

fn vidflow(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .args(args)
        .args(["--threads", "1"])
        .output()
        .expect("run vidflow")
}

fn check_json(pkg: &Path, extra: &[&str]) -> (Output, Value) {
    let mut args = vec!["check", "--model", pkg.to_str().unwrap(), "--json"];
    args.extend_from_slice(extra);
    let out = vidflow(&args);
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "check --json printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out, json)
}

fn rows(json: &Value) -> &Vec<Value> {
    json["checks"].as_array().expect("checks")
}

fn row<'a>(json: &'a Value, name_start: &str) -> &'a Value {
    rows(json)
        .iter()
        .find(|c| c["name"].as_str().unwrap().starts_with(name_start))
        .unwrap_or_else(|| panic!("no check named {name_start}…"))
}

fn failing(json: &Value) -> Vec<String> {
    rows(json)
        .iter()
        .filter(|c| c["status"] == "fail")
        .map(|c| c["name"].as_str().unwrap().to_string())
        .collect()
}

/// A copy of the test package in a temporary folder (3.8 MB), optionally without golden/.
fn copy_package(with_golden: bool) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    fn copy(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            let p = e.path();
            if p.is_dir() {
                copy(&p, &to.join(e.file_name()));
            } else {
                std::fs::copy(&p, to.join(e.file_name())).unwrap();
            }
        }
    }
    copy(&tiny_dir(), dir.path());
    if !with_golden {
        std::fs::remove_dir_all(dir.path().join("golden")).unwrap();
    }
    dir
}

/// Adds `delta` to element `index` (row-major) of an f32 tensor of a safetensors file, editing the
/// bytes in place: the header (a little-endian u64 length, then JSON with each tensor's
/// `data_offsets` into the data after it) is read here, independently of the code under test.
fn perturb(file: &Path, tensor: &str, index: usize, delta: f32) -> (f32, f32) {
    let mut bytes = std::fs::read(file).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: Value = serde_json::from_slice(&bytes[8..8 + n]).unwrap();
    let t = &header[tensor];
    assert_eq!(t["dtype"], "F32", "{tensor}");
    let start = 8 + n + t["data_offsets"][0].as_u64().unwrap() as usize + 4 * index;
    let old = f32::from_le_bytes(bytes[start..start + 4].try_into().unwrap());
    let new = old + delta;
    bytes[start..start + 4].copy_from_slice(&new.to_le_bytes());
    std::fs::write(file, bytes).unwrap();
    (old, new)
}

#[test]
fn check_passes_on_the_tiny_package_and_reports_every_part() {
    let (out, json) = check_json(&tiny_dir(), &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json["passed"], true);
    assert_eq!(json["device"], "cpu");
    assert_eq!(json["tolerance"], 1e-4);
    let by_group = |g: &str| rows(&json).iter().filter(|c| c["group"] == g).count();
    // 3 input stages + the position rule + 4 golden cases x (hidden, logits) + the prefill lenses.
    assert_eq!(by_group("golden"), 4 + 4 * 2 + 1);
    // One sweep per window style; the published config and random blocking.
    assert_eq!(by_group("knockout"), 4);
    assert_eq!(by_group("pruned"), 2);
    for c in rows(&json) {
        assert_eq!(c["status"], "pass", "{c}");
        assert!(c["values"].as_u64().unwrap() > 0, "{c}");
        assert!(c["max_err"].as_f64().unwrap() <= 1e-4, "{c}");
    }
    // Each knockout sweep compared 11 flows x 4 layers records, four numbers each.
    assert_eq!(row(&json, "knockout center")["values"], 11 * 4 * 4);
    // The hidden-state row covers every layer input and output: 5 x 153 x 64 values.
    assert_eq!(row(&json, "prefill: hidden states")["values"], 5 * 153 * 64);

    // The reported difference of the prefill logits is the one computed here, from the library's
    // engine and the golden file, with the test's own arithmetic.
    let pkg = open_tiny();
    let golden = Golden::load();
    let s = golden.meta.seq_len;
    let (embeds, rot) = golden_inputs(&pkg, &golden);
    let mut causal = vec![0f32; s * s];
    for q in 0..s {
        for k in q + 1..s {
            causal[q * s + k] = f32::MIN;
        }
    }
    let mask = ndarray::Array4::from_shape_vec((1, 1, s, s), causal).unwrap();
    let masks = Masks::same(&mask);
    let out = engine::forward(
        &pkg,
        ForwardSpec {
            start_layer: 0,
            hidden: &embeds,
            rotary: &rot,
            past: None,
            masks: &masks,
            masked_rows: MaskedRows::Uniform,
            keep: Keep::default(),
        },
    )
    .unwrap();
    let logits = engine::project(&pkg, Projection::NormHead, &out.last_row(&pkg).unwrap()).unwrap();
    let want = golden.f32("prefill.logits_last");
    let ours = logits.index_axis(Axis(1), 0);
    let abs = ours
        .iter()
        .zip(want.iter())
        .map(|(a, e)| f64::from((a - e).abs()))
        .fold(0.0, f64::max);
    let reported = row(&json, "prefill: last-position logits")["max_abs_diff"]
        .as_f64()
        .unwrap();
    assert!(
        (reported - abs).abs() <= 1e-9,
        "reported {reported:e}, computed {abs:e}"
    );
}

#[test]
fn check_fails_with_a_tolerance_no_float_run_meets() {
    let (out, json) = check_json(&tiny_dir(), &["--tolerance", "1e-12"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json["passed"], false);
    let failed = failing(&json);
    // PyTorch and ONNX Runtime never agree to 1e-12 over four layers.
    assert!(
        failed
            .iter()
            .any(|n| n.starts_with("prefill: hidden states")),
        "{failed:?}"
    );
    assert_eq!(json["failed"].as_u64().unwrap() as usize, failed.len());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("checks failed on cpu"), "{err}");

    // The table says the same.
    let out = vidflow(&[
        "check",
        "--model",
        tiny_dir().to_str().unwrap(),
        "--tolerance",
        "1e-12",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(table.contains("FAIL  prefill: hidden states"), "{table}");
    assert!(table.contains("checks FAILED"), "{table}");
}

#[test]
fn a_tampered_golden_logit_fails_only_its_own_check() {
    let pkg = copy_package(true);
    let file = pkg.path().join("golden/golden.safetensors");
    let (old, new) = perturb(&file, "knockout.logits_last", 17, 0.05);
    let (out, json) = check_json(pkg.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(failing(&json), ["knockout: last-position logits"]);
    let r = row(&json, "knockout: last-position logits");
    // The difference is the perturbation (the true one is below 1e-5), scaled by 1 + |new|.
    let abs = r["max_abs_diff"].as_f64().unwrap();
    assert!((abs - 0.05).abs() < 1e-4, "max abs diff {abs}");
    let scaled = r["max_err"].as_f64().unwrap();
    let expected = f64::from(new - old).abs() / (1.0 + f64::from(new).abs());
    assert!((scaled - expected).abs() < 1e-4, "{scaled} vs {expected}");
}

#[test]
fn a_tampered_hidden_state_fails_and_names_its_layer() {
    let pkg = copy_package(true);
    let file = pkg.path().join("golden/golden.safetensors");
    // prefill.hidden is [5, 1, 153, 64]: entry 2 is the output of layer 1; row 100, column 5.
    perturb(&file, "prefill.hidden", (2 * 153 + 100) * 64 + 5, 1.0);
    let (out, json) = check_json(pkg.path(), &[]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(failing(&json), ["prefill: hidden states (5 x [1,153,64])"]);
    let r = row(&json, "prefill: hidden states");
    assert_eq!(r["detail"], "worst: output of layer 1");
    assert!((r["max_abs_diff"].as_f64().unwrap() - 1.0).abs() < 1e-4);
}

#[test]
fn a_package_without_golden_files_skips_parity_and_runs_the_rest() {
    let pkg = copy_package(false);
    let (out, json) = check_json(pkg.path(), &[]);
    assert!(out.status.success());
    let g = row(&json, "golden parity");
    assert_eq!(g["status"], "skipped");
    assert!(g["detail"].as_str().unwrap().contains("does not exist"));
    assert_eq!(
        rows(&json).iter().filter(|c| c["status"] == "pass").count(),
        6
    );
}

#[test]
fn tolerances_that_are_no_positive_number_are_refused() {
    for bad in ["0", "-1e-4", "NaN", "inf"] {
        let flag = format!("--tolerance={bad}");
        let out = vidflow(&["check", "--model", tiny_dir().to_str().unwrap(), &flag]);
        assert_eq!(out.status.code(), Some(1), "{bad}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("expected a finite number > 0"), "{bad}: {err}");
    }
}
