//! The engine thread: it owns the package (ONNX Runtime sessions, the video-prefix cache) and
//! runs queued requests one at a time, each with every core ONNX Runtime was given. Requests that
//! waited past their deadline are answered 504 without running.

use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::{mpsc, oneshot};

use super::api::{ApiError, Chat, Edges, OptionProb, Prediction, Timings, VideoQa, VideoQaAnswer};
use super::media::VideoSource;
use super::metrics::Metrics;
use crate::answer::SampleInputs;
use crate::error::Error;
use crate::eval::EvalMode;
use crate::generate::{decode_text, generate, stop_tokens, Finish, GenerateSpec, Sampling};
use crate::mask::MaskedRows;
use crate::package::Package;
use crate::pathway::PathwayConfig;
use crate::prompt::PromptBuilder;
use crate::video::{load_video, TimeWindow};

/// One queued request.
pub struct Job {
    pub id: String,
    pub received: Instant,
    pub deadline: Instant,
    pub work: Work,
}

pub enum Work {
    VideoQa {
        req: VideoQa,
        video: VideoSource,
        reply: oneshot::Sender<Result<VideoQaAnswer, ApiError>>,
    },
    Chat {
        req: Chat,
        video: VideoSource,
        events: mpsc::UnboundedSender<ChatEvent>,
    },
}

/// What a chat completion sends back while it runs.
#[derive(Debug)]
pub enum ChatEvent {
    /// A token was generated; `text` is the new text it completes (may be empty while a
    /// multi-byte character is still partial).
    Token {
        text: String,
    },
    Done {
        text: String,
        finish: Finish,
        prompt_tokens: usize,
        completion_tokens: usize,
    },
    Error(ApiError),
}

/// What the engine thread serves with.
pub struct Engine {
    pub pkg: Package,
    pub builder: PromptBuilder,
    /// Pathways applied to every request (`None`: full attention).
    pub pathways: Option<PathwayConfig>,
    pub mode: EvalMode,
    pub masked_rows: MaskedRows,
    pub metrics: Arc<Metrics>,
}

impl Engine {
    /// Runs jobs until every sender is gone.
    pub fn run(self, jobs: Receiver<Job>) {
        for job in jobs {
            self.metrics
                .queue_depth
                .fetch_sub(1, std::sync::atomic::Ordering::Relaxed);
            let late = Instant::now() > job.deadline;
            match job.work {
                Work::VideoQa { req, video, reply } => {
                    let out = if late {
                        Err(deadline_passed())
                    } else {
                        self.videoqa(&job.id, job.received, job.deadline, &req, &video)
                    };
                    let _ = reply.send(out);
                }
                Work::Chat { req, video, events } => {
                    if late {
                        let _ = events.send(ChatEvent::Error(deadline_passed()));
                    } else {
                        self.chat(&req, &video, job.deadline, &events);
                    }
                }
            }
            self.metrics.set_prefix(self.pkg.prefixes().stats());
        }
    }

    fn videoqa(
        &self,
        id: &str,
        received: Instant,
        deadline: Instant,
        req: &VideoQa,
        source: &VideoSource,
    ) -> Result<VideoQaAnswer, ApiError> {
        let started = Instant::now();
        let opts: Vec<&str> = req.options.iter().map(String::as_str).collect();
        // The prompt is checked before the video is decoded.
        let layout = self
            .builder
            .layout(&req.question, &opts, req.answer)
            .map_err(|e| engine_error(e, "question", &req.video))?;
        let window = crate::answer::window(req.start, req.end);
        let inputs = self.load(
            source.path(),
            window,
            &req.video,
            "video",
            layout,
            |times| {
                self.builder
                    .layout_at(&req.question, &opts, req.answer, times)
                    .map_err(|e| engine_error(e, "question", &req.video))
            },
        )?;
        if Instant::now() > deadline {
            return Err(deadline_passed());
        }
        let video_ms = ms(started);
        let model_started = Instant::now();
        let (scores, open, total) = self
            .mode
            .score(&self.pkg, &inputs)
            .map_err(|e| engine_error(e, "video", &req.video))?;
        if Instant::now() > deadline {
            return Err(deadline_passed());
        }
        let p = scores.predicted;
        Ok(VideoQaAnswer {
            id: id.to_string(),
            model: self.pkg.manifest.name.clone(),
            prediction: Prediction {
                index: p,
                label: scores.labels[p].clone(),
                text: req.options[p].clone(),
            },
            options: (0..req.options.len())
                .map(|j| OptionProb {
                    label: scores.labels[j].clone(),
                    text: req.options[j].clone(),
                    prob: scores.probs[j],
                    share: scores.option_share[j],
                })
                .collect(),
            correct: scores.correct(),
            frame_indices: inputs.frame_indices,
            edges: Edges {
                open,
                total,
                kept: open as f64 / total.max(1) as f64,
            },
            timings: Timings {
                queue_ms: (started - received).as_secs_f64() * 1e3,
                video_ms,
                model_ms: ms(model_started),
                total_ms: ms(received),
            },
        })
    }

