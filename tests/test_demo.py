"""The Gradio demo served by `speechlm demo` on a tiny random-weight pipeline, called over HTTP with gradio_client:
streamed TTS, voice chat against a real OpenAI-style HTTP server, user-facing errors, concurrency and memory."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlm.cli import build_parser, main, normalize_argv
from speechlm.demo.config import DemoConfig, QueueOptions, check, from_namespace
from speechlm.demo.responders import LMResponder, OpenAIResponder, ResponderError, Turn
from speechlm.errors import SpeechLMError
from speechlm.inference import Pipeline
from tests.conftest import REPO, voiced
from tests.test_pipeline import build_tiny_pipeline

MAX_FRAMES = 12  # a random LM babbles until the length guard: keep every generation short
SAMPLING = {"temperature": 1.0, "top_k": 0, "top_p": 0.9, "cfg_scale": 1.0}
# Measured: +44 MB over 10 fresh sessions after warm-up (glibc arenas of Gradio's worker threads, and about
# 0.1 MB of Python objects per session, which Gradio keeps until an hour after the session disconnects).
RSS_GROWTH_LIMIT_MB = 150


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class ChatCompletionsServer:
    """A small OpenAI-compatible ``/v1/chat/completions`` server (a stand-in for the external service).

    It answers ``Hello there. You said N words.`` and records every request; the model name ``broken``
    gets an HTTP 500 in OpenAI's error format.
    """

    def __init__(self):
        self.requests: list[dict] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                owner.requests.append({"path": self.path, "auth": self.headers.get("Authorization"), **body})
                if self.path != "/v1/chat/completions":
                    return self._send(404, {"error": {"message": f"no route {self.path}"}})
                if body["model"] == "broken":
                    return self._send(500, {"error": {"message": "the model is overloaded", "type": "server_error"}})
                words = len(body["messages"][-1]["content"].split())
                self._send(200, {"id": "chatcmpl-1", "object": "chat.completion", "model": body["model"],
                                 "choices": [{"index": 0, "finish_reason": "stop", "message": {
                                     "role": "assistant", "content": f"Hello there. You said {words} words."}}]})

            def _send(self, status: int, payload: dict):
                data = json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.handler = Handler
        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()

    @contextmanager
    def down(self):
        """Nothing listens at :attr:`url` inside the block; the server is back on the same port after it."""
        self.close()
        try:
            yield
        finally:
            self.httpd = ThreadingHTTPServer(("127.0.0.1", self.port), self.handler)
            threading.Thread(target=self.httpd.serve_forever, daemon=True).start()


@pytest.fixture(scope="module")
def pipe():
    return build_tiny_pipeline()


@pytest.fixture(scope="module")
def pipeline_dir(pipe, tmp_path_factory) -> Path:
    return pipe.save_pretrained(tmp_path_factory.mktemp("demo") / "tiny")


@pytest.fixture(scope="module")
def loaded(pipeline_dir):
    """The pipeline as `speechlm demo --model DIR` loads it (with the folder's CPU speed options)."""
    return Pipeline.from_pretrained(pipeline_dir)


@pytest.fixture(scope="module")
def chat_server():
    server = ChatCompletionsServer()
    yield server
    server.close()


@pytest.fixture(scope="module")
def served(pipeline_dir, chat_server, tmp_path_factory):
    """``speechlm demo`` in its own process, as a user starts it: (url, process)."""
    port = free_port()
    log = tmp_path_factory.mktemp("demo_log") / "server.log"
    cmd = [sys.executable, "-m", "speechlm.cli", "demo", "-c", str(REPO / "configs/demo/default.yaml"),
           "--model", str(pipeline_dir), "--port", str(port), "--threads", "1", "--responder", "openai",
           "--openai.url", chat_server.url, "--openai.model", "test-model", "--stream.max_frames", str(MAX_FRAMES),
           "--stream.chunk_frames", "4"]
    env = {**os.environ, "OMP_NUM_THREADS": "1", "OPENAI_API_KEY": "sk-test"}
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 150
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"speechlm demo exited with {proc.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(url + "config", timeout=2) as r:
                if r.status == 200:
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"speechlm demo did not come up:\n{log.read_text()}")
        time.sleep(0.3)
    yield url, proc
    proc.terminate()  # stops as Ctrl-C does
    assert proc.wait(timeout=30) == 0, log.read_text()


