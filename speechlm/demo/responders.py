"""Who answers in the voice chat: this model's own chat mode, or any OpenAI-compatible chat-completions server."""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Protocol

from speechlm.errors import SpeechLMError


class ResponderError(SpeechLMError):
    """A reply could not be had; the message says why, for the person chatting."""


@dataclass
class Turn:
    """One exchange of the conversation, as text."""

    user: str
    reply: str


class Responder(Protocol):
    name: str  # shown in the UI: who is answering
    phonemes: bool  # replies are the front-end's phonemes (spoken with phonemes=True), not written text

    def reply(self, history: list[Turn], user_text: str, user_phonemes: bool = False) -> str:
        """The answer to ``user_text`` after the earlier turns ``history``.

        ``user_phonemes``: ``user_text`` is phonemes (the LM's ``asr`` transcript of a recording).
        """


class LMResponder:
    """The pipeline's own LM in ``chat`` mode (``Pipeline.chat``); it answers in phonemes."""

    phonemes = True

    def __init__(self, pipeline):
        self.pipeline = pipeline
        self.name = "this model (LM chat mode)"

    def reply(self, history: list[Turn], user_text: str, user_phonemes: bool = False) -> str:
        # The LM's chat task is trained on single question-answer turns (speechlm/data/chat_stage.py): no history.
        if user_phonemes:  # an asr transcript is already what the LM reads; phonemizing it again would garble it
            return self.pipeline.chat(user_text, phonemes=True)
        return self.pipeline.chat(user_text)


class OpenAIResponder:
    """``POST {base_url}/chat/completions`` with the conversation so far; the key comes from ``api_key_env``.

    Phonemes (the LM's ``asr`` transcripts) are sent as they are; pocketsphinx gives such a model words.
    """

    phonemes = False

    def __init__(self, base_url: str, model: str, api_key_env: str = "OPENAI_API_KEY", timeout: float = 30.0,
                 system_prompt: str = "", max_tokens: int | None = None):
        base = base_url.rstrip("/")
        self.url = base if base.endswith("/chat/completions") else base + "/chat/completions"
        self.model, self.api_key_env, self.timeout = model, api_key_env, timeout
        self.system_prompt, self.max_tokens = system_prompt, max_tokens
        self.name = f"{model} at {base} (OpenAI-compatible server)"

    def messages(self, history: list[Turn], user_text: str) -> list[dict]:
        out = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
        for turn in history:
            out += [{"role": "user", "content": turn.user}, {"role": "assistant", "content": turn.reply}]
        return out + [{"role": "user", "content": user_text}]

    def reply(self, history: list[Turn], user_text: str, user_phonemes: bool = False) -> str:
        body = {"model": self.model, "messages": self.messages(history, user_text), "stream": False}
        if self.max_tokens:
            body["max_tokens"] = self.max_tokens
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        key = os.environ.get(self.api_key_env)
        if key:
            headers["Authorization"] = f"Bearer {key}"
        request = urllib.request.Request(self.url, json.dumps(body).encode(), headers, method="POST")
        try:
            with urllib.request.urlopen(request, timeout=self.timeout) as response:
                raw = response.read()
        except urllib.error.HTTPError as e:
            raise ResponderError(self._http_error(e)) from None
        except TimeoutError:
            raise ResponderError(f"the chat server at {self.url} did not answer within {self.timeout:g} s") from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise ResponderError(f"cannot reach the chat server at {self.url} ({reason}); is it running? It is set "
                                 "by openai.url in the demo config") from None
        return self._content(raw)

    def _http_error(self, e: urllib.error.HTTPError) -> str:
        detail = e.read()[:2000].decode("utf-8", "replace")
        try:  # OpenAI-style servers say what went wrong in {"error": {"message": ...}}
            error = json.loads(detail).get("error")
            detail = error.get("message", detail) if isinstance(error, dict) else str(error or detail)
        except (ValueError, AttributeError):
            pass
        hint = f" (is ${self.api_key_env} set?)" if e.code in (401, 403) else ""
        return f"the chat server at {self.url} answered HTTP {e.code}{hint}: {detail.strip()[:300]}"

    def _content(self, raw: bytes) -> str:
        try:
            content = json.loads(raw)["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise ResponderError(f"the chat server at {self.url} did not send chat-completions JSON "
                                 f"(choices[0].message.content): {raw[:200]!r}") from None
        if not isinstance(content, str) or not content.strip():
            raise ResponderError(f"the chat server at {self.url} sent an empty reply")
        return content.strip()


def build_responder(cfg, pipeline) -> Responder:
    """The responder a :class:`~speechlm.demo.config.DemoConfig` names."""
    if cfg.responder == "openai":
        o = cfg.openai
        return OpenAIResponder(o.url, o.model, o.api_key_env, o.timeout, o.system_prompt, o.max_tokens)
    if cfg.responder == "lm":
        return LMResponder(pipeline)
    raise SpeechLMError(f"unknown responder {cfg.responder!r}; choose lm or openai")
