//! The HTTP routes: request checks (content type, body size, JSON), the bounded queue in front of
//! the engine thread (429 when full), deadlines (504), responses and server-sent events.

use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::body::{Body, Bytes};
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::response::sse::{Event, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot};

use super::api::{ApiError, Chat, Limits, VideoQa};
use super::media::{Media, VideoSource};
use super::metrics::Metrics;
use super::worker::{deadline_passed, ChatEvent, Job, Work};

pub const VIDEOQA: &str = "/v1/videoqa";
pub const CHAT: &str = "/v1/chat/completions";

/// What every handler shares.
pub struct AppState {
    pub jobs: SyncSender<Job>,
    /// Resolves video references before a request is queued: a bad path or upload never takes a
    /// place in the queue.
    pub media: Arc<Media>,
    pub metrics: Arc<Metrics>,
    pub limits: Limits,
    pub max_body_bytes: usize,
    pub deadline: Duration,
    pub model: String,
    pub next_id: std::sync::atomic::AtomicU64,
}

type Shared = Arc<AppState>;

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route("/v1/models", get(models))
        .route(VIDEOQA, post(videoqa))
        .route(CHAT, post(chat))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .with_state(state)
}

fn error_response(e: &ApiError) -> Response {
    let status = StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    (status, axum::Json(e.body())).into_response()
}

/// Counts a finished request and turns the outcome into a response.
fn finish(
    state: &AppState,
    route: &str,
    started: Instant,
    out: Result<Value, ApiError>,
) -> Response {
    let resp = match out {
        Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
        Err(e) => error_response(&e),
    };
    state.metrics.observe(
        route,
        resp.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    state.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    resp
}

async fn healthz(State(state): State<Shared>) -> Response {
    axum::Json(json!({"status": "ok", "model": state.model})).into_response()
}

async fn metrics(State(state): State<Shared>) -> Response {
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics.render(),
    )
        .into_response()
}

async fn models(State(state): State<Shared>) -> Response {
    axum::Json(json!({"object": "list", "data": [
        {"id": state.model, "object": "model", "owned_by": "vidflow"}]}))
    .into_response()
}

async fn not_found(State(state): State<Shared>, req: Request) -> Response {
    let e = ApiError::new(
        404,
        None,
        format!(
            "no route {} {}; the routes are POST {VIDEOQA}, POST {CHAT}, GET /healthz, GET \
             /metrics, GET /v1/models",
            req.method(),
            req.uri().path()
        ),
    );
    state.metrics.observe("other", 404, 0.0);
    error_response(&e)
}

async fn method_not_allowed(State(state): State<Shared>, req: Request) -> Response {
    let e = ApiError::new(
        405,
        None,
        format!("{} is not allowed on {}", req.method(), req.uri().path()),
    );
    state.metrics.observe(req.uri().path(), 405, 0.0);
    error_response(&e)
}

/// The JSON body of a request, within the size limit.
async fn json_body(state: &AppState, headers: &HeaderMap, body: Body) -> Result<Bytes, ApiError> {
    let ctype = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let mime = ctype.split(';').next().unwrap_or("").trim();
    if !mime.eq_ignore_ascii_case("application/json") {
        return Err(ApiError::new(
            415,
            Some("content-type"),
            format!("content type {ctype:?}: expected application/json"),
        ));
    }
    axum::body::to_bytes(body, state.max_body_bytes)
        .await
        .map_err(|_| {
            ApiError::new(
                413,
                Some("body"),
                format!(
                    "the request body is over this server's limit of {} bytes (upload a shorter \
                     video or start the server with a larger --max-body-mb)",
                    state.max_body_bytes
                ),
            )
        })
}

/// Queues a job, or answers 429 when the queue is full.
fn enqueue(state: &AppState, work: Work, received: Instant, id: String) -> Result<(), ApiError> {
    state.metrics.queue_depth.fetch_add(1, Ordering::Relaxed);
    let job = Job {
        id,
        received,
        deadline: received + state.deadline,
        work,
    };
    match state.jobs.try_send(job) {
        Ok(()) => Ok(()),
        Err(e) => {
            state.metrics.queue_depth.fetch_sub(1, Ordering::Relaxed);
            Err(match e {
                TrySendError::Full(_) => {
                    ApiError::new(429, None, "the server's queue is full; retry later")
                }
                TrySendError::Disconnected(_) => {
                    ApiError::new(503, None, "the server is shutting down")
                }
            })
        }
    }
}

/// The request's video, checked (and an upload written) off the async threads.
async fn resolve(state: &AppState, reference: &str, param: &str) -> Result<VideoSource, ApiError> {
    let media = Arc::clone(&state.media);
    let (reference, param) = (reference.to_string(), param.to_string());
    tokio::task::spawn_blocking(move || media.resolve(&reference, &param))
        .await
        .map_err(|e| ApiError::new(500, None, format!("video resolution failed: {e}")))?
}

fn new_id(state: &AppState, prefix: &str) -> String {
    format!("{prefix}-{}", state.next_id.fetch_add(1, Ordering::Relaxed))
}

async fn videoqa(State(state): State<Shared>, req: Request) -> Response {
    let started = Instant::now();
    state.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    let out = videoqa_inner(&state, req, started).await;
    finish(&state, VIDEOQA, started, out)
}

async fn videoqa_inner(
    state: &AppState,
    req: Request,
    started: Instant,
) -> Result<Value, ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = json_body(state, &parts.headers, body).await?;
    let q = VideoQa::parse(&bytes, &state.limits)?;
    let video = resolve(state, &q.video, "video").await?;
    let (tx, rx) = oneshot::channel();
    enqueue(
        state,
        Work::VideoQa {
            req: q,
            video,
            reply: tx,
        },
        started,
        new_id(state, "vqa"),
    )?;
    let answer = match tokio::time::timeout(state.deadline, rx).await {
        Ok(Ok(a)) => a?,
        Ok(Err(_)) => return Err(ApiError::new(500, None, "the engine stopped")),
        Err(_) => return Err(deadline_passed()),
    };
    Ok(serde_json::to_value(answer).expect("serialisable"))
}

