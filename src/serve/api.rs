//! The request bodies the server accepts, parsed strictly: every error is a 4xx that names the
//! field (`param`, in OpenAI's error shape) and says what was expected.

use serde::Serialize;
use serde_json::{Map, Value};

use crate::data::fields::show;
use crate::prompt::{MAX_OPTIONS, MIN_OPTIONS};

/// An error answered to the client: HTTP status, the field it is about, and a message.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    pub status: u16,
    pub param: Option<String>,
    pub message: String,
}

impl ApiError {
    pub fn new(status: u16, param: Option<&str>, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            param: param.map(str::to_owned),
            message: message.into(),
        }
    }

    /// 400 about `param`.
    pub fn field(param: &str, message: impl Into<String>) -> ApiError {
        ApiError::new(400, Some(param), message)
    }

    /// OpenAI's error type for the status.
    pub fn kind(&self) -> &'static str {
        match self.status {
            429 => "rate_limit_error",
            400..=499 => "invalid_request_error",
            _ => "server_error",
        }
    }

    /// `{"error": {"message", "type", "param", "code"}}`: the body of every error response.
    pub fn body(&self) -> Value {
        serde_json::json!({
            "error": {
                "message": self.message,
                "type": self.kind(),
                "param": self.param,
                "code": self.status,
            }
        })
    }
}

/// What the server accepts per request, from its options.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Longest question (bytes of UTF-8).
    pub max_question_bytes: usize,
    /// Most tokens one chat completion may ask for.
    pub max_tokens: usize,
}

/// `POST /v1/videoqa`.
#[derive(Debug, Clone, PartialEq)]
pub struct VideoQa {
    /// A path under the served root, or a `data:` URL carrying the file's bytes.
    pub video: String,
    pub question: String,
    pub options: Vec<String>,
    /// The correct option (index), for `correct` in the answer.
    pub answer: Option<usize>,
    pub start: Option<f64>,
    pub end: Option<f64>,
}

/// `POST /v1/chat/completions`: one user turn with text and one video.
#[derive(Debug, Clone, PartialEq)]
pub struct Chat {
    pub model: Option<String>,
    /// Replaces the package's system text when the conversation opens with a system message.
    pub system: Option<String>,
    pub question: String,
    pub video: String,
    /// Where the video's URL is in the request, for errors about the video.
    pub video_param: String,
    pub max_tokens: usize,
    pub temperature: f32,
    pub top_p: f32,
    pub seed: u64,
    pub stream: bool,
    pub include_usage: bool,
}

/// The body as a JSON object, or a 400 that says where the JSON is wrong.
pub fn parse_object(body: &[u8]) -> Result<Map<String, Value>, ApiError> {
    let v: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::new(
            400,
            Some("body"),
            format!("the request body is not valid JSON: {e}"),
        )
    })?;
    match v {
        Value::Object(m) => Ok(m),
        other => Err(ApiError::new(
            400,
            None,
            format!(
                "the request body must be a JSON object, found {}",
                show(&other)
            ),
        )),
    }
}

fn deny_unknown(m: &Map<String, Value>, at: &str, known: &[&str]) -> Result<(), ApiError> {
    match m.keys().find(|k| !known.contains(&k.as_str())) {
        Some(k) => Err(ApiError::field(
            &join(at, k),
            format!("unknown field {k:?}; expected one of {}", known.join(", ")),
        )),
        None => Ok(()),
    }
}

fn join(at: &str, k: &str) -> String {
    if at.is_empty() {
        k.to_string()
    } else {
        format!("{at}.{k}")
    }
}

fn string(m: &Map<String, Value>, at: &str, k: &str) -> Result<Option<String>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(ApiError::field(
            &join(at, k),
            format!("expected a string, found {}", show(other)),
        )),
    }
}

fn required_string(m: &Map<String, Value>, at: &str, k: &str) -> Result<String, ApiError> {
    string(m, at, k)?
        .ok_or_else(|| ApiError::field(&join(at, k), format!("field {k} is missing (a string)")))
}

fn number(m: &Map<String, Value>, k: &str) -> Result<Option<f64>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .filter(|x| x.is_finite())
            .map(Some)
            .ok_or_else(|| ApiError::field(k, format!("expected a number, found {}", show(v)))),
    }
}

