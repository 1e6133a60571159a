//! The engine's one tensor type and the data path it travels on.
//!
//! A [`Tensor`] is an ONNX Runtime value that lives where the sessions' provider computes: host
//! memory for the CPU provider, device memory for CUDA and TensorRT. Graph outputs are bound to
//! that memory (IoBinding) and fed to the next graph as they are, so hidden states, K/V, rotary
//! tables and masks never cross to the host between layers. Every crossing goes through
//! [`DataPath::upload`] or [`DataPath::download`], which count calls and bytes: on the CPU these
//! are host copies, counted the same way, so the CPU tests check what a GPU run would move.

use std::sync::atomic::{AtomicU64, Ordering};

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
use ort::value::{DynValue, TensorElementType};
use serde::Serialize;

use super::ops::{Op, Ops};
use super::{Device, RuntimeOptions};
use crate::error::{Error, Result};

/// A tensor held by ONNX Runtime in the provider's memory (float32 or int64).
#[derive(Debug)]
pub struct Tensor {
    value: DynValue,
    shape: Vec<usize>,
    elem: TensorElementType,
    /// Whether the values are in host memory (the CPU provider's), readable without a copy.
    on_host: bool,
}

impl Tensor {
    pub(crate) fn from_value(value: DynValue, on_host: bool, what: &str) -> Result<Tensor> {
        let (elem, shape) = match value.dtype() {
            ort::value::ValueType::Tensor { ty, shape, .. } => (
                *ty,
                shape.iter().map(|&d| d.max(0) as usize).collect::<Vec<_>>(),
            ),
            other => {
                return Err(Error::Runtime(format!(
                    "{what}: expected a tensor output, got {other:?}"
                )))
            }
        };
        Ok(Tensor {
            value,
            shape,
            elem,
            on_host,
        })
    }

    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Size of dimension `i`.
    pub fn dim(&self, i: usize) -> usize {
        self.shape[i]
    }

    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn bytes(&self) -> u64 {
        let width = match self.elem {
            TensorElementType::Float16 | TensorElementType::Bfloat16 => 2,
            TensorElementType::Int64 | TensorElementType::Float64 => 8,
            _ => 4,
        };
        (self.len() * width) as u64
    }

    pub(crate) fn value(&self) -> &DynValue {
        &self.value
    }
}

/// What an upload carries, so that a test (and a benchmark reader) can tell a mask from a
/// re-uploaded hidden state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Upload {
    /// Model inputs: token ids, pixels, positions.
    Input,
    /// Additive attention masks (and the zero sink's K/V).
    Mask,
    /// Row indices and shapes of device-side gathers and broadcasts.
    Index,
    /// Hidden states, K/V or rotary tables coming from the host (the engine itself never
    /// uploads these; tests and callers holding host arrays do).
    State,
}

/// Bytes uploaded, by what they carry.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct UploadBytes {
    pub inputs: u64,
    pub masks: u64,
    pub indices: u64,
    pub states: u64,
}

/// Calls and bytes that crossed between host and device memory so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Transfers {
    pub host_to_device_calls: u64,
    pub host_to_device_bytes: u64,
    pub host_to_device_by_kind: UploadBytes,
    pub device_to_host_calls: u64,
    pub device_to_host_bytes: u64,
}

impl Transfers {
    /// What crossed between two snapshots (`self` the later one).
    pub fn since(&self, earlier: &Transfers) -> Transfers {
        Transfers {
            host_to_device_calls: self.host_to_device_calls - earlier.host_to_device_calls,
            host_to_device_bytes: self.host_to_device_bytes - earlier.host_to_device_bytes,
            host_to_device_by_kind: UploadBytes {
                inputs: self.host_to_device_by_kind.inputs - earlier.host_to_device_by_kind.inputs,
                masks: self.host_to_device_by_kind.masks - earlier.host_to_device_by_kind.masks,
                indices: self.host_to_device_by_kind.indices
                    - earlier.host_to_device_by_kind.indices,
                states: self.host_to_device_by_kind.states - earlier.host_to_device_by_kind.states,
            },
            device_to_host_calls: self.device_to_host_calls - earlier.device_to_host_calls,
            device_to_host_bytes: self.device_to_host_bytes - earlier.device_to_host_bytes,
        }
    }
}

#[derive(Debug, Default)]
struct Counters {
    h2d_calls: AtomicU64,
    h2d_bytes: AtomicU64,
    /// Indexed by `Upload as usize`.
    h2d_kind: [AtomicU64; 4],
    d2h_calls: AtomicU64,
    d2h_bytes: AtomicU64,
}