    fn load(
        &self,
        path: &std::path::Path,
        window: Option<TimeWindow>,
        reference: &str,
        param: &str,
        layout: crate::prompt::PromptLayout,
        at_times: impl FnOnce(&[f64]) -> Result<crate::prompt::PromptLayout, ApiError>,
    ) -> Result<SampleInputs, ApiError> {
        let video = &self.pkg.manifest.video;
        let input =
            load_video(path, video, window, None).map_err(|e| engine_error(e, param, reference))?;
        SampleInputs::new(input, video, layout, at_times)
    }

    fn chat(
        &self,
        req: &Chat,
        source: &VideoSource,
        deadline: Instant,
        events: &mpsc::UnboundedSender<ChatEvent>,
    ) {
        let result = self.chat_inner(req, source, deadline, events);
        if let Err(e) = result {
            let _ = events.send(ChatEvent::Error(e));
        }
    }

    fn chat_inner(
        &self,
        req: &Chat,
        source: &VideoSource,
        deadline: Instant,
        events: &mpsc::UnboundedSender<ChatEvent>,
    ) -> Result<(), ApiError> {
        let at = req.video_param.as_str();
        let layout = self
            .builder
            .layout_open(&req.question, req.system.as_deref())
            .map_err(|e| engine_error(e, "messages", &req.video))?;
        let inputs = self.load(source.path(), None, &req.video, at, layout, |times| {
            self.builder
                .layout_open_at(&req.question, req.system.as_deref(), times)
                .map_err(|e| engine_error(e, "messages", &req.video))
        })?;
        if Instant::now() > deadline {
            return Err(deadline_passed());
        }
        let spec = GenerateSpec {
            max_tokens: req.max_tokens,
            sampling: Sampling {
                temperature: req.temperature,
                top_p: req.top_p,
                seed: req.seed,
            },
            pathways: self.pathways.as_ref(),
            masked_rows: self.masked_rows,
            stop: stop_tokens(&self.pkg),
        };
        let tokenizer = self.builder.tokenizer();
        let mut tokens = Vec::new();
        let mut sent = String::new();
        let mut late = false;
        let out = generate(&self.pkg, &inputs, &spec, |id| {
            tokens.push(id);
            if let Ok(text) = decode_text(tokenizer, &tokens) {
                // A token that ends in the middle of a character decodes to a trailing U+FFFD:
                // hold it back until the character is complete, so sent text is never taken back.
                if !text.ends_with('\u{FFFD}')
                    && text.len() > sent.len()
                    && text.starts_with(sent.as_str())
                {
                    let delta = text[sent.len()..].to_string();
                    sent = text;
                    if events.send(ChatEvent::Token { text: delta }).is_err() {
                        return false; // the client is gone
                    }
                }
            }
            late = Instant::now() > deadline;
            !late
        })
        .map_err(|e| engine_error(e, "messages", &req.video))?;
        self.metrics.tokens_generated.fetch_add(
            out.tokens.len() as u64,
            std::sync::atomic::Ordering::Relaxed,
        );
        self.metrics
            .prompt_tokens
            .fetch_add(out.prompt_len as u64, std::sync::atomic::Ordering::Relaxed);
        if late {
            return Err(deadline_passed());
        }
        let text = decode_text(tokenizer, &out.tokens).unwrap_or_else(|_| sent.clone());
        if text.len() > sent.len() && text.starts_with(sent.as_str()) {
            let _ = events.send(ChatEvent::Token {
                text: text[sent.len()..].to_string(),
            });
        }
        let _ = events.send(ChatEvent::Done {
            text,
            finish: out.finish,
            prompt_tokens: out.prompt_len,
            completion_tokens: out.tokens.len(),
        });
        Ok(())
    }
}

fn ms(since: Instant) -> f64 {
    since.elapsed().as_secs_f64() * 1e3
}

pub fn deadline_passed() -> ApiError {
    ApiError::new(
        504,
        None,
        "the request's deadline passed before it finished (the server is busy; retry later or \
         ask for less)",
    )
}

/// A library error as the client sees it: bad videos are 422 about the video field (named by
/// the client's own reference, never the server's path), prompt and input errors 400, the rest
/// 500.
fn engine_error(e: Error, param: &str, reference: &str) -> ApiError {
    let shown = if reference.starts_with("data:") {
        "the uploaded video".to_string()
    } else {
        format!("{reference:?}")
    };
    match e {
        Error::Video { msg, .. } => ApiError::new(
            422,
            Some(param),
            format!("{shown} cannot be read as a video: {msg}"),
        ),
        Error::Io { err, .. } => {
            ApiError::new(422, Some(param), format!("{shown} cannot be read: {err}"))
        }
        Error::Prompt(msg) => ApiError::field(param, format!("prompt: {msg}")),
        Error::Input(msg) => ApiError::field(param, msg),
        other => ApiError::new(500, None, other.to_string()),
    }
}
