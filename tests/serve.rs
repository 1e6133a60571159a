//! `vidflow serve` on a free loopback port with the tiny package: valid requests answer what the
//! library answers, every bad input is a 4xx naming its field while concurrent requests carry on,
//! a full queue is 429, a passed deadline 504, metrics count it all, and SIGTERM lets in-flight
//! requests finish.
#![cfg(feature = "video")]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use base64::Engine as _;
use serde_json::{json, Value};
use vidflow::answer::{self, Sample};
use vidflow::generate::{decode_text, generate, GenerateSpec, Sampling};
use vidflow::mask::MaskedRows;
use vidflow::prompt::PromptBuilder;
use vidflow::serve::client::{self, Response};

use common::{ffmpeg_clip, open_tiny, repo_path, tiny_dir};

const T: Duration = Duration::from_secs(60);

struct Server {
    child: Child,
    addr: SocketAddr,
}

impl Server {
    fn start(root: &Path, extra: &[&str]) -> Server {
        let mut child = Command::new(env!("CARGO_BIN_EXE_vidflow"))
            .arg("serve")
            .arg("--model")
            .arg(tiny_dir())
            .arg("--video-root")
            .arg(root)
            .args(["--bind", "127.0.0.1:0", "--threads", "1"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .split("http://")
            .nth(1)
            .and_then(|r| r.split_whitespace().next())
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .parse()
            .unwrap();
        Server { child, addr }
    }

    fn post(&self, path: &str, body: &Value) -> Response {
        client::post_json(self.addr, path, body, T).unwrap()
    }

    fn metric(&self, line_start: &str) -> f64 {
        let text = client::get(self.addr, "/metrics", T).unwrap().text();
        text.lines()
            .find(|l| l.starts_with(line_start))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A served root: a clip, a frame folder, a corrupt file, a text file and a symlink out.
fn root(tmp: &Path) -> PathBuf {
    let root = tmp.join("root");
    std::fs::create_dir_all(&root).unwrap();
    ffmpeg_clip(&root.join("clip.mp4"), "testsrc2");
    let frames = root.join("frames");
    std::fs::create_dir_all(&frames).unwrap();
    for e in std::fs::read_dir(repo_path("tests/fixtures/knockout/frames/clip0")).unwrap() {
        let e = e.unwrap();
        std::fs::copy(e.path(), frames.join(e.file_name())).unwrap();
    }
    std::fs::write(root.join("corrupt.mp4"), vec![0x5a; 4096]).unwrap();
    std::fs::write(root.join("notes.txt"), "not a video").unwrap();
    std::fs::write(tmp.join("outside.mp4"), b"secret").unwrap();
    std::os::unix::fs::symlink(tmp.join("outside.mp4"), root.join("link.mp4")).unwrap();
    root
}

fn qa(video: &str) -> Value {
    json!({"video": video, "question": "What appears first?",
           "options": ["A red square", "A blue circle", "Nothing"], "answer": 0})
}

fn chat(video: &str, max_tokens: usize, stream: bool) -> Value {
    json!({"model": "tiny-llava-next-video", "max_tokens": max_tokens, "stream": stream,
           "stream_options": {"include_usage": true},
           "messages": [{"role": "user", "content": [
               {"type": "text", "text": "Describe what happens in the video."},
               {"type": "video_url", "video_url": {"url": video}}]}]})
}

#[test]
fn valid_requests_answer_what_the_library_answers() {
    let tmp = tempfile::tempdir().unwrap();
    let root = root(tmp.path());
    let server = Server::start(&root, &["--max-tokens", "64"]);

    // The library's own answers on the same inputs.
    let pkg = open_tiny();
    let builder = PromptBuilder::new(&pkg.manifest, pkg.dir()).unwrap();
    let sample = Sample {
        id: "s".into(),
        task: None,
        video: root.join("clip.mp4"),
        question: "What appears first?".into(),
        options: vec![
            "A red square".into(),
            "A blue circle".into(),
            "Nothing".into(),
        ],
        answer: Some(0),
        window: None,
    };
    let inputs = answer::prepare(&builder, &pkg.manifest.video, &sample).unwrap();
    let want = answer::answer(&pkg, &inputs).unwrap();

    let r = server.post("/v1/videoqa", &qa("clip.mp4"));
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["prediction"]["index"], want.predicted);
    for j in 0..3 {
        let p = v["options"][j]["prob"].as_f64().unwrap();
        assert!(
            (p - want.probs[j] as f64).abs() < 1e-6,
            "option {j}: {p} vs {}",
            want.probs[j]
        );
    }
    assert_eq!(v["edges"]["kept"], 1.0);
    assert_eq!(
        v["frame_indices"].as_array().unwrap().len(),
        pkg.manifest.video.num_frames
    );
    // The same file uploaded as bytes gives the same answer.
    let bytes = std::fs::read(root.join("clip.mp4")).unwrap();
    let url = format!(
        "data:video/mp4;base64,{}",
        base64::engine::general_purpose::STANDARD.encode(bytes)
    );
    let up = server.post("/v1/videoqa", &qa(&url)).json();
    assert_eq!(up["options"], v["options"]);
    // A frame folder.
    assert_eq!(server.post("/v1/videoqa", &qa("frames")).status, 200);

    // Chat: the library's greedy tokens, decoded.
    let layout = builder
        .layout_open("Describe what happens in the video.", None)
        .unwrap();
    let gen_inputs = answer::SampleInputs {
        pixels: inputs.pixels.clone(),
        frame_indices: inputs.frame_indices.clone(),
        seconds_per_frame: inputs.seconds_per_frame,
        layout,
    };
    let spec = GenerateSpec {
        max_tokens: 12,
        sampling: Sampling::greedy(),
        pathways: None,
        masked_rows: MaskedRows::Uniform,
        stop: vidflow::generate::stop_tokens(&pkg),
    };
    let gen = generate(&pkg, &gen_inputs, &spec, |_| true).unwrap();
    let text = decode_text(builder.tokenizer(), &gen.tokens).unwrap();

    let r = server.post("/v1/chat/completions", &chat("clip.mp4", 12, false));
    assert_eq!(r.status, 200, "{}", r.text());
    let c = r.json();
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["choices"][0]["message"]["content"], text.as_str());
    assert_eq!(c["usage"]["completion_tokens"], gen.tokens.len());
    assert_eq!(c["usage"]["prompt_tokens"], gen.prompt_len);
    assert_eq!(c["choices"][0]["finish_reason"], gen.finish.reason());

    // Streamed: the chunks add up to the same text, then usage, then [DONE].
    let r = server.post("/v1/chat/completions", &chat("clip.mp4", 12, true));
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    let data = r.sse_data();
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"));
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let streamed: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(streamed, text);
    assert_eq!(
        chunks.last().unwrap()["usage"]["completion_tokens"],
        gen.tokens.len()
    );

    assert_eq!(client::get(server.addr, "/healthz", T).unwrap().status, 200);
    assert_eq!(
        client::get(server.addr, "/v1/models", T).unwrap().json()["data"][0]["id"],
        "tiny-llava-next-video"
    );
    let ok = |route: &str| {
        server.metric(&format!(
            "vidflow_requests_total{{route=\"{route}\",status=\"200\"}}"
        ))
    };
    assert_eq!(ok("/v1/videoqa"), 3.0);
    assert_eq!(ok("/v1/chat/completions"), 2.0);
    assert_eq!(
        server.metric("vidflow_generated_tokens_total"),
        2.0 * gen.tokens.len() as f64
    );
    assert_eq!(
        server.metric("vidflow_request_duration_seconds_count{route=\"/v1/videoqa\"}"),
        3.0
    );
    // The second question about clip.mp4 reused its prefix; the chat's open prompt has the same
    // prefix too.
    assert!(server.metric("vidflow_prefix_cache_hits_total") >= 1.0);
}

#[test]
fn bad_input_is_a_4xx_naming_the_field_and_the_server_carries_on() {
    let tmp = tempfile::tempdir().unwrap();
    let root = root(tmp.path());
    let server = Server::start(
        &root,
        &["--max-body-mb", "1", "--max-question-bytes", "200"],
    );
    let with = |k: &str, v: Value| {
        let mut o = qa("clip.mp4");
        o[k] = v;
        o
    };
    let outside = tmp.path().join("outside.mp4");
    let nine: Vec<String> = (0..9).map(|i| format!("option {i}")).collect();
    let cases: Vec<(&str, Value, u16, Option<&str>)> = vec![
        (
            "unknown field",
            with("colour", json!("red")),
            400,
            Some("colour"),
        ),
        (
            "missing video",
            json!({"question": "Q?", "options": ["a", "b"]}),
            400,
            Some("video"),
        ),
        (
            "too many options",
            with("options", json!(nine)),
            400,
            Some("options"),
        ),
        (
            "option not a string",
            with("options", json!(["a", 1])),
            400,
            Some("options[1]"),
        ),
        (
            "long question",
            with("question", json!("why ".repeat(60))),
            400,
            Some("question"),
        ),
        (
            "answer out of range",
            with("answer", json!(7)),
            400,
            Some("answer"),
        ),
        ("missing file", qa("nope.mp4"), 404, Some("video")),
        ("corrupt file", qa("corrupt.mp4"), 422, Some("video")),
        ("not a video", qa("notes.txt"), 422, Some("video")),
        ("dot-dot escape", qa("../outside.mp4"), 403, Some("video")),
        ("symlink out", qa("link.mp4"), 403, Some("video")),
        (
            "absolute path out",
            qa(outside.to_str().unwrap()),
            403,
            Some("video"),
        ),
        (
            "remote url",
            qa("https://example.com/a.mp4"),
            400,
            Some("video"),
        ),
        (
            "bad base64",
            qa("data:video/mp4;base64,@@@"),
            400,
            Some("video"),
        ),
    ];
    let chat_cases: Vec<(&str, Value, u16, Option<&str>)> = vec![
        (
            "no video part",
            json!({"messages": [{"role": "user", "content": "hi"}]}),
            400,
            Some("messages[0].content"),
        ),
        (
            "unknown chat field",
            json!({"messages": [], "logprobs": true}),
            400,
            Some("logprobs"),
        ),
        (
            "wrong model",
            chat("clip.mp4", 4, false)
                .as_object()
                .cloned()
                .map(|mut m| {
                    m.insert("model".into(), json!("gpt-4"));
                    Value::Object(m)
                })
                .unwrap(),
            404,
            Some("model"),
        ),
        (
            "max_tokens too large",
            chat("clip.mp4", 100_000, false),
            400,
            Some("max_tokens"),
        ),
        (
            "chat escape",
            chat("../outside.mp4", 4, false),
            403,
            Some("messages[0].content[1].video_url.url"),
        ),
        (
            "chat corrupt",
            chat("corrupt.mp4", 4, true),
            422,
            Some("messages[0].content[1].video_url.url"),
        ),
    ];
    // Valid requests run beside the bad ones, on other connections.
    let addr = server.addr;
    let good = std::thread::spawn(move || {
        (0..6)
            .map(|_| {
                client::post_json(addr, "/v1/videoqa", &qa("clip.mp4"), T)
                    .unwrap()
                    .status
            })
            .collect::<Vec<_>>()
    });
    let mut bad_count = 0;
    for (route, list) in [
        ("/v1/videoqa", &cases),
        ("/v1/chat/completions", &chat_cases),
    ] {
        for (name, body, status, param) in list {
            let r = server.post(route, body);
            assert_eq!(r.status, *status, "{name}: {}", r.text());
            let e = r.json();
            assert_eq!(e["error"]["param"].as_str(), *param, "{name}: {}", r.text());
            assert_eq!(e["error"]["code"], *status, "{name}");
            assert!(!e["error"]["message"].as_str().unwrap().is_empty());
            assert!(
                !r.text().contains(root.to_str().unwrap()),
                "{name} leaks the root"
            );
            bad_count += 1;
        }
    }
    // Raw bodies: malformed JSON, wrong content type, a body over the limit.
    let raw = |ct: Option<&str>, body: &[u8]| {
        client::request(server.addr, "POST", "/v1/videoqa", ct, body, T).unwrap()
    };
    let r = raw(Some("application/json"), b"{\"video\": ");
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (400, Some("body"))
    );
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("not valid JSON"));
    let r = raw(Some("text/plain"), qa("clip.mp4").to_string().as_bytes());
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (415, Some("content-type"))
    );
    let big = json!({"video": format!("data:video/mp4;base64,{}", "A".repeat(2 << 20)),
                     "question": "Q?", "options": ["a", "b"]});
    let r = raw(Some("application/json"), big.to_string().as_bytes());
    assert_eq!(
        (r.status, r.json()["error"]["param"].as_str()),
        (413, Some("body"))
    );
    let r = client::get(server.addr, "/v1/videoqa", T).unwrap();
    assert_eq!(r.status, 405);
    assert_eq!(client::get(server.addr, "/nowhere", T).unwrap().status, 404);
    bad_count += 3;

    assert_eq!(good.join().unwrap(), vec![200; 6]);
    assert_eq!(server.post("/v1/videoqa", &qa("clip.mp4")).status, 200);
    let count = |status: u16| {
        ["/v1/videoqa", "/v1/chat/completions"]
            .iter()
            .map(|r| {
                server.metric(&format!(
                    "vidflow_requests_total{{route=\"{r}\",status=\"{status}\"}}"
                ))
            })
            .sum::<f64>()
    };
    let errors: f64 = [400, 403, 404, 413, 415, 422]
        .iter()
        .map(|&s| count(s))
        .sum();
    assert_eq!(errors, bad_count as f64);
    assert_eq!(count(200), 7.0);
}