/// Where a package's tensors live, the counters of what crosses, and the small device-side
/// operations (gather, concatenate, broadcast) the engine needs between graphs.
pub struct DataPath {
    memory: MemoryInfo<'static>,
    device: AllocationDevice<'static>,
    device_id: i32,
    counters: Counters,
    ops: Ops,
}

impl DataPath {
    pub fn new(opts: &RuntimeOptions) -> Result<DataPath> {
        let (device, device_id) = match opts.device {
            Device::Cpu => (AllocationDevice::CPU, 0),
            Device::Cuda | Device::TensorRt => (AllocationDevice::CUDA, opts.cuda.device_id),
        };
        let memory = MemoryInfo::new(
            device.clone(),
            device_id,
            AllocatorType::Device,
            MemoryType::Default,
        )
        .map_err(|e| Error::Runtime(format!("memory info for {}: {e}", opts.device)))?;
        Ok(DataPath {
            memory,
            device: device.clone(),
            device_id,
            counters: Counters::default(),
            ops: Ops::new(opts.clone()),
        })
    }

    /// The memory graph outputs are bound to.
    pub(crate) fn memory(&self) -> &MemoryInfo<'static> {
        &self.memory
    }

    pub(crate) fn on_host(&self) -> bool {
        self.device == AllocationDevice::CPU
    }

    /// What has crossed so far.
    pub fn transfers(&self) -> Transfers {
        let c = &self.counters;
        Transfers {
            host_to_device_calls: c.h2d_calls.load(Ordering::Relaxed),
            host_to_device_bytes: c.h2d_bytes.load(Ordering::Relaxed),
            host_to_device_by_kind: UploadBytes {
                inputs: c.h2d_kind[Upload::Input as usize].load(Ordering::Relaxed),
                masks: c.h2d_kind[Upload::Mask as usize].load(Ordering::Relaxed),
                indices: c.h2d_kind[Upload::Index as usize].load(Ordering::Relaxed),
                states: c.h2d_kind[Upload::State as usize].load(Ordering::Relaxed),
            },
            device_to_host_calls: c.d2h_calls.load(Ordering::Relaxed),
            device_to_host_bytes: c.d2h_bytes.load(Ordering::Relaxed),
        }
    }

    fn count_up(&self, t: &Tensor, kind: Upload) {
        let c = &self.counters;
        c.h2d_calls.fetch_add(1, Ordering::Relaxed);
        c.h2d_bytes.fetch_add(t.bytes(), Ordering::Relaxed);
        c.h2d_kind[kind as usize].fetch_add(t.bytes(), Ordering::Relaxed);
    }

    fn count_down(&self, bytes: u64) {
        self.counters.d2h_calls.fetch_add(1, Ordering::Relaxed);
        self.counters.d2h_bytes.fetch_add(bytes, Ordering::Relaxed);
    }

    fn place<T>(&self, host: ort::value::Tensor<T>, kind: Upload, what: &str) -> Result<Tensor>
    where
        T: ort::value::PrimitiveTensorElementType + std::fmt::Debug,
    {
        let value = if self.on_host() {
            host.into_dyn()
        } else {
            host.to(self.device.clone(), self.device_id)
                .map_err(|e| Error::Runtime(format!("uploading {what}: {e}")))?
                .into_dyn()
        };
        let t = Tensor::from_value(value, self.on_host(), what)?;
        self.count_up(&t, kind);
        Ok(t)
    }

    /// Copies a host array into the provider's memory.
    pub fn upload(&self, a: ArrayViewD<'_, f32>, kind: Upload) -> Result<Tensor> {
        let v = ort::value::Tensor::from_array(a.as_standard_layout().into_owned())
            .map_err(|e| Error::Runtime(format!("float tensor {:?}: {e}", a.shape())))?;
        self.place(v, kind, "a float tensor")
    }

    /// [`DataPath::upload`] of an array the caller is done with: on the host it becomes the
    /// tensor's memory without a copy (a schedule's masks are S x S each, built per run).
    pub fn upload_owned(&self, a: ArrayD<f32>, kind: Upload) -> Result<Tensor> {
        let shape = a.shape().to_vec();
        let a = if a.is_standard_layout() {
            a
        } else {
            a.as_standard_layout().into_owned()
        };
        let v = ort::value::Tensor::from_array(a)
            .map_err(|e| Error::Runtime(format!("float tensor {shape:?}: {e}")))?;
        self.place(v, kind, "a float tensor")
    }

    /// Copies host int64 values (ids, positions, indices) into the provider's memory.
    pub fn upload_i64(&self, a: ArrayViewD<'_, i64>, kind: Upload) -> Result<Tensor> {
        let v = ort::value::Tensor::from_array(a.as_standard_layout().into_owned())
            .map_err(|e| Error::Runtime(format!("int64 tensor {:?}: {e}", a.shape())))?;
        self.place(v, kind, "an int64 tensor")
    }

    /// Copies a float tensor back to the host.
    pub fn download(&self, t: &Tensor) -> Result<ArrayD<f32>> {
        let ctx = |e: ort::Error| Error::Runtime(format!("reading a tensor back: {e}"));
        let out = if t.on_host {
            t.value.try_extract_array::<f32>().map_err(ctx)?.to_owned()
        } else {
            let typed = t
                .value
                .view()
                .downcast::<ort::value::TensorValueType<f32>>()
                .map_err(ctx)?;
            let host = typed.to(AllocationDevice::CPU, 0).map_err(ctx)?;
            host.try_extract_array::<f32>().map_err(ctx)?.to_owned()
        };
        self.count_down(t.bytes());
        Ok(out.into_dimensionality::<IxDyn>().expect("dynamic rank"))
    }

    fn op(&self, op: Op, inputs: &[&Tensor]) -> Result<Tensor> {
        let value = self.ops.run(op, inputs, &self.memory)?;
        Tensor::from_value(value, self.on_host(), "an op's output")
    }

    /// [`DataPath::download`] of a tensor of known rank.
    pub fn download_as<D: ndarray::Dimension>(&self, t: &Tensor) -> Result<ndarray::Array<f32, D>> {
        self.download(t)?
            .into_dimensionality::<D>()
            .map_err(|e| Error::Input(format!("tensor {:?}: {e}", t.shape)))
    }

    /// Rows `idx` of `t` along `axis` (a device-side gather; only the indices are uploaded).
    pub fn gather(&self, t: &Tensor, axis: usize, idx: &[usize]) -> Result<Tensor> {
        let n = t.shape.get(axis).copied().unwrap_or(0);
        if let Some(bad) = idx.iter().find(|&&i| i >= n) {
            return Err(Error::Input(format!(
                "gather: index {bad} is outside dimension {axis} of size {n}"
            )));
        }
        let ids: Vec<i64> = idx.iter().map(|&i| i as i64).collect();
        let ids = self.upload_i64(ndarray::ArrayView1::from(&ids).into_dyn(), Upload::Index)?;
        self.op(
            Op::Gather {
                rank: t.shape.len(),
                axis,
            },
            &[t, &ids],
        )
    }

    /// Rows `start..end` of `t` along `axis`.
    pub fn slice(&self, t: &Tensor, axis: usize, start: usize, end: usize) -> Result<Tensor> {
        if start == 0 && end == t.shape[axis] {
            return self.copy(t);
        }
        self.gather(t, axis, &(start..end).collect::<Vec<_>>())
    }

    /// A device-side copy (the same values in a new buffer).
    pub fn copy(&self, t: &Tensor) -> Result<Tensor> {
        self.op(
            Op::Identity {
                rank: t.shape.len(),
            },
            &[t],
        )
    }

    /// `a` and `b` joined along `axis`.
    pub fn concat(&self, a: &Tensor, b: &Tensor, axis: usize) -> Result<Tensor> {
        if a.shape.len() != b.shape.len() {
            return Err(Error::Input(format!(
                "concat: ranks differ ({:?} and {:?})",
                a.shape, b.shape
            )));
        }
        self.op(
            Op::Concat {
                rank: a.shape.len(),
                axis,
            },
            &[a, b],
        )
    }

    /// `t`, whose batch (first dimension) is 1, repeated to batch `b` on the device.
    pub fn expand_batch(&self, t: &Tensor, b: usize) -> Result<Tensor> {
        if t.shape.first() != Some(&1) {
            return Err(Error::Input(format!(
                "expand: tensor {:?} does not have batch 1",
                t.shape
            )));
        }
        let mut shape: Vec<i64> = t.shape.iter().map(|&d| d as i64).collect();
        shape[0] = b as i64;
        let shape = self.upload_i64(ndarray::ArrayView1::from(&shape).into_dyn(), Upload::Index)?;
        self.op(
            Op::Expand {
                rank: t.shape.len(),
            },
            &[t, &shape],
        )
    }

    /// `t` viewed with another shape of the same size (a device-side reshape).
    pub fn reshape(&self, t: &Tensor, shape: &[usize]) -> Result<Tensor> {
        if shape.iter().product::<usize>() != t.len() {
            return Err(Error::Input(format!(
                "reshape: {:?} cannot become {shape:?}",
                t.shape
            )));
        }
        let dims: Vec<i64> = shape.iter().map(|&d| d as i64).collect();
        let dims = self.upload_i64(ndarray::ArrayView1::from(&dims).into_dyn(), Upload::Index)?;
        self.op(
            Op::Reshape {
                from: t.shape.len(),
                to: shape.len(),
            },
            &[t, &dims],
        )
    }
}
