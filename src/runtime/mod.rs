//! ONNX Runtime: locating and loading the shared library once per process, and building sessions
//! for the chosen device. GPU providers are registered with `error_on_failure`, so a missing
//! provider is an error and never a silent fall-back to CPU.
//!
//! Threads: a package opens about twenty sessions (vision, embed, rope, every layer and its
//! attention variant, three heads). Each with its own intra-op pool sized to all cores would put
//! twenty spinning pools on the machine while one session works, so the whole process shares one
//! global intra-op pool of [`RuntimeOptions::threads`] threads (the calling thread included),
//! created with the environment, and its threads block instead of spinning when idle.

pub mod doctor;
mod library;
mod ops;
mod providers;
mod tensor;
pub mod trt_profile;

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use ort::environment::{Environment, GlobalThreadPoolOptions};
use ort::session::builder::GraphOptimizationLevel;
use ort::session::builder::SessionBuilder;
use ort::session::Session;

use crate::error::{Error, Result};

pub use library::{find_library, locate_library, LibrarySource, ORT_LIBRARY_ENV};
pub use providers::{CudaOptions, Device, TensorRtOptions};
pub use tensor::{DataPath, Tensor, Transfers, Upload, UploadBytes};
pub use trt_profile::{
    package_digest, shape_profile, tensorrt_options_for, GraphKind, ProfileLimits, ShapeProfile,
};

/// How sessions are created: device, threads, provider options, and which ONNX Runtime library.
#[derive(Debug, Clone)]
pub struct RuntimeOptions {
    pub device: Device,
    /// The process's compute threads: the size of the one intra-op pool every session shares
    /// (the calling thread included); 0 = every core this process may use.
    pub threads: usize,
    /// Explicit `libonnxruntime.so`; otherwise see [`locate_library`].
    pub ort_library: Option<PathBuf>,
    pub cuda: CudaOptions,
    pub tensorrt: TensorRtOptions,
    /// Memory for computed video prefixes reused across questions (0 turns reuse off).
    pub prefix_cache_bytes: u64,
}

/// Default prefix budget: a 7B model's prefix of 8 frames (32 layers of K/V over 1.2k rows,
/// hidden states included for knockouts) is about 0.6 GB.
pub const DEFAULT_PREFIX_CACHE_BYTES: u64 = 1 << 30;

impl Default for RuntimeOptions {
    fn default() -> Self {
        RuntimeOptions {
            device: Device::Cpu,
            threads: 0,
            ort_library: None,
            cuda: CudaOptions::default(),
            tensorrt: TensorRtOptions::default(),
            prefix_cache_bytes: DEFAULT_PREFIX_CACHE_BYTES,
        }
    }
}

/// The loaded library, the environment and the size of its shared thread pool.
struct Loaded {
    path: PathBuf,
    threads: usize,
    env: Environment,
}

static ENVIRONMENT: OnceLock<std::result::Result<Loaded, String>> = OnceLock::new();

/// The most compute threads a process may ask for: more than this many per core only adds
/// context switches (and an unchecked 100000 would try to start them all).
const MAX_THREADS_PER_CORE: usize = 4;

/// Cores this process may use (affinity and cgroup limits respected).
pub fn available_cores() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// `threads` with 0 resolved to every available core; an oversubscribed request is an error.
pub fn resolve_threads(threads: usize) -> Result<usize> {
    let cores = available_cores();
    match threads {
        0 => Ok(cores),
        n if n > cores * MAX_THREADS_PER_CORE => Err(Error::Runtime(format!(
            "--threads {n} is more than {MAX_THREADS_PER_CORE} per core on this machine ({cores} cores); \
             ask for at most {}",
            cores * MAX_THREADS_PER_CORE
        ))),
        n => Ok(n),
    }
}