@pytest.fixture(scope="module")
def client(served):
    from gradio_client import Client

    client = Client(served[0], verbose=False)
    yield client
    client.close()


def _tts(client, text: str, voice: str = "alice", seed: int = 0, **kwargs):
    args = dict(text=text, voice=voice, reference=None, reference_text="", **SAMPLING, seed=seed)
    args.update(kwargs)
    return client.submit(*args.values(), api_name="/tts")


def _read_wav(path) -> tuple[np.ndarray, int]:
    audio, sr = sf.read(path, dtype="float32")
    assert audio.ndim == 1 and len(audio) > 0 and np.isfinite(audio).all()
    return audio, sr


# ------------------------------------------------------------------------------------------ config, CLI


def test_config_file_parses_and_flags_win(tmp_path):
    path = REPO / "configs/demo/default.yaml"
    args = build_parser().parse_args(normalize_argv(["demo", "--config", str(path)]))
    cfg = check(from_namespace(args.demo))
    assert (cfg.host, cfg.share, cfg.responder, cfg.model) == ("127.0.0.1", False, "lm", "default")
    assert cfg.limits.max_text_chars > 0 and cfg.queue.concurrency >= 1 and cfg.stream.max_frames is None
    args = build_parser().parse_args(normalize_argv(["demo", "-c", str(path), "--port", "9000", "--share",
                                                     "--limits.max_text_chars", "50", "--responder", "openai"]))
    cfg = from_namespace(args.demo)
    assert (cfg.port, cfg.share, cfg.limits.max_text_chars, cfg.responder) == (9000, True, 50, "openai")
    with pytest.raises(SpeechLMError, match="queue.concurrency must be > 0"):
        check(DemoConfig(queue=QueueOptions(concurrency=0)))
    with pytest.raises(SystemExit):  # jsonargparse refuses a responder it does not know
        build_parser().parse_args(["demo", "--responder", "parrot"])


