"""`vidflow serve` spoken to by the official `openai` Python client.

One server (the release binary, the committed tiny package) runs for the whole module, with a
generated H.264 clip in its --video-root. The tests go through `openai.OpenAI` only, so anything the
client cannot parse in the server's answers (a response field, an SSE chunk, an error body) fails
here.
"""

import base64
import queue
import re
import shutil
import signal
import subprocess
import threading
from pathlib import Path

import openai
import pytest

REPO = Path(__file__).resolve().parents[2]
BINARY = REPO / "target" / "release" / "vidflow"
MODEL_DIR = REPO / "tests" / "fixtures" / "tiny"
MODEL = "tiny-llava-next-video"
CLIP = "clip.mp4"
OUTSIDE = "outside.mp4"
LINK = "link.mp4"
URL_PARAM = "messages[0].content[1].video_url.url"
PROMPT = "Describe the video."
MAX_TOKENS = 8
STARTUP_TIMEOUT_S = 120
STOP_TIMEOUT_S = 60

LISTEN_LINE = re.compile(r"^vidflow serve: listening on http://(127\.0\.0\.1:\d+) \(model (\S+)\)$")


def _messages(url: str, system: str | None = None) -> list:
    msgs = []
    if system is not None:
        msgs.append({"role": "system", "content": system})
    msgs.append({
        "role": "user",
        "content": [
            {"type": "text", "text": PROMPT},
            {"type": "video_url", "video_url": {"url": url}},
        ],
    })
    return msgs


def _read_first_line(stream, timeout_s: float) -> str | None:
    """The first line of `stream`, or None when none came within the timeout (or it closed)."""
    q: queue.Queue = queue.Queue()
    threading.Thread(target=lambda: q.put(stream.readline()), daemon=True).start()
    try:
        line = q.get(timeout=timeout_s)
    except queue.Empty:
        return None
    return line or None


def _drain(stream) -> None:
    """Keeps reading the server's stdout so that it never blocks on a full pipe."""
    for _ in iter(stream.readline, ""):
        pass


@pytest.fixture(scope="module")
def video_root(tmp_path_factory) -> Path:
    """The clip is served from the folder `served` under a temporary base; `outside.mp4` in the base
    (the same clip) exists but lies outside it, as does what `served`'s link.mp4 points to."""
    if shutil.which("ffmpeg") is None:
        pytest.fail("the ffmpeg CLI is needed to make the test clip (scripts/setup.sh installs it)")
    base = tmp_path_factory.mktemp("serve")
    root = base / "served"
    root.mkdir()
    subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=64x48:rate=8",
         "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", str(root / CLIP)],
        check=True,
    )
    assert (root / CLIP).stat().st_size > 0
    shutil.copyfile(root / CLIP, base / OUTSIDE)
    (root / LINK).symlink_to(Path("..") / OUTSIDE)
    return root


@pytest.fixture(scope="module")
def server(video_root, tmp_path_factory):
    """Starts `vidflow serve` on a free port; yields its host:port; stops it with SIGTERM."""
    if not BINARY.is_file():
        pytest.fail(
            f"{BINARY.relative_to(REPO)} is missing: `make test` builds it (cargo test --release) "
            "before the Python tests; run `cargo build --release` to run this file alone"
        )
    log = tmp_path_factory.mktemp("serve_log") / "stderr.txt"
    with open(log, "w") as err:
        proc = subprocess.Popen(
            [str(BINARY), "serve", "--model", str(MODEL_DIR), "--bind", "127.0.0.1:0",
             "--video-root", str(video_root), "--threads", "1"],
            cwd=REPO, stdout=subprocess.PIPE, stderr=err, text=True,
        )

    def stderr_text() -> str:
        return log.read_text(errors="replace")[-4000:]

    line = _read_first_line(proc.stdout, STARTUP_TIMEOUT_S)
    if line is None:
        proc.kill()
        proc.wait()
        pytest.fail(f"vidflow serve printed no address line within {STARTUP_TIMEOUT_S}s "
                    f"(exit code {proc.returncode}); stderr:\n{stderr_text()}")
    m = LISTEN_LINE.match(line.rstrip("\n"))
    if m is None or m.group(2) != MODEL:
        proc.kill()
        proc.wait()
        pytest.fail(f"unexpected first stdout line {line!r}; stderr:\n{stderr_text()}")
    threading.Thread(target=_drain, args=(proc.stdout,), daemon=True).start()

    yield m.group(1)

    assert proc.poll() is None, f"the server died during the tests (code {proc.returncode}):\n{stderr_text()}"
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"vidflow serve did not stop within {STOP_TIMEOUT_S}s of SIGTERM:\n{stderr_text()}")
    assert code == 0, f"vidflow serve exited with {code} after SIGTERM; stderr:\n{stderr_text()}"


@pytest.fixture(scope="module")
def client(server) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"http://{server}/v1", api_key="unused", max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def greedy(client):
    """The non-streamed greedy answer about the clip (named by its path under the root)."""
    return client.chat.completions.create(
        model=MODEL, messages=_messages(CLIP), max_tokens=MAX_TOKENS, temperature=0)


