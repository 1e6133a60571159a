//! `vidflow serve`: pruned VideoQA over HTTP. One engine thread owns the package and runs the
//! queued requests in turn (each with all of ONNX Runtime's threads); a small tokio runtime
//! accepts connections, checks requests and streams answers. Routes, limits and metrics are in
//! docs/serving.md.

mod api;
pub mod client;
mod http;
mod media;
mod metrics;
mod worker;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;

pub use api::{ApiError, Chat, Limits, VideoQa};
pub use media::{Media, VideoSource};
pub use metrics::Metrics;

use crate::error::{Error, Result};
use crate::eval::EvalMode;
use crate::mask::MaskedRows;
use crate::package::Package;
use crate::pathway::{PathwayConfig, Pathways};
use crate::prompt::PromptBuilder;
use crate::runtime::RuntimeOptions;

/// Everything `vidflow serve` is started with.
#[derive(Debug, Clone)]
pub struct ServeOptions {
    pub model: PathBuf,
    pub runtime: RuntimeOptions,
    /// A pathway config every request runs under (multiple-choice answers as a pruned plan,
    /// generation under its masks); `None` is full attention.
    pub pathways: Option<PathBuf>,
    /// Maps a config written for another layer count onto the model's.
    pub scale: bool,
    pub masked_rows: MaskedRows,
    pub bind: SocketAddr,
    /// Folder whose files (and frame folders) requests may name; `None` serves uploads only.
    pub video_root: Option<PathBuf>,
    /// Requests waiting for the engine beyond the one it runs; more are answered 429.
    pub queue: usize,
    /// From arrival to answer; a request past it is answered 504.
    pub deadline: Duration,
    pub max_body_bytes: usize,
    pub limits: Limits,
}

/// Serves until SIGTERM or SIGINT, then lets in-flight requests finish. Prints one line
/// `vidflow serve: listening on http://ADDR (model NAME)` on stdout once it accepts connections.
pub fn run(opts: ServeOptions) -> Result<()> {
    let metrics = Arc::new(Metrics::default());
    let (jobs, queue) = std::sync::mpsc::sync_channel(opts.queue.max(1));
    let (ready_tx, ready_rx) = std::sync::mpsc::channel::<Result<String>>();
    let engine_opts = opts.clone();
    let engine_metrics = Arc::clone(&metrics);
    // The package is opened on the engine thread, which keeps it (sessions stay on one thread).
    let engine = std::thread::Builder::new()
        .name("vidflow-engine".into())
        .spawn(move || {
            let engine = match open_engine(&engine_opts, engine_metrics) {
                Ok(e) => e,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(engine.pkg.manifest.name.clone()));
            engine.run(queue);
        })
        .map_err(|e| Error::Input(format!("cannot start the engine thread: {e}")))?;
    let model = ready_rx.recv().map_err(|_| {
        Error::Input("the engine thread stopped while opening the package".into())
    })??;

    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .map_err(|e| Error::Input(format!("cannot start the async runtime: {e}")))?;
    let media = Arc::new(Media::new(
        opts.video_root.as_deref(),
        &std::env::temp_dir(),
    )?);
    let state = Arc::new(http::AppState {
        jobs,
        media,
        metrics,
        limits: opts.limits,
        max_body_bytes: opts.max_body_bytes,
        deadline: opts.deadline,
        model: model.clone(),
        next_id: AtomicU64::new(0),
    });
    let served = rt.block_on(async move {
        let listener = tokio::net::TcpListener::bind(opts.bind)
            .await
            .map_err(|e| Error::Input(format!("--bind {}: {e}", opts.bind)))?;
        let addr = listener
            .local_addr()
            .map_err(|e| Error::Input(format!("--bind {}: {e}", opts.bind)))?;
        {
            use std::io::Write;
            let mut out = std::io::stdout().lock();
            let _ = writeln!(
                out,
                "vidflow serve: listening on http://{addr} (model {model})"
            );
            let _ = out.flush();
        }
        axum::serve(listener, http::router(state))
            .with_graceful_shutdown(shutdown_signal())
            .await
            .map_err(|e| Error::Input(format!("server: {e}")))
    });
    // The router (and with it the job sender) is gone: the engine ends after its last job.
    drop(rt);
    let _ = engine.join();
    served
}

fn open_engine(opts: &ServeOptions, metrics: Arc<Metrics>) -> Result<worker::Engine> {
    let pkg = Package::open(&opts.model, &opts.runtime)?;
    let builder = PromptBuilder::new(&pkg.manifest, pkg.dir())?;
    let pathways = match &opts.pathways {
        Some(path) => {
            let c = PathwayConfig::from_file(path)?;
            let c = if opts.scale {
                c.scaled_to(pkg.num_layers())
            } else {
                c
            };
            if c.num_layers != pkg.num_layers() {
                return Err(Error::Data {
                    path: path.clone(),
                    msg: format!(
                        "the config is written for {} layers (num_layers), the model has {}; \
                         pass --scale or write one for {} layers",
                        c.num_layers,
                        pkg.num_layers(),
                        pkg.num_layers()
                    ),
                });
            }
            Some(c)
        }
        None => None,
    };
    let mode = match &pathways {
        Some(c) => EvalMode::Pathways(Pathways::Config(c.clone())),
        None => EvalMode::Full { exit_layer: None },
    };
    Ok(worker::Engine {
        pkg,
        builder,
        pathways,
        mode,
        masked_rows: opts.masked_rows,
        metrics,
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("SIGTERM handler");
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