fn whole(m: &Map<String, Value>, k: &str) -> Result<Option<u64>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(Some).ok_or_else(|| {
            ApiError::field(
                k,
                format!("expected a whole number >= 0, found {}", show(v)),
            )
        }),
    }
}

fn boolean(m: &Map<String, Value>, at: &str, k: &str) -> Result<Option<bool>, ApiError> {
    match m.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Bool(b)) => Ok(Some(*b)),
        Some(other) => Err(ApiError::field(
            &join(at, k),
            format!("expected true or false, found {}", show(other)),
        )),
    }
}

fn check_question(q: &str, param: &str, limits: &Limits) -> Result<(), ApiError> {
    if q.trim().is_empty() {
        return Err(ApiError::field(param, "the question is empty"));
    }
    if q.len() > limits.max_question_bytes {
        return Err(ApiError::field(
            param,
            format!(
                "the question is {} bytes; this server accepts at most {}",
                q.len(),
                limits.max_question_bytes
            ),
        ));
    }
    Ok(())
}

impl VideoQa {
    const FIELDS: [&'static str; 6] = ["video", "question", "options", "answer", "start", "end"];

    pub fn parse(body: &[u8], limits: &Limits) -> Result<VideoQa, ApiError> {
        let m = parse_object(body)?;
        deny_unknown(&m, "", &Self::FIELDS)?;
        let video = required_string(&m, "", "video")?;
        let question = required_string(&m, "", "question")?;
        check_question(&question, "question", limits)?;
        let options = match m.get("options") {
            Some(Value::Array(items)) => items
                .iter()
                .enumerate()
                .map(|(i, v)| match v {
                    Value::String(s) => Ok(s.clone()),
                    other => Err(ApiError::field(
                        &format!("options[{i}]"),
                        format!("expected a string, found {}", show(other)),
                    )),
                })
                .collect::<Result<Vec<_>, _>>()?,
            None | Some(Value::Null) => {
                return Err(ApiError::field(
                    "options",
                    "field options is missing (a list of 2 to 8 strings)",
                ))
            }
            Some(other) => {
                return Err(ApiError::field(
                    "options",
                    format!("expected a list of strings, found {}", show(other)),
                ))
            }
        };
        if !(MIN_OPTIONS..=MAX_OPTIONS).contains(&options.len()) {
            return Err(ApiError::field(
                "options",
                format!(
                    "{} options given; expected {MIN_OPTIONS} to {MAX_OPTIONS}",
                    options.len()
                ),
            ));
        }
        crate::data::check_option_texts(&options)
            .map_err(|e| ApiError::field("options", e.to_string()))?;
        for (i, o) in options.iter().enumerate() {
            if o.len() > limits.max_question_bytes {
                return Err(ApiError::field(
                    &format!("options[{i}]"),
                    format!(
                        "the option is {} bytes; this server accepts at most {}",
                        o.len(),
                        limits.max_question_bytes
                    ),
                ));
            }
        }
        let answer = match m.get("answer") {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => {
                Some(crate::answer::answer_index(&options, s).ok_or_else(|| {
                    ApiError::field("answer", format!("{s:?} is not one of the options"))
                })?)
            }
            Some(v) => match v.as_u64() {
                Some(i) if (i as usize) < options.len() => Some(i as usize),
                _ => {
                    return Err(ApiError::field(
                        "answer",
                        format!(
                            "expected an option index 0 to {} or an option's text, found {}",
                            options.len() - 1,
                            show(v)
                        ),
                    ))
                }
            },
        };
        let start = number(&m, "start")?;
        let end = number(&m, "end")?;
        if let (Some(s), Some(e)) = (start, end) {
            if e <= s {
                return Err(ApiError::field(
                    "end",
                    format!("end {e} is not after start {s}"),
                ));
            }
        }
        if start.is_some_and(|s| s < 0.0) {
            return Err(ApiError::field("start", "expected seconds >= 0"));
        }
        Ok(VideoQa {
            video,
            question,
            options,
            answer,
            start,
            end,
        })
    }
}

impl Chat {
    const FIELDS: [&'static str; 12] = [
        "model",
        "messages",
        "max_tokens",
        "max_completion_tokens",
        "temperature",
        "top_p",
        "seed",
        "stream",
        "stream_options",
        "n",
        "user",
        "stop",
    ];

