//! One ONNX graph and its session, run on tensors that stay in the provider's memory.

use std::path::{Path, PathBuf};
use std::sync::Mutex;

use ort::session::Session;
use ort::value::{TensorElementType, ValueType};

use crate::error::{Error, Result};
use crate::runtime::{open_session, DataPath, RuntimeOptions, Tensor};

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

    /// Runs the graph on tensors in the provider's memory; the named outputs, in the order asked,
    /// are bound to that memory too, so nothing crosses to the host.
    pub fn run(
        &self,
        data: &DataPath,
        inputs: &[(&str, &Tensor)],
        outputs: &[&str],
    ) -> Result<Vec<Tensor>> {
        let ctx = |e: ort::Error| Error::Runtime(format!("{}: {e}", self.path.display()));
        let mut session = self.session.lock().map_err(|_| {
            Error::Runtime(format!("{}: session lock poisoned", self.path.display()))
        })?;
        let mut binding = session.create_binding().map_err(ctx)?;
        for (name, t) in inputs {
            binding.bind_input(*name, t.value()).map_err(ctx)?;
        }
        for name in outputs {
            if !self.outputs.iter().any(|p| p.name == *name) {
                return Err(Error::Runtime(format!(
                    "{}: the graph has no output `{name}`",
                    self.path.display()
                )));
            }
            binding
                .bind_output_to_device(*name, data.memory())
                .map_err(ctx)?;
        }
        let mut result = session.run_binding(&binding).map_err(ctx)?;
        let what = self.path.display().to_string();
        outputs
            .iter()
            .map(|name| {
                let value = result.remove(*name).ok_or_else(|| {
                    Error::Runtime(format!("{what}: the graph returned no `{name}`"))
                })?;
                Tensor::from_value(value, data.on_host(), &what)
            })
            .collect()
    }
}
