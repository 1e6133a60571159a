//! Golden parity on the device: the package's `golden/` files hold PyTorch's inputs, masks and
//! outputs (export/vidflow_export/golden.py). The masks used are PyTorch's own (`<case>.blocked`),
//! not masks rebuilt by vidflow, so this checks the graphs and the engine on this device and
//! nothing else; tests/golden_parity.rs checks separately that vidflow's masks equal them.

use std::path::{Path, PathBuf};

use ndarray::{s, Array3, Array4, ArrayD, Axis, Ix2, Ix3, Ix4, Ix5};
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use super::{failed, skipped, CheckResult, Diff};
use crate::engine::{self, ForwardSpec, Keep, LayerKv, Masks, Positions, Rotary};
use crate::error::{Error, Result};
use crate::mask::{MaskedRows, BLOCKED};
use crate::package::{Package, Projection};
use crate::prompt::VideoSlot;
use crate::runtime::Tensor;

const GROUP: &str = "golden";
pub const GOLDEN_DIR: &str = "golden";
pub const GOLDEN_YAML: &str = "golden.yaml";
pub const GOLDEN_TENSORS: &str = "golden.safetensors";

/// The part of golden.yaml the check needs; the block rules are not read, since the tensors carry
/// the masks they produced.
#[derive(Debug, Deserialize)]
struct Meta {
    num_layers: usize,
    cases: Vec<Case>,
}

#[derive(Debug, Deserialize)]
struct Case {
    name: String,
}

/// The golden tensors of a package, read once.
pub struct GoldenFiles {
    path: PathBuf,
    bytes: Vec<u8>,
}

impl GoldenFiles {
    pub fn read(path: &Path) -> Result<GoldenFiles> {
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        SafeTensors::deserialize(&bytes)
            .map_err(|e| Error::Input(format!("{}: {e}", path.display())))?;
        Ok(GoldenFiles {
            path: path.to_path_buf(),
            bytes,
        })
    }

    fn err(&self, msg: String) -> Error {
        Error::Input(format!("{}: {msg}", self.path.display()))
    }

    pub fn has(&self, name: &str) -> bool {
        SafeTensors::deserialize(&self.bytes)
            .map(|st| st.tensor(name).is_ok())
            .unwrap_or(false)
    }

    fn raw(&self, name: &str, dtypes: &[Dtype]) -> Result<(Vec<usize>, Vec<u8>)> {
        let st = SafeTensors::deserialize(&self.bytes).map_err(|e| self.err(e.to_string()))?;
        let t = st
            .tensor(name)
            .map_err(|e| self.err(format!("tensor {name}: {e}")))?;
        if !dtypes.contains(&t.dtype()) {
            return Err(self.err(format!(
                "tensor {name} is {:?}, expected {dtypes:?}",
                t.dtype()
            )));
        }
        Ok((t.shape().to_vec(), t.data().to_vec()))
    }

    pub fn f32(&self, name: &str) -> Result<ArrayD<f32>> {
        let (shape, data) = self.raw(name, &[Dtype::F32])?;
        let v = data
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes(c.try_into().expect("4 bytes")))
            .collect();
        ArrayD::from_shape_vec(shape, v).map_err(|e| self.err(format!("tensor {name}: {e}")))
    }

    pub fn i64(&self, name: &str) -> Result<ArrayD<i64>> {
        let (shape, data) = self.raw(name, &[Dtype::I64])?;
        let v = data
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")))
            .collect();
        ArrayD::from_shape_vec(shape, v).map_err(|e| self.err(format!("tensor {name}: {e}")))
    }

    pub fn u8(&self, name: &str) -> Result<ArrayD<u8>> {
        let (shape, data) = self.raw(name, &[Dtype::U8, Dtype::BOOL])?;
        ArrayD::from_shape_vec(shape, data).map_err(|e| self.err(format!("tensor {name}: {e}")))
    }
}

fn dim<D: ndarray::Dimension, T>(a: ArrayD<T>, name: &str) -> Result<ndarray::Array<T, D>> {
    a.into_dimensionality::<D>()
        .map_err(|e| Error::Input(format!("golden tensor {name}: {e}")))
}

