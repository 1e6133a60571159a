//! Checks a package's graphs against its manifest before anything runs, so that an export bug
//! shows up as "layer_03.onnx: input `mask` has rank 3, expected 4" rather than a shape error deep
//! inside ONNX Runtime.

use ort::value::TensorElementType;

use super::graph::{Graph, Port};
use super::names::*;
use super::Manifest;
use crate::error::{Error, Result};

/// One expected dimension.
#[derive(Debug, Clone, Copy)]
pub enum Dim {
    /// A dynamic axis: the graph must leave it open (-1).
    Dynamic(&'static str),
    /// A size fixed by the manifest.
    Fixed(&'static str, usize),
}

/// Expected signature of one input or output.
pub struct Spec {
    pub name: &'static str,
    pub dtype: TensorElementType,
    pub dims: Vec<Dim>,
}

fn spec(name: &'static str, dtype: TensorElementType, dims: Vec<Dim>) -> Spec {
    Spec { name, dtype, dims }
}

use Dim::{Dynamic as Dy, Fixed as Fx};
const F32: TensorElementType = TensorElementType::Float32;
const I64: TensorElementType = TensorElementType::Int64;

pub fn vision(m: &Manifest) -> (Vec<Spec>, Vec<Spec>) {
    let v = &m.video;
    (
        vec![spec(
            VISION_IN_PIXELS,
            F32,
            vec![
                Dy("F"),
                Fx("channels", 3),
                Fx("video.frame_height", v.frame_height),
                Fx("video.frame_width", v.frame_width),
            ],
        )],
        vec![spec(
            VISION_OUT_EMBEDS,
            F32,
            vec![Dy("N"), Fx("hidden_size", m.hidden_size)],
        )],
    )
}

pub fn embed(m: &Manifest) -> (Vec<Spec>, Vec<Spec>) {
    (
        vec![spec(EMBED_IN_IDS, I64, vec![Dy("B"), Dy("T")])],
        vec![spec(
            EMBED_OUT,
            F32,
            vec![Dy("B"), Dy("T"), Fx("hidden_size", m.hidden_size)],
        )],
    )
}

pub fn rope(m: &Manifest) -> (Vec<Spec>, Vec<Spec>) {
    let table = |n| spec(n, F32, vec![Dy("B"), Dy("T"), Fx("rope_dim", m.rope_dim)]);
    (
        vec![spec(ROPE_IN_POSITIONS, I64, vec![Dy("B"), Dy("T")])],
        vec![table(ROPE_OUT_COS), table(ROPE_OUT_SIN)],
    )
}

pub fn layer(m: &Manifest, with_attn: bool) -> (Vec<Spec>, Vec<Spec>) {
    let d = Fx("hidden_size", m.hidden_size);
    let kv = |n| {
        spec(
            n,
            F32,
            vec![
                Dy("B"),
                Fx("num_kv_heads", m.num_kv_heads),
                Dy("P"),
                Fx("head_dim", m.head_dim),
            ],
        )
    };
    let kv_out = |n| {
        spec(
            n,
            F32,
            vec![
                Dy("B"),
                Fx("num_kv_heads", m.num_kv_heads),
                Dy("Q"),
                Fx("head_dim", m.head_dim),
            ],
        )
    };
    let table = |n| spec(n, F32, vec![Dy("B"), Dy("Q"), Fx("rope_dim", m.rope_dim)]);
    let inputs = vec![
        spec(LAYER_IN_HIDDEN, F32, vec![Dy("B"), Dy("Q"), d]),
        table(LAYER_IN_COS),
        table(LAYER_IN_SIN),
        kv(LAYER_IN_PAST_KEY),
        kv(LAYER_IN_PAST_VALUE),
        spec(
            LAYER_IN_MASK,
            F32,
            vec![Dy("B"), Fx("mask heads", 1), Dy("Q"), Dy("P+Q")],
        ),
    ];
    let mut outputs = vec![
        spec(LAYER_OUT_HIDDEN, F32, vec![Dy("B"), Dy("Q"), d]),
        kv_out(LAYER_OUT_KEY),
        kv_out(LAYER_OUT_VALUE),
    ];
    if with_attn {
        outputs.push(spec(
            LAYER_OUT_ATTN,
            F32,
            vec![Dy("B"), Fx("num_heads", m.num_heads), Dy("Q"), Dy("P+Q")],
        ));
    }
    (inputs, outputs)
}

pub fn head(m: &Manifest) -> (Vec<Spec>, Vec<Spec>) {
    (
        vec![spec(
            HEAD_IN_HIDDEN,
            F32,
            vec![Dy("B"), Dy("N"), Fx("hidden_size", m.hidden_size)],
        )],
        vec![spec(
            HEAD_OUT_LOGITS,
            F32,
            vec![Dy("B"), Dy("N"), Fx("vocab_size", m.vocab_size)],
        )],
    )
}

/// Compares a graph's declared ports with the expected ones; the error names the file, the port
/// and the first difference.
pub fn check(graph: &Graph, expected: (Vec<Spec>, Vec<Spec>)) -> Result<()> {
    let (ins, outs) = expected;
    check_ports(graph, "input", graph.inputs(), &ins)?;
    check_ports(graph, "output", graph.outputs(), &outs)
}

fn check_ports(graph: &Graph, kind: &str, actual: &[Port], expected: &[Spec]) -> Result<()> {
    let fail = |msg: String| Error::GraphMismatch {
        path: graph.path().to_path_buf(),
        msg,
    };
    for want in expected {
        let Some(got) = actual.iter().find(|p| p.name == want.name) else {
            let names: Vec<&str> = actual.iter().map(|p| p.name.as_str()).collect();
            return Err(fail(format!(
                "missing {kind} `{}` (the graph has {kind}s {names:?})",
                want.name
            )));
        };
        if got.dtype != Some(want.dtype) {
            return Err(fail(format!(
                "{kind} `{}` has element type {:?}, expected {:?}",
                want.name, got.dtype, want.dtype
            )));
        }
        if got.shape.len() != want.dims.len() {
            return Err(fail(format!(
                "{kind} `{}` has rank {} (shape {:?}), expected rank {}",
                want.name,
                got.shape.len(),
                got.shape,
                want.dims.len()
            )));
        }
        for (axis, (&g, w)) in got.shape.iter().zip(&want.dims).enumerate() {
            match *w {
                Dim::Fixed(what, n) if g >= 0 && g != n as i64 => {
                    return Err(fail(format!(
                        "{kind} `{}` axis {axis} is {g}, but the manifest's {what} is {n}",
                        want.name
                    )))
                }
                Dim::Dynamic(what) if g >= 0 => {
                    return Err(fail(format!(
                        "{kind} `{}` axis {axis} ({what}) is fixed at {g}; it must be dynamic",
                        want.name
                    )))
                }
                _ => {}
            }
        }
    }
    if let Some(extra) = actual
        .iter()
        .find(|p| !expected.iter().any(|s| s.name == p.name))
    {
        return Err(fail(format!(
            "unexpected {kind} `{}`; expected only {:?}",
            extra.name,
            expected.iter().map(|s| s.name).collect::<Vec<_>>()
        )));
    }
    Ok(())
}
