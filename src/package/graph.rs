//! One ONNX graph and its session, with typed inputs and float outputs copied out.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ndarray::{ArrayD, ArrayViewD, CowArray, IxDyn};
use ort::session::{Session, SessionInputValue};
use ort::value::{TensorElementType, TensorRef, ValueType};

use crate::error::{Error, Result};
use crate::runtime::{open_session, RuntimeOptions};

/// An input tensor borrowed from the caller.
pub enum Input<'a> {
    F32(ArrayViewD<'a, f32>),
    I64(ArrayViewD<'a, i64>),
}

/// Declared element type and shape (-1 = dynamic) of one graph input or output.
#[derive(Debug, Clone)]
pub struct Port {
    pub name: String,
    pub dtype: Option<TensorElementType>,
    pub shape: Vec<i64>,
}

/// A graph ready to run. `Session::run` needs `&mut`, so runs are serialised per graph; the
/// engine never runs one graph from two threads at once anyway.
pub struct Graph {
    path: PathBuf,
    session: Mutex<Session>,
    inputs: Vec<Port>,
    outputs: Vec<Port>,
}

fn port(name: &str, ty: &ValueType) -> Port {
    match ty {
        ValueType::Tensor { ty, shape, .. } => Port {
            name: name.to_string(),
            dtype: Some(*ty),
            shape: shape.to_vec(),
        },
        _ => Port {
            name: name.to_string(),
            dtype: None,
            shape: Vec::new(),
        },
    }
}

impl Graph {
    pub fn open(path: &Path, opts: &RuntimeOptions) -> Result<Graph> {
        let session = open_session(path, opts)?;
        let inputs = session
            .inputs()
            .iter()
            .map(|o| port(o.name(), o.dtype()))
            .collect();
        let outputs = session
            .outputs()
            .iter()
            .map(|o| port(o.name(), o.dtype()))
            .collect();
        Ok(Graph {
            path: path.to_path_buf(),
            session: Mutex::new(session),
            inputs,
            outputs,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }
    pub fn inputs(&self) -> &[Port] {
        &self.inputs
    }
    pub fn outputs(&self) -> &[Port] {
        &self.outputs
    }

    /// Runs the graph and returns the named float outputs, in the order asked.
    pub fn run(
        &self,
        inputs: Vec<(&str, Input<'_>)>,
        outputs: &[&str],
    ) -> Result<Vec<ArrayD<f32>>> {
        let ctx = |e: ort::Error| Error::Runtime(format!("{}: {e}", self.path.display()));
        // Contiguous copies only where a view is not already in standard layout.
        let f32_owned: Vec<(usize, CowArray<'_, f32, IxDyn>)> = inputs
            .iter()
            .enumerate()
            .filter_map(|(i, (_, v))| match v {
                Input::F32(a) => Some((i, a.as_standard_layout())),
                Input::I64(_) => None,
            })
            .collect();
        let i64_owned: Vec<(usize, CowArray<'_, i64, IxDyn>)> = inputs
            .iter()
            .enumerate()
            .filter_map(|(i, (_, v))| match v {
                Input::I64(a) => Some((i, a.as_standard_layout())),
                Input::F32(_) => None,
            })
            .collect();
        let mut values: Vec<(String, SessionInputValue<'_>)> = Vec::with_capacity(inputs.len());
        for (i, (name, _)) in inputs.iter().enumerate() {
            let value: SessionInputValue<'_> =
                if let Some((_, a)) = f32_owned.iter().find(|(j, _)| *j == i) {
                    TensorRef::from_array_view(a.view()).map_err(ctx)?.into()
                } else {
                    let (_, a) = i64_owned.iter().find(|(j, _)| *j == i).expect("input kind");
                    TensorRef::from_array_view(a.view()).map_err(ctx)?.into()
                };
            values.push((name.to_string(), value));
        }
        let mut session = self.session.lock().map_err(|_| {
            Error::Runtime(format!("{}: session lock poisoned", self.path.display()))
        })?;
        let result = session.run(values).map_err(ctx)?;
        outputs
            .iter()
            .map(|name| {
                let value = result.get(*name).ok_or_else(|| {
                    Error::Runtime(format!(
                        "{}: the graph has no output `{name}`",
                        self.path.display()
                    ))
                })?;
                let arr = value.try_extract_array::<f32>().map_err(ctx)?;
                Ok(arr.to_owned())
            })
            .collect()
    }
}