#[test]
fn a_full_queue_is_429_and_a_passed_deadline_504() {
    let tmp = tempfile::tempdir().unwrap();
    let root = root(tmp.path());
    let server = Server::start(&root, &["--queue", "1"]);
    let addr = server.addr;
    let threads: Vec<_> = (0..12)
        .map(|_| {
            std::thread::spawn(move || {
                client::post_json(
                    addr,
                    "/v1/chat/completions",
                    &chat("clip.mp4", 48, false),
                    T,
                )
                .unwrap()
                .status
            })
        })
        .collect();
    let statuses: Vec<u16> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(
        statuses.iter().all(|s| [200, 429].contains(s)),
        "{statuses:?}"
    );
    assert!(
        statuses.contains(&200) && statuses.contains(&429),
        "{statuses:?}"
    );
    let n429 = statuses.iter().filter(|&&s| s == 429).count() as f64;
    assert_eq!(
        server.metric("vidflow_requests_total{route=\"/v1/chat/completions\",status=\"429\"}"),
        n429
    );
    assert_eq!(server.metric("vidflow_queue_depth"), 0.0);
    drop(server);

    let server = Server::start(&root, &["--deadline", "0.001"]);
    let r = server.post("/v1/videoqa", &qa("clip.mp4"));
    assert_eq!(r.status, 504, "{}", r.text());
    assert_eq!(
        server
            .post("/v1/chat/completions", &chat("clip.mp4", 8, false))
            .status,
        504
    );
}