def test_demo_without_a_bundled_model_exits_with_the_pipeline_error(monkeypatch, tmp_path, capsys):
    import speechlm.inference

    monkeypatch.setattr(speechlm.inference, "BUNDLED", tmp_path / "none")
    assert main(["demo", "--port", str(free_port())]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: no bundled pipeline at") and "--model DIR" in err and "Traceback" not in err


# ------------------------------------------------------------------------------------------ text to speech


def test_tts_streams_chunks_then_gives_the_wav_the_pipeline_makes(client, loaded):
    text = "Hello there. The fox jumps!"
    job = _tts(client, text, seed=3)
    updates = list(job)
    final = job.result()
    streamed = [u for u in updates if isinstance(u[0], str) and u[0].endswith(".m3u8")]
    # chunks reach the client while synthesis runs: several streamed updates, each with more audio, then the rest
    assert len(streamed) >= 2, updates
    so_far = [float(u[1].split(";")[1].split()[0]) for u in streamed]
    assert so_far == sorted(so_far) and so_far[0] < so_far[-1]
    assert "First audio after" in final[1] and "real-time factor" in final[1]

    audio, sr = _read_wav(final[3])
    ref = loaded.synthesize(text, "alice", seed=3, batch_size=1, max_frames=MAX_FRAMES, **SAMPLING)
    assert sr == loaded.sample_rate == ref.sample_rate
    assert len(audio) == len(ref.audio) and np.abs(audio - np.clip(ref.audio, -1, 1)).max() < 2 / 32768

    from PIL import Image

    image = np.asarray(Image.open(final[2]).convert("RGB"))
    assert image.shape[0] > 100 and image.shape[1] > 300 and len(np.unique(image.reshape(-1, 3), axis=0)) > 50


def test_tts_with_an_uploaded_reference_clip(client, tmp_path):
    from gradio_client import handle_file

    clip = tmp_path / "me.wav"
    sf.write(clip, voiced(1.5, 16000, f0=180.0, seed=5), 16000)
    job = _tts(client, "Thank you.", voice="my reference clip", reference=handle_file(str(clip)),
               reference_text="Hello there.")
    audio, sr = _read_wav(job.result()[3])
    assert sr == 24000 and len(audio) > 0


def test_user_errors_are_messages_and_pipeline_errors_pass_verbatim(client, pipe):
    from gradio_client.exceptions import AppError

    with pytest.raises(AppError, match=r"^The text is 601 characters long; this demo takes at most 600 "):
        _tts(client, "a" * 601).result()
    with pytest.raises(AppError, match="^Type some text first"):
        _tts(client, "   ").result()
    with pytest.raises(AppError, match="^Upload or record a reference clip first"):
        _tts(client, "Hello.", voice="my reference clip").result()
    with pytest.raises(AppError, match="^top-k must be a whole number"):
        _tts(client, "Hello.", top_k=2.5).result()
    with pytest.raises(AppError, match="less than minimum value 0"):  # the slider's range, kept by Gradio
        _tts(client, "Hello.", cfg_scale=-1).result()
    with pytest.raises(SpeechLMError) as expected:
        pipe.synthesize("...", "alice", max_frames=MAX_FRAMES)
    with pytest.raises(AppError) as got:
        _tts(client, "...").result()
    assert str(got.value) == str(expected.value)


# ------------------------------------------------------------------------------------------ voice chat


def _texts(messages: list[dict], role: str) -> list[str]:
    return [p["text"] for m in messages if m["role"] == role for p in m["content"] if p["type"] == "text"]


def _audio_files(messages: list[dict], role: str) -> list[str]:
    return [p["value"] for m in messages if m["role"] == role for p in m["content"]
            if p["type"] == "component" and p["component"] == "audio"]


def _fetch_wav(url: str, server_path: str, tmp_path: Path) -> tuple[np.ndarray, int]:
    """A file of the conversation, fetched from the server the way the browser fetches it."""
    local = tmp_path / Path(server_path).name
    with urllib.request.urlopen(f"{url}gradio_api/file={server_path}", timeout=30) as r:
        local.write_bytes(r.read())
    return _read_wav(local)


def test_typed_chat_gets_a_spoken_reply_and_keeps_the_conversation(served, chat_server, tmp_path):
    from gradio_client import Client

    chat = Client(served[0], verbose=False)  # a session of its own: the conversation is per session
    before = len(chat_server.requests)
    messages, _, status, = chat.predict(None, "What is seven plus eight?", "lm", "alice", api_name="/chat")
    sent = chat_server.requests[before]
    assert sent["path"] == "/v1/chat/completions" and sent["model"] == "test-model"
    assert sent["auth"] == "Bearer sk-test"  # the key comes from the environment variable named in the config
    assert sent["messages"][0]["role"] == "system" and sent["messages"][-1] == {
        "role": "user", "content": "What is seven plus eight?"}
    assert _texts(messages, "user") == ["What is seven plus eight?"]
    assert _texts(messages, "assistant") == ["Hello there. You said 5 words."]
    [reply] = _audio_files(messages, "assistant")
    assert _fetch_wav(served[0], reply, tmp_path)[1] == 24000 and "real-time factor" in status

    messages, _, _ = chat.predict(None, "And ten times nine?", "lm", "bob", api_name="/chat")
    second = chat_server.requests[-1]["messages"]
    assert [m["role"] for m in second] == ["system", "user", "assistant", "user"]
    assert second[1]["content"] == "What is seven plus eight?"
    assert second[2]["content"] == "Hello there. You said 5 words."
    assert len(_audio_files(messages, "assistant")) == 2
    chat.close()


@pytest.mark.parametrize("recognizer", ["pocketsphinx", "lm"])
def test_spoken_chat_is_recognized_then_answered(served, chat_server, loaded, tmp_path, recognizer):
    from gradio_client import Client, handle_file
    from gradio_client.exceptions import AppError

    from speechlm.corpus.voices import VOICES, synthesize

    [spoken] = synthesize(VOICES["flite-rms"], ["hello world how are you today"], tmp_path)
    clip = tmp_path / "question.wav"
    sf.write(clip, spoken.audio, spoken.sample_rate)
    chat = Client(served[0], verbose=False)
    before = len(chat_server.requests)
    # the random-weight LM hears what it hears (maybe nothing), the same here as in the server
    expected = loaded.transcribe(spoken.audio, spoken.sample_rate) if recognizer == "lm" else None
    if expected == "":  # the user is told so, and no reply is asked for
        with pytest.raises(AppError, match="^Nothing was recognized in the recording"):
            chat.predict(handle_file(str(clip)), "", recognizer, "alice", api_name="/chat")
        chat.close()
        assert len(chat_server.requests) == before
        return
    messages, _, _ = chat.predict(handle_file(str(clip)), "", recognizer, "alice", api_name="/chat")
    chat.close()
    heard = chat_server.requests[before]["messages"][-1]["content"]
    if recognizer == "pocketsphinx":
        assert "hello" in heard.split()  # pocketsphinx follows flite's rms voice well (design.md: 7% WER)
    else:
        assert heard == expected
    [shown] = _texts(messages, "user")
    assert shown.startswith(f"{heard}\n\n*heard by ") and recognizer in shown
    [said] = _audio_files(messages, "user")
    assert _fetch_wav(served[0], said, tmp_path)[0].size > 0
    assert len(_audio_files(messages, "assistant")) == 1


# ------------------------------------------------------------------------------------------ load


def test_ten_concurrent_requests_complete_and_memory_stays_bounded(served):
    import psutil
    from gradio_client import Client

    url, proc = served
    server = psutil.Process(proc.pid)
    warm = Client(url, verbose=False)
    for seed in range(2):  # first requests load what is loaded lazily (ffmpeg encoder, matplotlib fonts)
        _read_wav(_tts(warm, "Warm up.", seed=seed).result()[3])
    warm.close()
    rss_before = server.memory_info().rss
    results: dict[int, object] = {}

    def one(i: int) -> None:
        client = Client(url, verbose=False)
        try:
            results[i] = _read_wav(_tts(client, f"Request number {i}.", seed=i).result()[3])
        except Exception as e:  # noqa: BLE001 - collected and reported below
            results[i] = e
        finally:
            client.close()

    threads = [threading.Thread(target=one, args=(i,)) for i in range(10)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=240)
    failed = {i: r for i, r in results.items() if isinstance(r, Exception)}
    assert len(results) == 10 and not failed, failed
    assert all(sr == 24000 for _, sr in results.values())
    growth_mb = (server.memory_info().rss - rss_before) / 2**20
    assert growth_mb < RSS_GROWTH_LIMIT_MB, f"server RSS grew {growth_mb:.0f} MB over 10 requests"


# ------------------------------------------------------------------------------------------ responders


def test_openai_responder_sends_history_and_reports_server_errors(chat_server, monkeypatch):
    monkeypatch.delenv("DEMO_TEST_KEY", raising=False)
    r = OpenAIResponder(chat_server.url + "/", "test-model", api_key_env="DEMO_TEST_KEY", system_prompt="Be brief.")
    assert r.reply([Turn("Hi.", "Hello.")], "How are you?") == "Hello there. You said 3 words."
    sent = chat_server.requests[-1]
    assert sent["auth"] is None and sent["messages"] == [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi."},
        {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "How are you?"}]
    with pytest.raises(ResponderError, match=r"answered HTTP 500: the model is overloaded$"):
        OpenAIResponder(chat_server.url, "broken").reply([], "Hi.")
    with pytest.raises(ResponderError, match=r"answered HTTP 404: no route /v1/nowhere/chat/completions"):
        OpenAIResponder(chat_server.url + "/nowhere", "test-model").reply([], "Hi.")


def test_unreachable_chat_server_is_a_clear_message_in_the_ui(served, chat_server):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    chat = Client(served[0], verbose=False)
    with chat_server.down(), pytest.raises(AppError) as e:
        chat.predict(None, "Hello?", "lm", "alice", api_name="/chat")
    assert str(e.value).startswith(f"cannot reach the chat server at {chat_server.url}/chat/completions (")
    assert "is it running?" in str(e.value) and "openai.url" in str(e.value)
    messages, _, _ = chat.predict(None, "Hello?", "lm", "alice", api_name="/chat")  # back up: the chat goes on
    chat.close()
    assert _texts(messages, "assistant") == ["Hello there. You said 1 words."]


def test_lm_responder_answers_in_phonemes_with_the_pipeline_chat_mode(loaded):
    responder = LMResponder(loaded)
    reply = responder.reply([], "What is seven plus eight?")
    assert responder.phonemes and reply == loaded.chat("What is seven plus eight?")
    # a spoken question arrives as the LM's asr transcript, phonemes: read as they are, not phonemized again
    heard = loaded.frontend.process(["What is seven plus eight?"])[0].phonemes
    assert responder.reply([], heard, user_phonemes=True) == reply