/// The golden checks of `pkg`; a package without `golden/` gives one skipped row.
pub fn check(pkg: &Package, tol: f64) -> Result<Vec<CheckResult>> {
    let dir = pkg.dir().join(GOLDEN_DIR);
    if !dir.is_dir() {
        return Ok(vec![skipped(
            GROUP,
            "golden parity",
            format!("{} does not exist", dir.display()),
        )]);
    }
    let loaded = (|| -> Result<(Meta, GoldenFiles)> {
        let yaml = dir.join(GOLDEN_YAML);
        let text = std::fs::read_to_string(&yaml).map_err(|e| Error::io(&yaml, e))?;
        let meta: Meta = serde_yaml::from_str(&text)
            .map_err(|e| Error::Input(format!("{}: {e}", yaml.display())))?;
        Ok((meta, GoldenFiles::read(&dir.join(GOLDEN_TENSORS))?))
    })();
    let (meta, files) = match loaded {
        Ok(x) => x,
        Err(e) => return Ok(vec![failed(GROUP, "golden files", &e)]),
    };
    if meta.num_layers != pkg.num_layers() {
        let e = Error::Input(format!(
            "golden.yaml describes {} layers, the package has {}",
            meta.num_layers,
            pkg.num_layers()
        ));
        return Ok(vec![failed(GROUP, "golden files", &e)]);
    }
    let mut out = Vec::new();
    let inputs = match inputs(pkg, &files, tol, &mut out) {
        Ok(x) => x,
        Err(e) => {
            out.push(failed(GROUP, "inputs (vision, embed, rope)", &e));
            return Ok(out);
        }
    };
    for case in &meta.cases {
        if let Err(e) = check_case(pkg, &files, &inputs, &case.name, tol, &mut out) {
            out.push(failed(GROUP, &case.name, &e));
        }
    }
    Ok(out)
}

struct Inputs {
    embeds: Tensor,
    rotary: Rotary,
}

/// Rust's own input pipeline from the golden pixels, ids and positions, each stage compared.
fn inputs(
    pkg: &Package,
    files: &GoldenFiles,
    tol: f64,
    out: &mut Vec<CheckResult>,
) -> Result<Inputs> {
    let pixels = dim::<Ix4, _>(files.f32("pixel_values")?, "pixel_values")?;
    let ids = dim::<Ix2, _>(files.i64("input_ids")?, "input_ids")?;

    let video = engine::encode_video(pkg, pixels.view())?;
    let want = dim::<Ix2, _>(files.f32("video_embeds")?, "video_embeds")?;
    let mut d = Diff::default();
    let video_host: ndarray::Array2<f32> = pkg.data().download_as(&video)?;
    d.arrays(video_host.view(), want.view(), "video embeddings")?;
    out.push(d.result(GROUP, "vision graph: video embeddings".into(), tol));

    let text = engine::embed_tokens(pkg, ids.view())?;
    let row: Vec<i64> = ids.row(0).to_vec();
    let slots = VideoSlot::in_ids(&row, &pkg.manifest)
        .map_err(|e| Error::Input(format!("golden input_ids: {e}")))?;
    let embeds = engine::splice_video(pkg, &text, &slots, &video)?;
    let want = dim::<Ix3, _>(files.f32("embeds")?, "embeds")?;
    let mut d = Diff::default();
    let embeds_host: Array3<f32> = pkg.data().download_as(&embeds)?;
    d.arrays(embeds_host.view(), want.view(), "spliced embeddings")?;
    out.push(d.result(GROUP, "embed graph + splice: input embeddings".into(), tol));

    // The family's position rule, applied by vidflow, must give PyTorch's position ids exactly;
    // the rotary tables (and every layer after) then run on vidflow's own positions.
    let want = Positions::from_ids(files.i64("position_ids")?)?;
    let positions = Positions::new(&pkg.manifest, Some(slots[0].index), embeds.dim(1))?;
    if positions.ids().dim() != want.ids().dim() {
        return Err(Error::Input(format!(
            "vidflow's position ids are {:?} (axes, rows), PyTorch's {:?}",
            positions.ids().dim(),
            want.ids().dim()
        )));
    }
    let mut d = Diff::default();
    for (&a, &b) in positions.ids().iter().zip(want.ids().iter()) {
        d.add(a as f64, b as f64);
    }
    let name = format!(
        "position rule ({}): position ids",
        pkg.manifest.family.name()
    );
    out.push(d.result(GROUP, name, 0.0));
    let rotary = engine::rotary(pkg, &positions)?;
    let mut d = Diff::default();
    let cos = dim::<Ix3, _>(files.f32("cos")?, "cos")?;
    let sin = dim::<Ix3, _>(files.f32("sin")?, "sin")?;
    let (rc, rs) = rotary.to_host(pkg)?;
    d.arrays(rc.view(), cos.view(), "rotary cos")?;
    d.arrays(rs.view(), sin.view(), "rotary sin")?;
    out.push(d.result(GROUP, "rope graph: cos and sin".into(), tol));
    Ok(Inputs { embeds, rotary })
}

/// `[B,Q,K]` blocked flags -> the additive mask `[B,1,Q,K]` the layer graphs take.
fn additive(blocked: ndarray::ArrayView3<'_, u8>) -> Array4<f32> {
    blocked
        .mapv(|b| if b != 0 { BLOCKED } else { 0.0 })
        .insert_axis(Axis(1))
}

