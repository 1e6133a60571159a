//! Load test of `vidflow serve` (a benchmark, not a test): N concurrent clients on loopback send a
//! seeded mix of valid and invalid requests to the tiny package for a fixed time or a bounded
//! number of requests, whichever ends first; it prints throughput, p50/p99 latency per request
//! kind, responses by status, and the server's resident memory after 100 requests and at the end.
//!
//! ```sh
//! cargo bench --bench serve_load -- --clients 8 --seconds 300 --requests 10000 [--json FILE]
//! ```
//! Needs the ffmpeg CLI (for the clip it serves) and ONNX Runtime as every command does.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use vidflow::serve::client;

const TIMEOUT: Duration = Duration::from_secs(120);

struct Settings {
    clients: usize,
    seconds: f64,
    requests: usize,
    json: Option<String>,
    threads: usize,
}

fn settings() -> Settings {
    let mut s = Settings {
        clients: 8,
        seconds: 300.0,
        requests: 10_000,
        json: None,
        threads: 0,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut i = 0;
    while i < args.len() {
        let value = || {
            args.get(i + 1)
                .unwrap_or_else(|| panic!("{} needs a value", args[i]))
                .clone()
        };
        match args[i].as_str() {
            "--clients" => s.clients = value().parse().expect("--clients N"),
            "--seconds" => s.seconds = value().parse().expect("--seconds S"),
            "--requests" => s.requests = value().parse().expect("--requests N"),
            "--json" => s.json = Some(value()),
            "--threads" => s.threads = value().parse().expect("--threads N"),
            "--bench" => {
                i += 1;
                continue;
            }
            other => panic!("unknown argument {other:?}"),
        }
        i += 2;
    }
    s
}

/// The kinds of request in the mix, with their weights (out of 20).
const KINDS: [(&str, u64); 9] = [
    ("videoqa", 7),
    ("videoqa-upload", 1),
    ("chat", 2),
    ("chat-stream", 1),
    ("bad-json", 2),
    ("unknown-field", 2),
    ("missing-file", 2),
    ("path-escape", 2),
    ("wrong-content-type", 1),
];

fn pick(n: u64) -> &'static str {
    // SplitMix64 of the request number: the same mix on every run.
    let mut z = n.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    let mut r = (z ^ (z >> 31)) % 20;
    for (k, w) in KINDS {
        if r < w {
            return k;
        }
        r -= w;
    }
    unreachable!()
}

fn send(addr: SocketAddr, kind: &str, upload: &str) -> std::io::Result<client::Response> {
    let qa = json!({"video": "clip.mp4", "question": "What appears first?",
                    "options": ["A red square", "A blue circle", "Nothing"]});
    let chat = |stream: bool| {
        json!({"max_tokens": 8, "stream": stream, "messages": [{"role": "user", "content": [
            {"type": "text", "text": "Describe the video."},
            {"type": "video_url", "video_url": {"url": "clip.mp4"}}]}]})
    };
    let post = |path: &str, v: &Value| client::post_json(addr, path, v, TIMEOUT);
    match kind {
        "videoqa" => post("/v1/videoqa", &qa),
        "videoqa-upload" => {
            let mut v = qa.clone();
            v["video"] = json!(upload);
            post("/v1/videoqa", &v)
        }
        "chat" => post("/v1/chat/completions", &chat(false)),
        "chat-stream" => post("/v1/chat/completions", &chat(true)),
        "bad-json" => client::request(
            addr,
            "POST",
            "/v1/videoqa",
            Some("application/json"),
            b"{\"video\": [",
            TIMEOUT,
        ),
        "unknown-field" => {
            let mut v = qa.clone();
            v["colour"] = json!("red");
            post("/v1/videoqa", &v)
        }
        "missing-file" => {
            let mut v = qa.clone();
            v["video"] = json!("nope.mp4");
            post("/v1/videoqa", &v)
        }
        "path-escape" => {
            let mut v = qa.clone();
            v["video"] = json!("../outside.mp4");
            post("/v1/videoqa", &v)
        }
        "wrong-content-type" => client::request(
            addr,
            "POST",
            "/v1/videoqa",
            Some("text/plain"),
            qa.to_string().as_bytes(),
            TIMEOUT,
        ),
        _ => unreachable!(),
    }
}

fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i]
}

fn clip(root: &Path) {
    let out = Command::new("ffmpeg")
        .args(["-y", "-loglevel", "error", "-f", "lavfi", "-i"])
        .arg("testsrc2=size=64x48:rate=8")
        .args(["-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p"])
        .arg(root.join("clip.mp4"))
        .output()
        .expect("the ffmpeg CLI");
    assert!(out.status.success(), "ffmpeg failed");
}

