"""What the demo serves and its limits; read from ``configs/demo/*.yaml`` and flags by ``speechlm demo``."""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Literal

from speechlm.errors import SpeechLMError


@dataclass
class OpenAIOptions:
    """An OpenAI-compatible ``/v1/chat/completions`` server (OpenAI, vLLM, llama.cpp, Ollama, ...)."""

    url: str = "http://127.0.0.1:11434/v1"  # base URL; /chat/completions is appended unless it is there already
    model: str = "llama3.2"
    api_key_env: str = "OPENAI_API_KEY"  # the key is read from this environment variable, never from a file
    timeout: float = 30.0  # seconds
    max_tokens: int = 120
    system_prompt: str = ("You are a friendly voice assistant. Answer in one or two short sentences of plain "
                          "spoken English: no lists, no markup, no emoji.")


@dataclass
class Limits:
    """What one request may ask for; the rest of the machine stays responsive for everyone else."""

    max_text_chars: int = 600  # longer texts belong to `speechlm synthesize`
    max_upload_mb: float = 10.0  # enforced by Gradio before the file is stored
    max_upload_seconds: float = 30.0  # reference clips and chat recordings
    max_reply_chars: int = 400  # a chat reply longer than this is spoken up to here (the text shows in full)


@dataclass
class QueueOptions:
    concurrency: int = 1  # requests the pipeline works on at once (it already uses every core for one)
    max_size: int = 32  # requests allowed to wait; beyond that Gradio turns new ones away


@dataclass
class StreamOptions:
    first_chunk_frames: int = 1  # the first chunk is decoded after this many frames: low latency
    chunk_frames: int = 8  # later chunks: fewer, larger pieces of work
    max_frames: int | None = None  # cap per piece of text (None: the pipeline's length guard); tests keep it small


@dataclass
class DemoConfig:
    model: str = "default"  # 'default' (the bundled pipeline) or a pipeline folder
    host: str = "127.0.0.1"  # 0.0.0.0 serves the local network; only --share makes a public link
    port: int = 7860
    share: bool = False
    responder: Literal["lm", "openai"] = "lm"  # who writes chat replies: this model's chat mode, or a server
    asr: Literal["lm", "pocketsphinx"] = "lm"  # the recognizer the voice-chat tab starts with
    threads: int | None = None  # torch CPU threads (None: torch's default)
    openai: OpenAIOptions = field(default_factory=OpenAIOptions)
    limits: Limits = field(default_factory=Limits)
    queue: QueueOptions = field(default_factory=QueueOptions)
    stream: StreamOptions = field(default_factory=StreamOptions)


def from_namespace(ns, cls: type = DemoConfig):
    """The dataclass ``cls`` from jsonargparse's (nested) namespace, or a dict of its fields."""
    hints = typing.get_type_hints(cls)
    values = {}
    for f in dataclasses.fields(cls):
        value = ns[f.name] if isinstance(ns, dict) else getattr(ns, f.name)
        kind = hints[f.name]
        if dataclasses.is_dataclass(kind) and not isinstance(value, kind):
            value = from_namespace(value, kind)
        values[f.name] = value
    return cls(**values)


def check(cfg: DemoConfig) -> DemoConfig:
    """``cfg`` if every limit is usable; a SpeechLMError naming the first that is not."""
    positive = {"limits.max_text_chars": cfg.limits.max_text_chars, "limits.max_upload_mb": cfg.limits.max_upload_mb,
                "limits.max_upload_seconds": cfg.limits.max_upload_seconds,
                "limits.max_reply_chars": cfg.limits.max_reply_chars, "queue.concurrency": cfg.queue.concurrency,
                "queue.max_size": cfg.queue.max_size, "stream.first_chunk_frames": cfg.stream.first_chunk_frames,
                "stream.chunk_frames": cfg.stream.chunk_frames, "openai.timeout": cfg.openai.timeout,
                "openai.max_tokens": cfg.openai.max_tokens}
    if cfg.stream.max_frames is not None:
        positive["stream.max_frames"] = cfg.stream.max_frames
    for name, value in positive.items():
        if not value > 0:
            raise SpeechLMError(f"demo config: {name} must be > 0, got {value}")
    if not 0 <= cfg.port <= 65535:
        raise SpeechLMError(f"demo config: port must be 0-65535, got {cfg.port}")
    if cfg.responder == "openai" and not (cfg.openai.url.startswith(("http://", "https://")) and cfg.openai.model):
        raise SpeechLMError(f"demo config: responder openai needs openai.url (http:// or https://) and openai.model; "
                            f"got url {cfg.openai.url!r}, model {cfg.openai.model!r}")
    return cfg