/// Loads ONNX Runtime (first call only) and returns the process-wide environment, whose one
/// intra-op pool of `threads` threads (0 = all cores) every session of the process shares.
///
/// The library and the pool are set up once per process; a later call naming another library or
/// another thread count is an error rather than silently running with the first ones.
pub fn environment(requested: Option<&Path>, threads: usize) -> Result<&'static Environment> {
    let threads = resolve_threads(threads)?;
    let loaded = ENVIRONMENT.get_or_init(|| {
        // The message only: it becomes an `Error::Runtime` again below, whose display adds the
        // "ONNX Runtime:" prefix once.
        let path = locate_library(requested).map_err(|e| match e {
            Error::Runtime(msg) => msg,
            other => other.to_string(),
        })?;
        let builder = ort::init_from(&path)
            .map_err(|e| format!("cannot load ONNX Runtime from {}: {e}", path.display()))?;
        let pool = || -> ort::Result<GlobalThreadPoolOptions> {
            GlobalThreadPoolOptions::default()
                .with_intra_threads(threads)?
                .with_inter_threads(1)?
                .with_spin_control(false)?
                .with_flush_to_zero()
        };
        let pool =
            pool().map_err(|e| format!("cannot configure ONNX Runtime's thread pool: {e}"))?;
        let env = builder
            .with_name("vidflow")
            .with_global_thread_pool(pool)
            .build()
            .map_err(|e| format!("cannot create the ONNX Runtime environment: {e}"))?;
        register_shared_cpu_arena(&env)?;
        Ok(Loaded { path, threads, env })
    });
    let loaded = loaded.as_ref().map_err(|msg| Error::Runtime(msg.clone()))?;
    if let Some(req) = requested {
        if req != loaded.path.as_path() {
            return Err(Error::Runtime(format!(
                "ONNX Runtime is already loaded from {} in this process; cannot switch to {}",
                loaded.path.display(),
                req.display()
            )));
        }
    }
    if threads != loaded.threads {
        return Err(Error::Runtime(format!(
            "ONNX Runtime's thread pool already has {} threads in this process; cannot open a \
             session with {threads}",
            loaded.threads
        )));
    }
    Ok(&loaded.env)
}

/// One CPU arena for every session of the process (sessions opt in with
/// `session.use_env_allocators`). A package is about twenty sessions, one per layer; with an
/// arena each, every session keeps its own peak working memory (SmolLM2 at S = 1247: 9 GB resident
/// for a 135M model), while the layers run one after another and can reuse one arena.
fn register_shared_cpu_arena(env: &Environment) -> std::result::Result<(), String> {
    use ort::memory::{AllocationDevice, AllocatorType, MemoryInfo, MemoryType};
    use ort::AsPointer;
    let info = MemoryInfo::new(
        AllocationDevice::CPU,
        0,
        AllocatorType::Arena,
        MemoryType::Default,
    )
    .map_err(|e| format!("cannot describe the shared CPU arena: {e}"))?;
    let api = ort::api();
    // SAFETY: the environment and memory info are live for the call; a null arena config asks
    // for ONNX Runtime's defaults. The returned status is read and released here.
    unsafe {
        let status =
            (api.CreateAndRegisterAllocator)(env.ptr().cast_mut(), info.ptr(), std::ptr::null());
        let status = status.0;
        if !status.is_null() {
            let msg = std::ffi::CStr::from_ptr((api.GetErrorMessage)(status))
                .to_string_lossy()
                .into_owned();
            (api.ReleaseStatus)(status);
            return Err(format!("cannot register the shared CPU arena: {msg}"));
        }
    }
    Ok(())
}

/// A session builder for the requested device and thread count; `what` names the graph in errors.
pub(crate) fn session_builder(opts: &RuntimeOptions, what: &str) -> Result<SessionBuilder> {
    let env = environment(opts.ort_library.as_deref(), opts.threads)?;
    let ctx = |e: ort::Error| Error::Runtime(format!("{what}: {e}"));
    let mut builder = Session::builder(env)
        .map_err(ctx)?
        .with_optimization_level(GraphOptimizationLevel::Level3)
        .map_err(|e| ctx(e.into()))?
        .with_flush_to_zero()
        .map_err(|e| ctx(e.into()))?
        .with_env_allocators()
        .map_err(|e| ctx(e.into()))?;
    let providers = providers::dispatch(opts)?;
    if !providers.is_empty() {
        builder = builder
            .with_execution_providers(providers)
            .map_err(|e| Error::Provider {
                provider: opts.device.to_string(),
                msg: format!("{what}: {e}"),
            })?;
    }
    Ok(builder)
}

/// Opens one graph as a session with the requested device and thread count.
pub fn open_session(path: &Path, opts: &RuntimeOptions) -> Result<Session> {
    let what = path.display().to_string();
    let mut builder = session_builder(opts, &what)?;
    if !path.exists() {
        return Err(Error::io(
            path,
            std::io::Error::new(std::io::ErrorKind::NotFound, "graph file not found"),
        ));
    }
    builder
        .commit_from_file(path)
        .map_err(|e| Error::Runtime(format!("{what}: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn threads_resolve_to_the_cores_and_oversubscription_is_refused() {
        let cores = available_cores();
        assert_eq!(resolve_threads(0).unwrap(), cores);
        assert_eq!(resolve_threads(1).unwrap(), 1);
        let most = cores * MAX_THREADS_PER_CORE;
        assert_eq!(resolve_threads(most).unwrap(), most);
        let msg = resolve_threads(100_000).unwrap_err().to_string();
        assert!(
            msg.contains("--threads 100000") && msg.contains(&format!("at most {most}")),
            "{msg}"
        );
    }
}