fn main() {
    let s = settings();
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("root");
    std::fs::create_dir_all(&root).unwrap();
    clip(&root);
    std::fs::write(tmp.path().join("outside.mp4"), b"not served").unwrap();
    let model = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    let mut child = Command::new(env!("CARGO_BIN_EXE_vidflow"))
        .arg("serve")
        .arg("--model")
        .arg(&model)
        .arg("--video-root")
        .arg(&root)
        .args(["--bind", "127.0.0.1:0", "--queue", "64"])
        .args(["--threads", &s.threads.to_string()])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start vidflow serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let addr: SocketAddr = line
        .split("http://")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|a| a.parse().ok())
        .unwrap_or_else(|| panic!("no address in {line:?}"));
    let pid = child.id();
    let rss_start = rss_kib(pid);

    // The clip's bytes as a data: URL, for uploads.
    let upload = {
        use base64::Engine as _;
        let bytes = std::fs::read(root.join("clip.mp4")).unwrap();
        Arc::new(format!(
            "data:video/mp4;base64,{}",
            base64::engine::general_purpose::STANDARD.encode(bytes)
        ))
    };
    let next = Arc::new(AtomicUsize::new(0));
    let done = Arc::new(AtomicUsize::new(0));
    let rss_at_100 = Arc::new(Mutex::new(0u64));
    // (kind, status or 0 for a transport error, seconds)
    let results = Arc::new(Mutex::new(Vec::<(&'static str, u16, f64)>::with_capacity(
        s.requests,
    )));
    let started = Instant::now();
    let until = started + Duration::from_secs_f64(s.seconds);
    let workers: Vec<_> = (0..s.clients)
        .map(|_| {
            let (next, done, results, rss_at_100) = (
                Arc::clone(&next),
                Arc::clone(&done),
                Arc::clone(&results),
                Arc::clone(&rss_at_100),
            );
            let limit = s.requests;
            let upload = upload.clone();
            std::thread::spawn(move || loop {
                let n = next.fetch_add(1, Ordering::Relaxed);
                if n >= limit || Instant::now() >= until {
                    break;
                }
                let kind = pick(n as u64);
                let t = Instant::now();
                let status = send(addr, kind, &upload).map(|r| r.status).unwrap_or(0);
                let secs = t.elapsed().as_secs_f64();
                results.lock().unwrap().push((kind, status, secs));
                if done.fetch_add(1, Ordering::Relaxed) + 1 == 100 {
                    *rss_at_100.lock().unwrap() = rss_kib(pid);
                }
            })
        })
        .collect();
    for w in workers {
        w.join().unwrap();
    }
    let wall = started.elapsed().as_secs_f64();
    let rss_end = rss_kib(pid);
    let metrics = client::get(addr, "/metrics", TIMEOUT)
        .map(|r| r.text())
        .unwrap_or_default();
    // SAFETY: SIGTERM to our own child.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let exit = child.wait().unwrap();

    let results = results.lock().unwrap();
    let total = results.len();
    let mut by_status: BTreeMap<u16, usize> = BTreeMap::new();
    let mut by_kind: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
    let mut kind_status: BTreeMap<(&str, u16), usize> = BTreeMap::new();
    for (k, st, secs) in results.iter() {
        *by_status.entry(*st).or_default() += 1;
        by_kind.entry(k).or_default().push(*secs);
        *kind_status.entry((k, *st)).or_default() += 1;
    }
    let mut all: Vec<f64> = results.iter().map(|r| r.2).collect();
    all.sort_by(f64::total_cmp);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let rss100 = *rss_at_100.lock().unwrap();
    println!(
        "serve load: {} clients, {total} requests in {wall:.1} s = {:.1} req/s; server exit {exit}",
        s.clients,
        total as f64 / wall
    );
    println!("load average after: {}", load.trim());
    println!(
        "latency all: p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms",
        1e3 * percentile(&all, 0.5),
        1e3 * percentile(&all, 0.99),
        1e3 * all.last().copied().unwrap_or(f64::NAN)
    );
    println!("| kind | requests | statuses | p50 ms | p99 ms |");
    println!("|---|---:|---|---:|---:|");
    let mut kinds_json = Vec::new();
    for (k, v) in by_kind.iter_mut() {
        v.sort_by(f64::total_cmp);
        let statuses: Vec<String> = kind_status
            .iter()
            .filter(|((kk, _), _)| kk == k)
            .map(|((_, st), n)| format!("{st}: {n}"))
            .collect();
        println!(
            "| {k} | {} | {} | {:.1} | {:.1} |",
            v.len(),
            statuses.join(", "),
            1e3 * percentile(v, 0.5),
            1e3 * percentile(v, 0.99)
        );
        kinds_json.push(json!({"kind": k, "requests": v.len(), "statuses": statuses,
                               "p50_ms": 1e3 * percentile(v, 0.5),
                               "p99_ms": 1e3 * percentile(v, 0.99)}));
    }
    let classes: Vec<String> = by_status
        .iter()
        .map(|(st, n)| match st {
            0 => format!("transport error: {n}"),
            st => format!("{st}: {n}"),
        })
        .collect();
    println!("responses by status: {}", classes.join(", "));
    let ratio = rss_end as f64 / rss100.max(1) as f64;
    println!(
        "server RSS: {rss_start} KiB at start, {rss100} KiB after 100 requests, {rss_end} KiB after \
         {total} ({:+.1}%)",
        100.0 * (ratio - 1.0)
    );
    let hits = metrics
        .lines()
        .find(|l| l.starts_with("vidflow_prefix_cache_hits_total"))
        .unwrap_or("")
        .to_string();
    println!("{hits}");
    if let Some(path) = &s.json {
        let v = json!({"clients": s.clients, "requests": total, "seconds": wall,
                       "throughput": total as f64 / wall,
                       "p50_ms": 1e3 * percentile(&all, 0.5),
                       "p99_ms": 1e3 * percentile(&all, 0.99),
                       "kinds": kinds_json, "statuses": classes,
                       "rss_kib": {"start": rss_start, "after_100": rss100, "end": rss_end},
                       "loadavg": load.trim()});
        std::fs::write(path, serde_json::to_string_pretty(&v).unwrap()).unwrap();
    }
    assert!(exit.success(), "the server did not exit cleanly");
}
