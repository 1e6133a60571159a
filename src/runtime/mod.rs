//! ONNX Runtime: locating and loading the shared library once per process, and building sessions
//! for the chosen device. GPU providers are registered with `error_on_failure`, so a missing
//! provider is an error and never a silent fall-back to CPU.

mod library;
mod providers;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::Environment;
use ort::session::builder::GraphOptimizationLevel;
use ort::session::Session;

use crate::error::{Error, Result};

pub use library::locate_library;
pub use providers::{CudaOptions, Device, TensorRtOptions};

/// How sessions are created: device, threads, provider options, and which ONNX Runtime library.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    pub device: Device,
    /// Intra-op threads per session; 0 lets ONNX Runtime choose (all cores).
    pub threads: usize,
    /// Explicit `libonnxruntime.so`; otherwise see [`locate_library`].
    pub ort_library: Option<PathBuf>,
    pub cuda: CudaOptions,
    pub tensorrt: TensorRtOptions,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            device: Device::Cpu,
            threads: 0,
            ort_library: None,
            cuda: CudaOptions::default(),
            tensorrt: TensorRtOptions::default(),
        }
    }
}

static ENVIRONMENT: OnceLock<std::result::Result<(PathBuf, Environment), String>> = OnceLock::new();

/// Loads ONNX Runtime (first call only) and returns the process-wide environment.
///
/// The library can be loaded once per process; a later call naming another library is an error
/// rather than silently running on the first one.
pub fn environment(requested: Option<&Path>) -> Result<&'static Environment> {
    let loaded = ENVIRONMENT.get_or_init(|| {
        let path = locate_library(requested).map_err(|e| e.to_string())?;
        let env = ort::init_from(&path)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?
            .with_name("vidflow")
            .build()
            .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))?;
        Ok((path, env))
    });
    match loaded {
        Ok((path, env)) => {
            if let Some(req) = requested {
                if req != path.as_path() {
                    return Err(Error::Runtime(format!(
                        "ONNX Runtime is already loaded from {} in this process; cannot switch to {}",
                        path.display(),
                        req.display()
                    )));
                }
            }
            Ok(env)
        }
        Err(msg) => Err(Error::Runtime(msg.clone())),
    }
}

/// Opens one graph as a session with the requested device and thread count.
pub fn open_session(path: &Path, opts: &RuntimeOptions) -> Result<Session> {
    let env = environment(opts.ort_library.as_deref())?;
    let ctx = |e: ort::Error| Error::Runtime(format!("{}: {e}", path.display()));
    let mut builder = Session::builder(env)
        .map_err(ctx)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| ctx(e.into()))?;
    if opts.threads > 0 {
        builder = builder
            .with_intra_threads(opts.threads)
            .map_err(|e| ctx(e.into()))?;
    }
    let providers = providers::dispatch(opts)?;
    if !providers.is_empty() {
        builder = builder
            .with_execution_providers(providers)
            .map_err(|e| Error::Provider {
                provider: opts.device.to_string(),
                msg: format!("{}: {e}", path.display()),
            })?;
    }
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "graph file not found"),
        ));
    }
    builder.commit_from_file(path).map_err(ctx)
}