def test_models_list(client):
    models = list(client.models.list())
    ids = [m.id for m in models]
    assert MODEL in ids, ids
    model = models[ids.index(MODEL)]
    assert model.object == "model"
    assert model.owned_by


def test_chat_completion_greedy(client, greedy):
    r = greedy
    assert r.object == "chat.completion"
    assert r.model == MODEL
    assert r.id
    assert len(r.choices) == 1
    choice = r.choices[0]
    assert choice.index == 0
    assert choice.message.role == "assistant"
    assert isinstance(choice.message.content, str) and choice.message.content
    assert choice.finish_reason in {"stop", "length"}
    u = r.usage
    assert u is not None
    assert 1 <= u.completion_tokens <= MAX_TOKENS
    assert u.prompt_tokens > 0
    assert u.total_tokens == u.prompt_tokens + u.completion_tokens
    if choice.finish_reason == "length":
        assert u.completion_tokens == MAX_TOKENS

    again = client.chat.completions.create(
        model=MODEL, messages=_messages(CLIP), max_tokens=MAX_TOKENS, temperature=0)
    assert again.choices[0].message.content == choice.message.content
    assert again.choices[0].finish_reason == choice.finish_reason
    assert again.usage.model_dump() == u.model_dump()


def test_chat_completion_stream(client, greedy):
    stream = client.chat.completions.create(
        model=MODEL, messages=_messages(CLIP), max_tokens=MAX_TOKENS, temperature=0,
        stream=True, stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks, "no chunks"
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert len({c.id for c in chunks}) == 1, "one stream, one id"

    text = ""
    roles = []
    finish = []
    for c in chunks:
        for ch in c.choices:
            assert ch.index == 0
            if ch.delta.role is not None:
                roles.append(ch.delta.role)
            if ch.delta.content:
                text += ch.delta.content
            if ch.finish_reason is not None:
                finish.append(ch.finish_reason)
    assert roles == ["assistant"]
    assert finish == [greedy.choices[0].finish_reason]
    assert text == greedy.choices[0].message.content

    # With include_usage the last chunk carries the usage (and no choices); the others carry none.
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.model_dump() == greedy.usage.model_dump()
    assert all(c.usage is None for c in chunks[:-1])


def test_data_url_matches_path(client, greedy, video_root):
    data = base64.b64encode((video_root / CLIP).read_bytes()).decode("ascii")
    r = client.chat.completions.create(
        model=MODEL, messages=_messages(f"data:video/mp4;base64,{data}"),
        max_tokens=MAX_TOKENS, temperature=0)
    assert r.choices[0].message.content == greedy.choices[0].message.content
    assert r.usage.model_dump() == greedy.usage.model_dump()


def test_seeded_sampling_repeats(client):
    def sample():
        return client.chat.completions.create(
            model=MODEL, messages=_messages(CLIP), max_tokens=MAX_TOKENS, temperature=1.0, seed=5)

    a, b = sample(), sample()
    assert a.choices[0].finish_reason in {"stop", "length"}
    assert 1 <= a.usage.completion_tokens <= MAX_TOKENS
    assert a.choices[0].message.content == b.choices[0].message.content
    assert a.usage.model_dump() == b.usage.model_dump()


def test_system_message_accepted(client, greedy):
    r = client.chat.completions.create(
        model=MODEL, messages=_messages(CLIP, system="You are a helpful assistant."),
        max_tokens=MAX_TOKENS, temperature=0)
    assert r.choices[0].message.role == "assistant"
    assert 1 <= r.usage.completion_tokens <= MAX_TOKENS
    # The system text is part of the prompt.
    assert r.usage.prompt_tokens != greedy.usage.prompt_tokens


def _error_param(e: openai.APIStatusError):
    body = e.response.json()
    assert set(body) == {"error"}, body
    assert {"message", "type", "param", "code"} <= set(body["error"]), body
    assert body["error"]["message"]
    assert e.message
    return body["error"]["param"]


def test_unknown_field_is_400(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.chat.completions.create(
            model=MODEL, messages=_messages(CLIP), max_tokens=MAX_TOKENS, temperature=0,
            extra_body={"logprobs_x": 1})
    e = info.value
    assert e.status_code == 400
    assert _error_param(e) == "logprobs_x"
    assert e.param == "logprobs_x"
    assert "logprobs_x" in e.message


@pytest.mark.parametrize("url", [f"../{OUTSIDE}", LINK], ids=["dotdot", "symlink"])
def test_path_escape_is_403(client, url):
    # The target exists (a valid clip), so only the root confinement can refuse it.
    with pytest.raises(openai.PermissionDeniedError) as info:
        client.chat.completions.create(
            model=MODEL, messages=_messages(url), max_tokens=MAX_TOKENS, temperature=0)
    assert info.value.status_code == 403
    assert _error_param(info.value) == URL_PARAM


def test_missing_file_is_404(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(
            model=MODEL, messages=_messages("missing.mp4"), max_tokens=MAX_TOKENS, temperature=0)
    assert info.value.status_code == 404
    assert _error_param(info.value) == URL_PARAM