    pub fn parse(body: &[u8], limits: &Limits) -> Result<Chat, ApiError> {
        let m = parse_object(body)?;
        deny_unknown(&m, "", &Self::FIELDS)?;
        let model = string(&m, "", "model")?;
        if let Some(n) = whole(&m, "n")? {
            if n != 1 {
                return Err(ApiError::field(
                    "n",
                    format!("n {n}: only 1 choice is served"),
                ));
            }
        }
        if m.get("stop").is_some_and(|v| !v.is_null()) {
            return Err(ApiError::field(
                "stop",
                "stop sequences are not supported; generation stops at the model's eos token",
            ));
        }
        string(&m, "", "user")?;
        let max_tokens = match (
            whole(&m, "max_tokens")?,
            whole(&m, "max_completion_tokens")?,
        ) {
            (Some(_), Some(_)) => {
                return Err(ApiError::field(
                    "max_completion_tokens",
                    "give max_tokens or max_completion_tokens, not both",
                ))
            }
            (Some(n), None) | (None, Some(n)) => n as usize,
            (None, None) => limits.max_tokens.min(16),
        };
        if max_tokens == 0 || max_tokens > limits.max_tokens {
            return Err(ApiError::field(
                "max_tokens",
                format!(
                    "max_tokens {max_tokens}: expected 1 to {}",
                    limits.max_tokens
                ),
            ));
        }
        let temperature = number(&m, "temperature")?.unwrap_or(0.0);
        if !(0.0..=2.0).contains(&temperature) {
            return Err(ApiError::field(
                "temperature",
                format!("temperature {temperature}: expected 0 to 2"),
            ));
        }
        let top_p = number(&m, "top_p")?.unwrap_or(1.0);
        if !(top_p > 0.0 && top_p <= 1.0) {
            return Err(ApiError::field(
                "top_p",
                format!("top_p {top_p}: expected a number in (0, 1]"),
            ));
        }
        let seed = whole(&m, "seed")?.unwrap_or(0);
        let stream = boolean(&m, "", "stream")?.unwrap_or(false);
        let include_usage = match m.get("stream_options") {
            None | Some(Value::Null) => false,
            Some(Value::Object(o)) => {
                deny_unknown(o, "stream_options", &["include_usage"])?;
                boolean(o, "stream_options", "include_usage")?.unwrap_or(false)
            }
            Some(other) => {
                return Err(ApiError::field(
                    "stream_options",
                    format!("expected an object, found {}", show(other)),
                ))
            }
        };
        let (system, question, (video, video_param)) = parse_messages(m.get("messages"), limits)?;
        Ok(Chat {
            model,
            system,
            question,
            video,
            video_param,
            max_tokens,
            temperature: temperature as f32,
            top_p: top_p as f32,
            seed,
            stream,
            include_usage,
        })
    }
}

/// A parsed conversation: the system text (if any), the question, and the video's URL with
/// where it was in the request.
type UserTurn = (Option<String>, String, (String, String));

/// `[system?, user]`: the user message's text parts (joined by newlines) are the question, its one
/// `video_url` part the video.
fn parse_messages(v: Option<&Value>, limits: &Limits) -> Result<UserTurn, ApiError> {
    let msgs = match v {
        Some(Value::Array(a)) if !a.is_empty() => a,
        Some(Value::Array(_)) => return Err(ApiError::field("messages", "no message given")),
        None | Some(Value::Null) => {
            return Err(ApiError::field(
                "messages",
                "field messages is missing (a list of chat messages)",
            ))
        }
        Some(other) => {
            return Err(ApiError::field(
                "messages",
                format!("expected a list of messages, found {}", show(other)),
            ))
        }
    };
    let mut system = None;
    let mut user = None;
    for (i, msg) in msgs.iter().enumerate() {
        let at = format!("messages[{i}]");
        let Value::Object(o) = msg else {
            return Err(ApiError::field(
                &at,
                format!("expected a message object, found {}", show(msg)),
            ));
        };
        deny_unknown(o, &at, &["role", "content", "name"])?;
        let role = required_string(o, &at, "role")?;
        match role.as_str() {
            "system" | "developer" if i == 0 => {
                system = Some(text_only(o.get("content"), &format!("{at}.content"))?);
            }
            "user" if user.is_none() => user = Some((at, o)),
            "user" => {
                return Err(ApiError::field(
                    &at,
                    "one user message is served (one question about one video); \
                     multi-turn conversations are not",
                ))
            }
            "assistant" | "tool" => {
                return Err(ApiError::field(
                    &format!("{at}.role"),
                    format!("role {role:?}: multi-turn conversations are not served"),
                ))
            }
            other => {
                return Err(ApiError::field(
                    &format!("{at}.role"),
                    format!("role {other:?}: expected system (first) or user"),
                ))
            }
        }
    }
    let Some((at, user)) = user else {
        return Err(ApiError::field("messages", "no user message given"));
    };
    let at = format!("{at}.content");
    let parts =
        match user.get("content") {
            Some(Value::Array(p)) => p,
            Some(Value::String(_)) => return Err(ApiError::field(
                &at,
                "the user message needs a video: give content as a list with a text part and a \
                 video_url part",
            )),
            _ => {
                return Err(ApiError::field(
                    &at,
                    "field content is missing (a list of text and video_url parts)",
                ))
            }
        };
    let mut texts = Vec::new();
    let mut video = None;
    for (j, part) in parts.iter().enumerate() {
        let pat = format!("{at}[{j}]");
        let Value::Object(p) = part else {
            return Err(ApiError::field(
                &pat,
                format!("expected a content part object, found {}", show(part)),
            ));
        };
        let kind = required_string(p, &pat, "type")?;
        match kind.as_str() {
            "text" => {
                deny_unknown(p, &pat, &["type", "text"])?;
                texts.push(required_string(p, &pat, "text")?);
            }
            "video_url" => {
                deny_unknown(p, &pat, &["type", "video_url"])?;
                if video.is_some() {
                    return Err(ApiError::field(&pat, "one video per request is served"));
                }
                let vat = format!("{pat}.video_url");
                let url = match p.get("video_url") {
                    Some(Value::Object(u)) => {
                        deny_unknown(u, &vat, &["url"])?;
                        (required_string(u, &vat, "url")?, format!("{vat}.url"))
                    }
                    Some(Value::String(s)) => (s.clone(), vat.clone()),
                    _ => {
                        return Err(ApiError::field(
                            &vat,
                            "field video_url is missing (an object with a url)",
                        ))
                    }
                };
                video = Some(url);
            }
            other => {
                return Err(ApiError::field(
                    &format!("{pat}.type"),
                    format!("content part type {other:?}: expected text or video_url"),
                ))
            }
        }
    }
    let video = video.ok_or_else(|| ApiError::field(&at, "no video_url part given"))?;
    let question = texts.join("\n");
    check_question(&question, &at, limits)?;
    Ok((system, question, video))
}

fn text_only(v: Option<&Value>, at: &str) -> Result<String, ApiError> {
    match v {
        Some(Value::String(s)) => Ok(s.clone()),
        Some(Value::Array(parts)) => parts
            .iter()
            .enumerate()
            .map(|(j, p)| match p {
                Value::Object(o) if o.get("type") == Some(&Value::String("text".into())) => o
                    .get("text")
                    .and_then(Value::as_str)
                    .map(str::to_owned)
                    .ok_or_else(|| {
                        ApiError::field(&format!("{at}[{j}].text"), "expected a string")
                    }),
                _ => Err(ApiError::field(
                    &format!("{at}[{j}]"),
                    "a system message holds text parts only",
                )),
            })
            .collect::<Result<Vec<_>, _>>()
            .map(|t| t.join("\n")),
        _ => Err(ApiError::field(
            at,
            "expected a string or a list of text parts",
        )),
    }
}

/// The body of a successful `/v1/videoqa` answer.
#[derive(Debug, Serialize)]
pub struct VideoQaAnswer {
    pub id: String,
    pub model: String,
    pub prediction: Prediction,
    pub options: Vec<OptionProb>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub correct: Option<bool>,
    pub frame_indices: Vec<usize>,
    pub edges: Edges,
    pub timings: Timings,
}

#[derive(Debug, Serialize)]
pub struct Prediction {
    pub index: usize,
    pub label: String,
    pub text: String,
}

#[derive(Debug, Serialize)]
pub struct OptionProb {
    pub label: String,
    pub text: String,
    /// Softmax over the vocabulary at the answer position.
    pub prob: f32,
    /// Renormalised over the options.
    pub share: f32,
}

/// Attention edges open under the served pathways, against full causal attention.
#[derive(Debug, Serialize)]
pub struct Edges {
    pub open: u64,
    pub total: u64,
    pub kept: f64,
}

#[derive(Debug, Default, Clone, Serialize)]
pub struct Timings {
    pub queue_ms: f64,
    pub video_ms: f64,
    pub model_ms: f64,
    pub total_ms: f64,
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: Limits = Limits {
        max_question_bytes: 100,
        max_tokens: 64,
    };