fn check_case(
    pkg: &Package,
    files: &GoldenFiles,
    inp: &Inputs,
    name: &str,
    tol: f64,
    out: &mut Vec<CheckResult>,
) -> Result<()> {
    let num_layers = pkg.num_layers();
    let blocked = dim::<Ix4, _>(files.u8(&format!("{name}.blocked"))?, "blocked")?;
    let (l, b, q, k) = blocked.dim();
    let s = inp.embeds.dim(1);
    if l != num_layers || k != s || q == 0 || q > k {
        return Err(Error::Input(format!(
            "{name}.blocked has shape [{l}, {b}, {q}, {k}], expected [{num_layers}, B, Q, {s}]"
        )));
    }
    // Rows P..S are computed; rows 0..P come in as past K/V (the extend case).
    let p = k - q;
    let past: Option<Vec<LayerKv>> = if p > 0 {
        let keys = dim::<Ix5, _>(files.f32(&format!("{name}.past_key"))?, "past_key")?;
        let values = dim::<Ix5, _>(files.f32(&format!("{name}.past_value"))?, "past_value")?;
        Some(
            (0..num_layers)
                .map(|l| {
                    LayerKv::upload(
                        pkg,
                        &keys.index_axis(Axis(0), l).to_owned(),
                        &values.index_axis(Axis(0), l).to_owned(),
                    )
                })
                .collect::<Result<_>>()?,
        )
    } else {
        None
    };
    let d = inp.embeds.dim(2);
    let data = pkg.data();
    let rows = data.slice(&inp.embeds, 1, p, s)?;
    let hidden = if b > 1 {
        data.expand_batch(&rows, b)?
    } else {
        rows
    };
    let rotary = inp.rotary.rows(pkg, &(p..s).collect::<Vec<_>>())?;
    let masks: Vec<Array4<f32>> = (0..num_layers)
        .map(|l| additive(blocked.index_axis(Axis(0), l)))
        .collect();
    let masks = Masks::per_layer(|l| Ok(masks[l].clone()));
    let result = engine::forward(
        pkg,
        ForwardSpec {
            start_layer: 0,
            hidden: &hidden,
            rotary: &rotary,
            past: past.as_deref(),
            masks: &masks,
            masked_rows: MaskedRows::Uniform,
            keep: Keep {
                hidden: true,
                kv: false,
                attn_layers: vec![],
            },
        },
    )?;

    let want = dim::<Ix4, _>(files.f32(&format!("{name}.hidden"))?, "hidden")?;
    if want.shape()[0] != result.hidden_states.len() {
        return Err(Error::Input(format!(
            "{name}.hidden holds {} states, the run gave {}",
            want.shape()[0],
            result.hidden_states.len()
        )));
    }
    let mut all = Diff::default();
    let mut worst = (0, -1.0);
    for (i, h) in result.hidden_states.iter().enumerate() {
        let h: Array3<f32> = data.download_as(h)?;
        let mut layer = Diff::default();
        layer.arrays(h.view(), want.index_axis(Axis(0), i), "hidden state")?;
        if layer.max_err > worst.1 {
            worst = (i, layer.max_err);
        }
        all.arrays(h.view(), want.index_axis(Axis(0), i), "hidden state")?;
    }
    let mut r = all.result(
        GROUP,
        format!(
            "{name}: hidden states ({} x [{b},{q},{d}]{})",
            result.hidden_states.len(),
            if p > 0 {
                format!(", past {p}")
            } else {
                String::new()
            }
        ),
        tol,
    );
    r.detail.get_or_insert_with(|| {
        if worst.0 == 0 {
            "worst: the layer input".to_string()
        } else {
            format!("worst: output of layer {}", worst.0 - 1)
        }
    });
    out.push(r);

    let logits = engine::project(pkg, Projection::NormHead, &result.last_row(pkg)?)?;
    let want = dim::<Ix2, _>(files.f32(&format!("{name}.logits_last"))?, "logits_last")?;
    let mut dl = Diff::default();
    dl.arrays(
        logits.index_axis(Axis(1), 0),
        want.view(),
        "last-position logits",
    )?;
    out.push(dl.result(GROUP, format!("{name}: last-position logits"), tol));

    // Lenses at the last position of every layer's output (batch entry 0), where recorded.
    let lenses = [
        (Projection::NormHead, "lens_norm"),
        (Projection::Head, "lens_lm"),
        (Projection::Embed, "lens_embed"),
    ];
    if lenses
        .iter()
        .all(|(_, n)| files.has(&format!("{name}.{n}")))
    {
        let mut dl = Diff::default();
        for (proj, lens) in lenses {
            let want = dim::<Ix2, _>(files.f32(&format!("{name}.{lens}"))?, lens)?;
            for l in 0..num_layers {
                let h = &result.hidden_states[l + 1];
                let first = data.gather(h, 0, &[0])?;
                let last = data.gather(&first, 1, &[h.dim(1) - 1])?;
                let got = engine::project(pkg, proj, &last)?;
                dl.arrays(got.slice(s![0, 0, ..]), want.index_axis(Axis(0), l), lens)?;
            }
        }
        out.push(dl.result(
            GROUP,
            format!("{name}: lenses (norm+head, head, embed) x {num_layers} layers"),
            tol,
        ));
    }
    Ok(())
}
