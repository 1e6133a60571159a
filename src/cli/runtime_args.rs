//! Flags shared by every command that runs a model: device, threads, provider options.

use std::path::PathBuf;

use clap::Args;
use vidflow::runtime::{CudaOptions, Device, RuntimeOptions, TensorRtOptions};

#[derive(Args, Debug, Clone)]
pub struct RuntimeArgs {
    /// Execution device: cpu, cuda or tensorrt. A GPU device that cannot be set up is an error.
    #[arg(long, default_value = "cpu")]
    pub device: String,
    /// Compute threads of the whole process: one ONNX Runtime pool all sessions share (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// ONNX Runtime shared library (default: $VIDFLOW_ORT_LIB, then .ort/lib/).
    #[arg(long)]
    pub ort_lib: Option<PathBuf>,
    /// CUDA device id (cuda and tensorrt).
    #[arg(long, default_value_t = 0)]
    pub gpu: i32,
    /// CUDA: allow TF32 for fp32 matrix products (faster, outside the fp32 1e-4 contract).
    #[arg(long)]
    pub cuda_tf32: bool,
    /// TensorRT: build fp16 engines.
    #[arg(long)]
    pub trt_fp16: bool,
    /// TensorRT: folder for the engine and timing caches.
    #[arg(long)]
    pub trt_cache: Option<PathBuf>,
    /// TensorRT: longest text (tokens besides the video) the derived shape profiles cover.
    #[arg(long, default_value_t = vidflow::runtime::trt_profile::DEFAULT_LIMITS.max_text)]
    pub trt_max_text: usize,
    /// TensorRT: largest batch the derived shape profiles cover.
    #[arg(long, default_value_t = vidflow::runtime::trt_profile::DEFAULT_LIMITS.max_batch)]
    pub trt_max_batch: usize,
    /// TensorRT shape profile typed by hand, minimum shapes (TensorRT syntax: `name:1x2x3,...`);
    /// without it every graph's profile is derived from the package and the limits above.
    #[arg(long)]
    pub trt_profile_min: Option<String>,
    /// TensorRT shape profile, optimal shapes.
    #[arg(long)]
    pub trt_profile_opt: Option<String>,
    /// TensorRT shape profile, maximum shapes.
    #[arg(long)]
    pub trt_profile_max: Option<String>,
    /// MiB kept for computed video prefixes (system + video rows), reused by every later
    /// question about the same video and frames; 0 computes every question in full.
    #[arg(long, default_value_t = vidflow::runtime::DEFAULT_PREFIX_CACHE_BYTES >> 20)]
    pub prefix_cache_mb: u64,
}

impl RuntimeArgs {
    pub fn options(&self) -> anyhow::Result<RuntimeOptions> {
        Ok(RuntimeOptions {
            device: self.device.parse::<Device>()?,
            threads: self.threads,
            ort_library: self.ort_lib.clone(),
            cuda: CudaOptions {
                device_id: self.gpu,
                tf32: self.cuda_tf32,
            },
            tensorrt: TensorRtOptions {
                fp16: self.trt_fp16,
                engine_cache: self.trt_cache.clone(),
                profile_min_shapes: self.trt_profile_min.clone(),
                profile_opt_shapes: self.trt_profile_opt.clone(),
                profile_max_shapes: self.trt_profile_max.clone(),
                limits: Some(vidflow::runtime::trt_profile::ProfileLimits {
                    max_batch: self.trt_max_batch,
                    max_text: self.trt_max_text,
                }),
            },
            prefix_cache_bytes: self.prefix_cache_mb << 20,
        })
    }
}