    fn qa(v: Value) -> Result<VideoQa, ApiError> {
        VideoQa::parse(v.to_string().as_bytes(), &LIMITS)
    }

    fn chat(v: Value) -> Result<Chat, ApiError> {
        Chat::parse(v.to_string().as_bytes(), &LIMITS)
    }

    fn msg(text: &str, url: &str) -> Value {
        serde_json::json!([{"role": "user", "content": [
            {"type": "text", "text": text},
            {"type": "video_url", "video_url": {"url": url}}]}])
    }

    #[test]
    fn videoqa_errors_name_the_field() {
        let ok = serde_json::json!({"video": "a.mp4", "question": "Q?", "options": ["x", "y"]});
        assert_eq!(qa(ok.clone()).unwrap().options, vec!["x", "y"]);
        let param = |v: Value| qa(v).unwrap_err().param;
        let with = |k: &str, x: Value| {
            let mut o = ok.clone();
            o[k] = x;
            o
        };
        assert_eq!(param(with("colour", "red".into())), Some("colour".into()));
        assert_eq!(
            param(with("options", serde_json::json!(["x"]))),
            Some("options".into())
        );
        let nine: Vec<String> = (0..9).map(|i| format!("o{i}")).collect();
        assert_eq!(
            param(with("options", serde_json::json!(nine))),
            Some("options".into())
        );
        assert_eq!(
            param(with("options", serde_json::json!(["x", 3]))),
            Some("options[1]".into())
        );
        assert_eq!(
            param(with("question", "q".repeat(101).into())),
            Some("question".into())
        );
        assert_eq!(param(with("answer", 2.into())), Some("answer".into()));
        assert_eq!(param(with("start", "1s".into())), Some("start".into()));
        assert_eq!(
            param(serde_json::json!({"question": "Q?", "options": ["x", "y"]})),
            Some("video".into())
        );
        assert_eq!(qa(with("answer", "y".into())).unwrap().answer, Some(1));
        let e = VideoQa::parse(b"{not json", &LIMITS).unwrap_err();
        assert_eq!((e.status, e.param.as_deref()), (400, Some("body")));
        assert!(e.message.contains("not valid JSON"));
    }

