//! Shared helpers of the integration tests: the shipped test package and its golden files.
#![allow(dead_code)]

use std::path::PathBuf;

use ndarray::ArrayD;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;
use vidflow::package::Package;
use vidflow::runtime::RuntimeOptions;

pub fn repo_path(rel: &str) -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join(rel)
}

/// A 2-second 64x48 H.264 clip of an FFmpeg test pattern (`testsrc2`, `mandelbrot`, …).
pub fn ffmpeg_clip(path: &std::path::Path, pattern: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let out = std::process::Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg(format!("{pattern}=size=64x48:rate=8"))
        .args(["-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs the `vidflow` binary from the repository root; it must succeed. Returns its stdout.
pub fn run_vidflow(args: &[&str]) -> String {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .current_dir(repo_path(""))
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "vidflow {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

pub fn tiny_dir() -> PathBuf {
    repo_path("tests/fixtures/tiny")
}

pub fn options() -> RuntimeOptions {
    RuntimeOptions {
        threads: 1,
        ..RuntimeOptions::default()
    }
}

pub fn open_tiny() -> Package {
    Package::open(&tiny_dir(), &options()).expect("open the tiny test package")
}

#[derive(Debug, Deserialize)]
pub struct GoldenBlock {
    pub source: String,
    pub target: String,
    /// 0-based inclusive layer range.
    pub layers: [usize; 2],
    /// Batch entry the block applies to (all entries when absent).
    #[serde(default)]
    pub batch: Option<usize>,
}

#[derive(Debug, Deserialize)]
pub struct GoldenCase {
    pub name: String,
    pub batch: usize,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub blocks: Vec<GoldenBlock>,
}

#[derive(Debug, Deserialize)]
pub struct GoldenMeta {
    pub num_layers: usize,
    pub seq_len: usize,
    pub video_start: usize,
    pub tokens_per_frame: usize,
    pub num_frames: usize,
    pub prefix_len: usize,
    pub cases: Vec<GoldenCase>,
}

pub struct Golden {
    pub meta: GoldenMeta,
    bytes: Vec<u8>,
}

impl Golden {
    pub fn load() -> Golden {
        Golden::load_from(&tiny_dir())
    }

    /// The golden files of the package at `package`.
    pub fn load_from(package: &std::path::Path) -> Golden {
        let dir = package.join("golden");
        let meta: GoldenMeta = serde_yaml::from_str(
            &std::fs::read_to_string(dir.join("golden.yaml")).expect("golden.yaml"),
        )
        .expect("parse golden.yaml");
        let bytes = std::fs::read(dir.join("golden.safetensors")).expect("golden.safetensors");
        Golden { meta, bytes }
    }

    pub fn case(&self, name: &str) -> &GoldenCase {
        self.meta
            .cases
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("golden case {name} missing"))
    }

    fn raw(&self, name: &str) -> (Vec<usize>, Dtype, Vec<u8>) {
        let st = SafeTensors::deserialize(&self.bytes).expect("safetensors");
        let t = st
            .tensor(name)
            .unwrap_or_else(|e| panic!("golden tensor {name}: {e}"));
        (t.shape().to_vec(), t.dtype(), t.data().to_vec())
    }

    pub fn f32(&self, name: &str) -> ArrayD<f32> {
        let (shape, dtype, data) = self.raw(name);
        assert_eq!(dtype, Dtype::F32, "{name}");
        let v = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        ArrayD::from_shape_vec(shape, v).unwrap()
    }

    pub fn i64(&self, name: &str) -> ArrayD<i64> {
        let (shape, dtype, data) = self.raw(name);
        assert_eq!(dtype, Dtype::I64, "{name}");
        let v = data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap()))
            .collect();
        ArrayD::from_shape_vec(shape, v).unwrap()
    }

    pub fn u8(&self, name: &str) -> ArrayD<u8> {
        let (shape, dtype, data) = self.raw(name);
        assert!(
            matches!(dtype, Dtype::U8 | Dtype::BOOL),
            "{name}: {dtype:?}"
        );
        ArrayD::from_shape_vec(shape, data).unwrap()
    }
}

/// Largest elementwise error scaled as `|a - e| / (1 + |e|)`.
pub fn max_err<D: ndarray::Dimension>(
    actual: &ndarray::ArrayView<'_, f32, D>,
    expected: &ndarray::ArrayView<'_, f32, D>,
) -> f32 {
    assert_eq!(actual.shape(), expected.shape(), "shapes differ");
    actual
        .iter()
        .zip(expected.iter())
        .map(|(a, e)| (a - e).abs() / (1.0 + e.abs()))
        .fold(0.0, f32::max)
}

pub fn assert_close<D: ndarray::Dimension>(
    actual: ndarray::ArrayView<'_, f32, D>,
    expected: ndarray::ArrayView<'_, f32, D>,
    tol: f32,
    what: &str,
) {
    let err = max_err(&actual, &expected);
    assert!(err <= tol, "{what}: max error {err:e} > {tol:e}");
}

/// Rust's own input pipeline on the golden pixels, ids and positions: vision graph, embeddings,
/// splice and rotary tables (what the golden parity tests compare stage by stage).
pub fn golden_inputs(
    pkg: &Package,
    golden: &Golden,
) -> (vidflow::runtime::Tensor, vidflow::engine::Rotary) {
    use ndarray::{Ix2, Ix4};
    use vidflow::engine;
    let pixels = golden
        .f32("pixel_values")
        .into_dimensionality::<Ix4>()
        .unwrap();
    let ids = golden
        .i64("input_ids")
        .into_dimensionality::<Ix2>()
        .unwrap();
    let video = engine::encode_video(pkg, pixels.view()).unwrap();
    let text = engine::embed_tokens(pkg, ids.view()).unwrap();
    let row: Vec<i64> = ids.row(0).to_vec();
    let slots = vidflow::prompt::VideoSlot::in_ids(&row, &pkg.manifest).unwrap();
    let embeds = engine::splice_video(pkg, &text, &slots, &video).unwrap();
    let positions = engine::Positions::from_ids(golden.i64("position_ids")).unwrap();
    let rot = engine::rotary(pkg, &positions).unwrap();
    (embeds, rot)
}
