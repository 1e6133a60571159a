//! One-node graphs (gather, slice by indices, concatenate, broadcast, copy) built in memory with
//! ONNX Runtime's model editor and run on the package's provider, so that moving rows between
//! graphs never takes a round trip through the host.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use ort::editor::{Graph, Model, Node, Opset, ONNX_DOMAIN};
use ort::memory::MemoryInfo;
use ort::operator::Attribute;
use ort::session::Session;
use ort::value::{DynValue, Outlet, Shape, SymbolicDimensions, TensorElementType, ValueType};

use super::tensor::Tensor;
use super::RuntimeOptions;
use crate::error::{Error, Result};

/// An operation over float tensors of one rank.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Op {
    /// `y = Gather(x, indices[N], axis)`.
    Gather { rank: usize, axis: usize },
    /// `y = Concat(a, b, axis)`.
    Concat { rank: usize, axis: usize },
    /// `y = Expand(x, shape[rank])`.
    Expand { rank: usize },
    /// `y = Identity(x)`: a copy in a buffer of its own.
    Identity { rank: usize },
    /// `y = Reshape(x, shape[to])`.
    Reshape { from: usize, to: usize },
}

const OPSET: u32 = 21;

fn tensor(name: &str, ty: TensorElementType, rank: usize) -> Outlet {
    let dims = (0..rank).map(|i| format!("{name}_{i}"));
    Outlet::new(
        name,
        ValueType::Tensor {
            ty,
            shape: Shape::new(vec![-1; rank]),
            dimension_symbols: SymbolicDimensions::new(dims),
        },
    )
}

impl Op {
    fn name(&self) -> String {
        match self {
            Op::Gather { rank, axis } => format!("gather(rank {rank}, axis {axis})"),
            Op::Concat { rank, axis } => format!("concat(rank {rank}, axis {axis})"),
            Op::Expand { rank } => format!("expand(rank {rank})"),
            Op::Identity { rank } => format!("copy(rank {rank})"),
            Op::Reshape { from, to } => format!("reshape(rank {from} to {to})"),
        }
    }

    fn model(&self) -> ort::Result<Model> {
        let f = TensorElementType::Float32;
        let i = TensorElementType::Int64;
        // (operator, second input's type and rank, axis attribute, input rank, output rank)
        let (op_type, second, axis, rank_in, rank_out) = match *self {
            Op::Gather { rank, axis } => ("Gather", Some((i, 1)), Some(axis), rank, rank),
            Op::Concat { rank, axis } => ("Concat", Some((f, rank)), Some(axis), rank, rank),
            Op::Expand { rank } => ("Expand", Some((i, 1)), None, rank, rank),
            Op::Identity { rank } => ("Identity", None, None, rank, rank),
            Op::Reshape { from, to } => ("Reshape", Some((i, 1)), None, from, to),
        };
        let mut inputs = vec![tensor("x", f, rank_in)];
        inputs.extend(second.map(|(ty, rank)| tensor("i", ty, rank)));
        let names: Vec<&str> = ["x", "i"][..inputs.len()].to_vec();
        let attributes = match axis {
            Some(axis) => vec![Attribute::new("axis", axis as i64)?],
            None => Vec::new(),
        };
        let node = Node::new(op_type, ONNX_DOMAIN, "op", names, ["y"], attributes)?;
        let mut graph = Graph::new()?;
        graph.set_inputs(inputs)?;
        graph.set_outputs([tensor("y", f, rank_out)])?;
        graph.add_node(node)?;
        let mut model = Model::new([Opset::new(ONNX_DOMAIN, OPSET)?])?;
        model.set_graph(graph)?;
        Ok(model)
    }
}

/// The op sessions of one package, built on first use.
pub(crate) struct Ops {
    opts: RuntimeOptions,
    sessions: Mutex<HashMap<Op, Arc<Mutex<Session>>>>,
}

impl Ops {
    pub(crate) fn new(mut opts: RuntimeOptions) -> Ops {
        // One-node copies gain nothing from TensorRT (and its shape profiles name the package's
        // inputs): they run on the CUDA provider, in the same device memory.
        if opts.device == super::Device::TensorRt {
            opts.device = super::Device::Cuda;
        }
        Ops {
            opts,
            sessions: Mutex::new(HashMap::new()),
        }
    }

    fn session(&self, op: Op) -> Result<Arc<Mutex<Session>>> {
        let mut sessions = self
            .sessions
            .lock()
            .map_err(|_| Error::Runtime("op sessions: lock poisoned".into()))?;
        if let Some(s) = sessions.get(&op) {
            return Ok(s.clone());
        }
        let what = op.name();
        let builder = super::session_builder(&self.opts, &what)?;
        let session = op
            .model()
            .and_then(|m| m.into_session(&builder))
            .map_err(|e| Error::Runtime(format!("building the {what} graph: {e}")))?;
        let session = Arc::new(Mutex::new(session));
        sessions.insert(op, session.clone());
        Ok(session)
    }

    /// Runs `op` on `inputs`, its output bound to `memory`.
    pub(crate) fn run(
        &self,
        op: Op,
        inputs: &[&Tensor],
        memory: &MemoryInfo<'static>,
    ) -> Result<DynValue> {
        let what = op.name();
        let ctx = |e: ort::Error| Error::Runtime(format!("{what}: {e}"));
        let session = self.session(op)?;
        let mut session = session
            .lock()
            .map_err(|_| Error::Runtime(format!("{what}: session lock poisoned")))?;
        let mut binding = session.create_binding().map_err(ctx)?;
        for (name, t) in ["x", "i"].iter().zip(inputs) {
            binding.bind_input(*name, t.value()).map_err(ctx)?;
        }
        binding.bind_output_to_device("y", memory).map_err(ctx)?;
        let mut out = session.run_binding(&binding).map_err(ctx)?;
        out.remove("y")
            .ok_or_else(|| Error::Runtime(format!("{what}: no output")))
    }
}