    #[test]
    fn chat_reads_the_openai_subset() {
        let c = chat(
            serde_json::json!({"model": "m", "messages": msg("What happens?", "v.mp4"),
                                        "max_tokens": 5, "stream": true, "seed": 3,
                                        "stream_options": {"include_usage": true}}),
        )
        .unwrap();
        assert_eq!(
            (c.question.as_str(), c.video.as_str()),
            ("What happens?", "v.mp4")
        );
        assert_eq!(
            (c.max_tokens, c.stream, c.seed, c.include_usage),
            (5, true, 3, true)
        );
        let param = |v: Value| chat(v).unwrap_err().param;
        assert_eq!(
            param(serde_json::json!({"messages": msg("Q", "v"), "logprobs": true})),
            Some("logprobs".into())
        );
        assert_eq!(
            param(serde_json::json!({"messages": msg("Q", "v"), "max_tokens": 65})),
            Some("max_tokens".into())
        );
        assert_eq!(
            param(serde_json::json!({"messages": msg("Q", "v"), "temperature": "hot"})),
            Some("temperature".into())
        );
        assert_eq!(
            param(serde_json::json!({"max_tokens": 3})),
            Some("messages".into())
        );
        assert_eq!(
            param(serde_json::json!({"messages": [{"role": "user", "content": "no video"}]})),
            Some("messages[0].content".into())
        );
        assert_eq!(
            param(
                serde_json::json!({"messages": [{"role": "user", "content": [
                {"type": "image_url", "image_url": {"url": "x"}}]}]})
            ),
            Some("messages[0].content[0].type".into())
        );
        let mut two = msg("Q", "v");
        two.as_array_mut()
            .unwrap()
            .push(serde_json::json!({"role": "assistant", "content": "A"}));
        assert_eq!(
            param(serde_json::json!({"messages": two})),
            Some("messages[1].role".into())
        );
    }
}
