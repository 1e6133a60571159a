//! Execution providers: CPU, CUDA, TensorRT, with the options a deployment needs.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use ort::ep::{self, ExecutionProvider, ExecutionProviderDispatch};

use super::RuntimeOptions;
use crate::error::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Cpu,
    Cuda,
    TensorRt,
}

impl fmt::Display for Device {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Device::Cpu => "cpu",
            Device::Cuda => "cuda",
            Device::TensorRt => "tensorrt",
        })
    }
}

impl FromStr for Device {
    type Err = Error;
    fn from_str(s: &str) -> Result<Device> {
        match s {
            "cpu" => Ok(Device::Cpu),
            "cuda" => Ok(Device::Cuda),
            "tensorrt" | "trt" => Ok(Device::TensorRt),
            other => Err(Error::Input(format!(
                "unknown device `{other}`: expected cpu, cuda or tensorrt"
            ))),
        }
    }
}

#[derive(Debug, Clone, Default)]
pub struct CudaOptions {
    pub device_id: i32,
    /// Let fp32 MatMul/Gemm run on TF32 tensor cores (10-bit mantissa). Off by default: the fp32
    /// contract (parity within 1e-4) does not hold with it; ONNX Runtime's `use_tf32` option is
    /// always set explicitly, so its own default never decides.
    pub tf32: bool,
}

/// TensorRT options; shape profiles use TensorRT's syntax, e.g. `hidden:1x1x576,mask:1x1x1x1`.
#[derive(Debug, Clone, Default)]
pub struct TensorRtOptions {
    pub fp16: bool,
    /// Folder where built engines are cached between runs.
    pub engine_cache: Option<PathBuf>,
    pub profile_min_shapes: Option<String>,
    pub profile_opt_shapes: Option<String>,
    pub profile_max_shapes: Option<String>,
    /// Limits from which each graph's profile is derived (see `trt_profile`) when no profile
    /// strings are given.
    pub limits: Option<super::trt_profile::ProfileLimits>,
}

/// The providers to register for a device, in priority order (TensorRT falls back to CUDA for
/// the nodes TensorRT does not take, both on the GPU).
pub(super) fn dispatch(opts: &RuntimeOptions) -> Result<Vec<ExecutionProviderDispatch>> {
    let cuda = || {
        ep::CUDA::default()
            .with_device_id(opts.cuda.device_id)
            .with_tf32(opts.cuda.tf32)
            .build()
            .error_on_failure()
    };
    match opts.device {
        Device::Cpu => Ok(Vec::new()),
        Device::Cuda => {
            require_available::<ep::CUDA>(opts.device, "CUDAExecutionProvider")?;
            Ok(vec![cuda()])
        }
        Device::TensorRt => {
            require_available::<ep::TensorRT>(opts.device, "TensorrtExecutionProvider")?;
            // With the GPU build present, ONNX Runtime's own message for a missing libnvinfer
            // names the provider, not the file; this one names the library and how to get it.
            tensorrt_libraries_loadable()?;
            let t = &opts.tensorrt;
            let mut trt = ep::TensorRT::default()
                .with_device_id(opts.cuda.device_id)
                .with_fp16(t.fp16);
            if let Some(dir) = &t.engine_cache {
                std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
                trt = trt
                    .with_engine_cache(true)
                    .with_engine_cache_path(dir.display())
                    .with_timing_cache(true)
                    .with_timing_cache_path(dir.display());
            }
            if let Some(s) = &t.profile_min_shapes {
                trt = trt.with_profile_min_shapes(s);
            }
            if let Some(s) = &t.profile_opt_shapes {
                trt = trt.with_profile_opt_shapes(s);
            }
            if let Some(s) = &t.profile_max_shapes {
                trt = trt.with_profile_max_shapes(s);
            }
            Ok(vec![trt.build().error_on_failure(), cuda()])
        }
    }
}

/// The TensorRT library check of `vidflow doctor`, run once per process (a package opens about
/// twenty sessions).
fn tensorrt_libraries_loadable() -> Result<()> {
    static CHECK: std::sync::OnceLock<std::result::Result<(), String>> = std::sync::OnceLock::new();
    CHECK
        .get_or_init(|| {
            super::doctor::check_tensorrt_libraries(&super::doctor::SearchPath::system(&[]))
        })
        .clone()
        .map_err(|msg| Error::Provider {
            provider: Device::TensorRt.to_string(),
            msg,
        })
}

fn require_available<E: ExecutionProvider>(device: Device, name: &str) -> Result<()> {
    let lib = super::ENVIRONMENT
        .get()
        .and_then(|r| r.as_ref().ok())
        .map(|l| l.path.display().to_string())
        .unwrap_or_else(|| "the loaded library".into());
    match E::is_available() {
        Ok(true) => Ok(()),
        Ok(false) => Err(Error::Provider {
            provider: device.to_string(),
            msg: format!(
                "{name} is not part of the ONNX Runtime build at {lib}; install the GPU build \
                 (pip install onnxruntime-gpu==1.31.1, CUDA 13) and point {} at its \
                 capi/libonnxruntime.so.1.31.1; `vidflow doctor` lists what else is missing",
                super::library::ORT_LIBRARY_ENV
            ),
        }),
        Err(e) => Err(Error::Provider {
            provider: device.to_string(),
            msg: format!("cannot query the available providers: {e}"),
        }),
    }
}