#[test]
fn sigterm_lets_in_flight_requests_finish() {
    let tmp = tempfile::tempdir().unwrap();
    let root = root(tmp.path());
    let mut server = Server::start(&root, &["--queue", "8"]);
    let addr = server.addr;
    let threads: Vec<_> = (0..6)
        .map(|_| {
            std::thread::spawn(move || {
                let r = client::post_json(
                    addr,
                    "/v1/chat/completions",
                    &chat("clip.mp4", 48, false),
                    T,
                )
                .unwrap();
                (r.status, Instant::now())
            })
        })
        .collect();
    // Signal while requests wait in the queue (they are in flight for their clients).
    let waited = Instant::now();
    while server.metric("vidflow_queue_depth") < 2.0 {
        assert!(
            waited.elapsed() < Duration::from_secs(30),
            "requests never queued"
        );
        std::thread::sleep(Duration::from_millis(1));
    }
    let signalled = Instant::now();
    // SAFETY: sends SIGTERM to our own child process.
    unsafe {
        libc::kill(server.child.id() as i32, libc::SIGTERM);
    }
    let done: Vec<(u16, Instant)> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(done.iter().all(|(s, _)| *s == 200), "{done:?}");
    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        if let Some(s) = server.child.try_wait().unwrap() {
            break s;
        }
        assert!(
            Instant::now() < deadline,
            "the server did not exit after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(status.success(), "{status:?}");
    assert!(
        done.iter().any(|(_, at)| *at > signalled),
        "no request was still in flight at SIGTERM; the test proves nothing"
    );
    assert!(client::get(addr, "/healthz", Duration::from_secs(2)).is_err());
}