async fn chat(State(state): State<Shared>, req: Request) -> Response {
    let started = Instant::now();
    state.metrics.in_flight.fetch_add(1, Ordering::Relaxed);
    match chat_start(&state, req, started).await {
        Ok((c, id, rx)) if c.stream => stream_response(state, c, id, rx, started).await,
        Ok((_, id, rx)) => {
            let out = collect(&state, &id, rx, started).await;
            finish(&state, CHAT, started, out)
        }
        Err(e) => finish(&state, CHAT, started, Err(e)),
    }
}

type Events = mpsc::UnboundedReceiver<ChatEvent>;

async fn chat_start(
    state: &AppState,
    req: Request,
    started: Instant,
) -> Result<(Chat, String, Events), ApiError> {
    let (parts, body) = req.into_parts();
    let bytes = json_body(state, &parts.headers, body).await?;
    let c = Chat::parse(&bytes, &state.limits)?;
    if let Some(m) = &c.model {
        if m != &state.model {
            return Err(ApiError::new(
                404,
                Some("model"),
                format!(
                    "model {m:?} is not served here; this server serves {:?}",
                    state.model
                ),
            ));
        }
    }
    let video = resolve(state, &c.video, &c.video_param).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let id = new_id(state, "chatcmpl");
    enqueue(
        state,
        Work::Chat {
            req: c.clone(),
            video,
            events: tx,
        },
        started,
        id.clone(),
    )?;
    Ok((c, id, rx))
}

async fn next_event(state: &AppState, rx: &mut Events, started: Instant) -> ChatEvent {
    let left = (started + state.deadline).saturating_duration_since(Instant::now());
    match tokio::time::timeout(left, rx.recv()).await {
        Ok(Some(e)) => e,
        Ok(None) => ChatEvent::Error(ApiError::new(500, None, "the engine stopped")),
        Err(_) => ChatEvent::Error(deadline_passed()),
    }
}

fn created() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn usage(prompt: usize, completion: usize) -> Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion,
           "total_tokens": prompt + completion})
}

async fn collect(
    state: &AppState,
    id: &str,
    mut rx: Events,
    started: Instant,
) -> Result<Value, ApiError> {
    loop {
        match next_event(state, &mut rx, started).await {
            ChatEvent::Token { .. } => {}
            ChatEvent::Error(e) => return Err(e),
            ChatEvent::Done {
                text,
                finish,
                prompt_tokens,
                completion_tokens,
            } => {
                return Ok(json!({
                    "id": id,
                    "object": "chat.completion",
                    "created": created(),
                    "model": state.model,
                    "choices": [{"index": 0,
                                 "message": {"role": "assistant", "content": text},
                                 "finish_reason": finish.reason()}],
                    "usage": usage(prompt_tokens, completion_tokens),
                }))
            }
        }
    }
}

fn chunk(state: &AppState, id: &str, created: u64, delta: Value, finish: Option<&str>) -> Event {
    let v = json!({
        "id": id,
        "object": "chat.completion.chunk",
        "created": created,
        "model": state.model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
    });
    Event::default().data(v.to_string())
}

/// Server-sent events in OpenAI's chunk format, ending with `data: [DONE]`. The first event is
/// awaited before the response starts, so a request that fails at once (a missing video) still
/// gets its 4xx status.
async fn stream_response(
    state: Shared,
    c: Chat,
    id: String,
    mut rx: Events,
    started: Instant,
) -> Response {
    let first = next_event(&state, &mut rx, started).await;
    if let ChatEvent::Error(e) = first {
        return finish(&state, CHAT, started, Err(e));
    }
    let stamp = created();
    let (tx, body_rx) = mpsc::unbounded_channel::<Event>();
    let _ = tx.send(chunk(
        &state,
        &id,
        stamp,
        json!({"role": "assistant", "content": ""}),
        None,
    ));
    let st = Arc::clone(&state);
    tokio::spawn(async move {
        let mut ev = first;
        let mut status = 200;
        loop {
            match ev {
                ChatEvent::Token { text } => {
                    let _ = tx.send(chunk(&st, &id, stamp, json!({"content": text}), None));
                }
                ChatEvent::Done {
                    finish,
                    prompt_tokens,
                    completion_tokens,
                    ..
                } => {
                    let _ = tx.send(chunk(&st, &id, stamp, json!({}), Some(finish.reason())));
                    if c.include_usage {
                        let v = json!({"id": id, "object": "chat.completion.chunk",
                                       "created": stamp, "model": st.model, "choices": [],
                                       "usage": usage(prompt_tokens, completion_tokens)});
                        let _ = tx.send(Event::default().data(v.to_string()));
                    }
                    break;
                }
                ChatEvent::Error(e) => {
                    status = e.status;
                    let _ = tx.send(Event::default().data(e.body().to_string()));
                    break;
                }
            }
            ev = next_event(&st, &mut rx, started).await;
        }
        let _ = tx.send(Event::default().data("[DONE]"));
        st.metrics
            .observe(CHAT, status, started.elapsed().as_secs_f64());
        st.metrics.in_flight.fetch_sub(1, Ordering::Relaxed);
    });
    let stream = futures_util::stream::unfold(body_rx, |mut r| async move {
        r.recv().await.map(|e| (Ok::<Event, Infallible>(e), r))
    });
    Sse::new(stream).into_response()
}
