"""The Gradio demo: text-to-speech that plays while it is made, and a voice chat, both served by one ``Pipeline``.

Streaming: Gradio 6 encodes what a generator yields into an AAC stream (one ffmpeg encoder per
output) that the browser plays as segments arrive. Chunks are handed over as 16-bit WAV bytes:
given ``(rate, float array)`` Gradio would normalize every chunk by its own peak, so the loudness
would jump from chunk to chunk.

Errors: a handler never shows a traceback. ``SpeechLMError`` messages (bad text, unknown voice,
unreadable audio, an unreachable chat server) reach the user as they are; anything else is logged
here and the user gets a short apology.
"""

from __future__ import annotations

import functools
import html
import inspect
import io
import logging
import shutil
import tempfile
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import gradio as gr
import numpy as np
import soundfile as sf

from speechlm.data.audio import load_audio
from speechlm.demo.config import DemoConfig, check
from speechlm.demo.responders import Responder, Turn, build_responder
from speechlm.errors import SpeechLMError

log = logging.getLogger(__name__)

NO_VOICE = "none (no voice prompt)"
REFERENCE = "my reference clip"
RECOGNIZERS = {"lm": "this model (asr task; writes phonemes)", "pocketsphinx": "pocketsphinx (English words)"}
# System fonts only: the default theme fetches Google Fonts, which an offline machine cannot reach.
THEME = gr.themes.Default(font=["ui-sans-serif", "system-ui", "sans-serif"],
                          font_mono=["ui-monospace", "SFMono-Regular", "monospace"])


def _message(text: str) -> str:
    # Gradio renders error and warning messages as HTML: escape them so they show exactly as written.
    return html.escape(text, quote=False)


def refuse(text: str) -> gr.Error:
    """The error a user sees for a request the demo turns down (no traceback in the server log)."""
    return gr.Error(_message(text), print_exception=False)


def user_errors(fn):
    """Wrap a handler (function or generator) so that users see messages, never tracebacks."""

    def translate(e: Exception) -> gr.Error:
        if isinstance(e, gr.Error):
            return e
        if isinstance(e, SpeechLMError):
            return refuse(str(e))
        log.exception("demo handler %s failed", fn.__name__)
        return gr.Error("Something went wrong on the server (it is in the server log). Please try again.",
                        print_exception=False)

    if inspect.isgeneratorfunction(fn):
        @functools.wraps(fn)
        def generator(*args, **kwargs):
            try:
                yield from fn(*args, **kwargs)
            except Exception as e:  # noqa: BLE001 - every failure becomes a message; the unexpected are logged
                raise translate(e) from None
        return generator

    @functools.wraps(fn)
    def function(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except Exception as e:  # noqa: BLE001 - as above
            raise translate(e) from None
    return function


def wav_bytes(chunk: np.ndarray, sample_rate: int) -> bytes:
    """One streamed chunk as a 16-bit WAV file in memory."""
    buf = io.BytesIO()
    sf.write(buf, np.clip(chunk, -1.0, 1.0), sample_rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


class WavStore:
    """Finished audio as WAV files in one temp folder; files older than ``keep_s`` are removed as new ones come.

    Gradio serves its own copies of returned files; these are the originals it copies from, and what
    the chat history points to while it is shown.
    """

    def __init__(self, keep_s: float = 3600.0):
        self.dir = Path(tempfile.mkdtemp(prefix="speechlm-demo-"))
        self.keep_s = keep_s
        self.lock = threading.Lock()

    def write(self, audio: np.ndarray, sample_rate: int, stem: str) -> str:
        path = self.dir / f"{stem}-{uuid.uuid4().hex[:10]}.wav"
        sf.write(path, np.clip(audio, -1.0, 1.0), sample_rate, subtype="PCM_16")
        cutoff = time.time() - self.keep_s
        with self.lock:
            for old in self.dir.glob("*.wav"):
                if old.stat().st_mtime < cutoff:
                    old.unlink(missing_ok=True)
        return str(path)

    def close(self) -> None:
        shutil.rmtree(self.dir, ignore_errors=True)


def spectrogram_image(audio: np.ndarray, sample_rate: int) -> np.ndarray:
    """An RGB image ``[H, W, 3]`` of the waveform over its spectrogram."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # not pyplot: no global figure state shared between request threads

    n_fft = 512
    fig = Figure(figsize=(8, 3.6), dpi=100, layout="constrained")
    wave, spec = fig.subplots(2, 1, sharex=True, height_ratios=[1, 2])
    t = np.arange(len(audio)) / sample_rate
    wave.plot(t, audio, linewidth=0.5, color="#1f5fa8")
    wave.set_title("waveform and spectrogram", fontsize=10)
    wave.set_ylabel("amplitude")
    wave.set_ylim(-1, 1)
    padded = np.pad(audio, (0, max(0, n_fft - len(audio))))
    with np.errstate(divide="ignore"):  # the pauses between sentences are exact zeros: -inf dB, drawn as vmin
        spec.specgram(padded, NFFT=n_fft, Fs=sample_rate, noverlap=n_fft * 3 // 4, cmap="magma", scale="dB",
                      vmin=-120)
    spec.set_ylabel("Hz")
    spec.set_xlabel("seconds")
    spec.set_xlim(0, max(t[-1] if len(t) else 0, n_fft / sample_rate))
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


@dataclass
class StreamTimer:
    """First-chunk latency and real-time factor of one streamed synthesis, measured where the user waits."""

    sample_rate: int
    start: float = field(default_factory=time.perf_counter)
    first_s: float | None = None
    samples: int = 0

    def add(self, chunk: np.ndarray) -> None:
        if self.first_s is None:
            self.first_s = time.perf_counter() - self.start
        self.samples += len(chunk)

    @property
    def audio_s(self) -> float:
        return self.samples / self.sample_rate

    def progress(self) -> str:
        return f"Streaming: first audio after **{self.first_s:.2f} s**; {self.audio_s:.2f} s of audio so far"

    def summary(self) -> str:
        total = time.perf_counter() - self.start
        rtf = total / self.audio_s if self.samples else float("inf")
        return (f"First audio after **{self.first_s:.2f} s** · {self.audio_s:.2f} s of audio in {total:.2f} s · "
                f"real-time factor **{rtf:.2f}** (below 1: faster than real time)")


class DemoApp:
    """The handlers, bound to one pipeline, config and responder; :meth:`build` lays them out as Gradio Blocks."""

    def __init__(self, pipeline, cfg: DemoConfig | None = None, responder: Responder | None = None):
        self.pipe, self.cfg = pipeline, check(cfg or DemoConfig())
        self.responder = responder or build_responder(self.cfg, pipeline)
        self.files = WavStore()
        self.asr_lock = threading.Lock()  # pocketsphinx's decoder is one object shared by every request
        self.blocks: gr.Blocks | None = None
        presets = sorted(pipeline.voices)
        # voice=None means the pipeline's default preset, so "no prompt" is a choice only without one
        self.voices = presets + ([NO_VOICE] if pipeline.default_voice is None else [])
        self.default_voice = pipeline.default_voice or self.voices[0]

    # ------------------------------------------------------------------------------ shared steps

    def _text(self, text: str | None, what: str = "text") -> str:
        text = (text or "").strip()
        limit = self.cfg.limits.max_text_chars
        if not text:
            raise refuse(f"Type some {what} first.")
        if len(text) > limit:
            raise refuse(f"The {what} is {len(text)} characters long; this demo takes at most {limit} "
                         "(limits.max_text_chars in the demo config). For long texts use `speechlm synthesize`.")
        return text

    def _recording(self, path: str, what: str) -> tuple[np.ndarray, int]:
        wav, sr = load_audio(path)
        seconds, limit = len(wav) / sr, self.cfg.limits.max_upload_seconds
        if seconds > limit:
            raise refuse(f"The {what} is {seconds:.1f} s long; this demo takes at most {limit:g} s "
                         "(limits.max_upload_seconds in the demo config).")
        return wav, sr

    def _voice(self, choice: str | None):
        if choice in (None, NO_VOICE):
            return None
        if choice not in self.pipe.voices:
            raise refuse(f"Unknown voice {choice!r}; choose one of: {', '.join(self.voices)}.")
        return choice

    def _speak(self, text: str, voice, voice_text: str | None = None, seed: int | None = 0,
               **options) -> Iterator[tuple[np.ndarray, StreamTimer]]:
        s = self.cfg.stream
        timer = StreamTimer(self.pipe.sample_rate)
        for chunk in self.pipe.stream(text, voice, voice_text=voice_text, seed=seed,
                                      first_chunk_frames=s.first_chunk_frames, chunk_frames=s.chunk_frames,
                                      max_frames=s.max_frames, **options):
            if len(chunk):
                timer.add(chunk)
                yield chunk, timer

    # ------------------------------------------------------------------------------ text to speech

    @user_errors
    def tts(self, text, voice, reference, reference_text, temperature, top_k, top_p, cfg_scale, seed):
        """Yields ``(audio chunk, status, image, wav file)``; the image and the file come last."""
        text = self._text(text)
        voice_text = (reference_text or "").strip() or None
        if voice == REFERENCE:
            if not reference:
                raise refuse("Upload or record a reference clip first, or pick a preset voice.")
            self._recording(reference, "reference clip")
            voice = reference
        else:
            voice, voice_text = self._voice(voice), None
        sampling = self._sampling(temperature, top_k, top_p, cfg_scale)
        seed = None if seed is None or seed < 0 else int(seed)
        parts, timer = [], None
        for chunk, timer in self._speak(text, voice, voice_text, seed, **sampling):
            parts.append(chunk)
            yield wav_bytes(chunk, self.pipe.sample_rate), timer.progress(), gr.skip(), gr.skip()
        audio = np.concatenate(parts)
        path = self.files.write(audio, self.pipe.sample_rate, "speech")
        yield gr.skip(), timer.summary(), spectrogram_image(audio, self.pipe.sample_rate), path

    @staticmethod
    def _sampling(temperature, top_k, top_p, cfg_scale) -> dict:
        if temperature is None or not 0 <= temperature <= 2:
            raise refuse(f"temperature must be between 0 (greedy) and 2, got {temperature}")
        if top_k is None or top_k < 0 or top_k != int(top_k):
            raise refuse(f"top-k must be a whole number >= 0 (0 = off), got {top_k}")
        if top_p is None or not 0 < top_p <= 1:
            raise refuse(f"top-p must be in (0, 1] (1 = off), got {top_p}")
        return {"temperature": float(temperature), "top_k": int(top_k), "top_p": float(top_p),
                "cfg_scale": float(cfg_scale)}

    # ------------------------------------------------------------------------------ voice chat

    def recognize(self, recognizer: str, wav: np.ndarray, sample_rate: int) -> str:
        if recognizer == "lm":
            return self.pipe.transcribe(wav, sample_rate)
        if recognizer == "pocketsphinx":
            from speechlm.eval.asr import get_asr

            with self.asr_lock:
                return get_asr("pocketsphinx", language=self.pipe.frontend.language).transcribe(wav, sample_rate)
        raise refuse(f"Unknown recognizer {recognizer!r}; choose one of: {', '.join(RECOGNIZERS)}.")

    @user_errors
    def chat(self, turns, recording, typed, recognizer, voice):
        """Yields ``(conversation, audio chunk, status, turns)``: the question, the reply, then its speech."""
        turns = list(turns or [])
        if recording:
            wav, sr = self._recording(recording, "recording")
            text = self.recognize(recognizer, wav, sr).strip()
            if not text:
                raise refuse("Nothing was recognized in the recording. Try again closer to the microphone, try the "
                             "other recognizer, or type the message.")
            turn = {"user": text, "user_audio": recording, "heard_by": recognizer}
        else:
            turn = {"user": self._text(typed, "message"), "user_audio": None, "heard_by": None}
        voice = self._voice(voice)
        turn.update(reply="", reply_audio=None)
        shown = turns + [turn]
        yield self.messages(shown), gr.skip(), f"Waiting for {self.responder.name}…", gr.skip()

        history = [Turn(t["user"], t["reply"]) for t in turns]
        reply = self.responder.reply(history, turn["user"], user_phonemes=turn["heard_by"] == "lm").strip()
        if not reply:
            raise refuse(f"{self.responder.name} gave an empty reply.")
        turn["reply"] = reply
        yield self.messages(shown), gr.skip(), "Speaking the reply…", gr.skip()

        spoken = self._speakable_part(reply)
        parts, timer = [], None
        try:
            for chunk, timer in self._speak(spoken, voice, phonemes=self.responder.phonemes):
                parts.append(chunk)
                yield gr.skip(), wav_bytes(chunk, self.pipe.sample_rate), timer.progress(), gr.skip()
        except SpeechLMError as e:  # the text reply still stands; only its speech failed
            gr.Warning(_message(f"The reply could not be spoken: {e}"))
            yield self.messages(shown), gr.skip(), "The reply could not be spoken.", shown
            return
        turn["reply_audio"] = self.files.write(np.concatenate(parts), self.pipe.sample_rate, "reply")
        cut = f" (spoken up to character {len(spoken)} of {len(reply)})" if len(spoken) < len(reply) else ""
        yield self.messages(shown), gr.skip(), timer.summary() + cut, shown

    def _speakable_part(self, reply: str) -> str:
        limit = self.cfg.limits.max_reply_chars
        if len(reply) <= limit:
            return reply
        head = reply[:limit]
        end = max(head.rfind(p) for p in ".!?")  # the last whole sentence, else the last whole word
        return head[: end + 1] if end > 0 else head.rsplit(" ", 1)[0]

    def messages(self, turns: list[dict]) -> list[dict]:
        """The conversation for ``gr.Chatbot``: text and audio of both sides (audio that has expired is left out)."""
        out, kind = [], "\n\n*(phonemes)*" if self.responder.phonemes else ""
        for t in turns:
            if t["user_audio"] and Path(t["user_audio"]).exists():
                out.append({"role": "user", "content": gr.Audio(t["user_audio"])})
            heard = f"\n\n*heard by {RECOGNIZERS[t['heard_by']]}*" if t["heard_by"] else ""
            out.append({"role": "user", "content": _message(t["user"]) + heard})  # what was said, not markup
            if t["reply"]:
                out.append({"role": "assistant", "content": t["reply"] + kind})
            if t["reply_audio"] and Path(t["reply_audio"]).exists():
                out.append({"role": "assistant", "content": gr.Audio(t["reply_audio"])})
        return out

    # ------------------------------------------------------------------------------ layout, serving

    def build(self) -> gr.Blocks:
        pipe, limits = self.pipe, self.cfg.limits
        d = pipe.defaults
        with gr.Blocks(title="speechlm demo", analytics_enabled=False, delete_cache=(600, 3600)) as blocks:
            gr.Markdown(f"# speechlm demo\n`{pipe!r}` · {pipe.sample_rate} Hz")
            with gr.Tab("Text to speech"):
                with gr.Row():
                    with gr.Column():
                        text = gr.Textbox(label="Text", lines=4, max_length=limits.max_text_chars,
                                          value="Hello there! This is speechlm speaking.", elem_id="tts-text")
                        voice = gr.Radio(self.voices + [REFERENCE], value=self.default_voice, label="Voice")
                        with gr.Accordion("Reference clip (3-6 s of the voice to imitate)", open=False):
                            reference = gr.Audio(sources=["upload", "microphone"], type="filepath", format="wav",
                                                 label="Reference clip")
                            reference_text = gr.Textbox(label="What the clip says (optional: otherwise the model "
                                                              "transcribes it)")
                        with gr.Accordion("Sampling", open=False):
                            temperature = gr.Slider(0, 2, value=d.temperature, step=0.05,
                                                    label="Temperature (0: greedy)")
                            top_k = gr.Slider(0, pipe.codec.info.codebook_size, value=d.top_k, step=1,
                                              label="Top-k (0: off)")
                            top_p = gr.Slider(0.05, 1, value=d.top_p, step=0.05, label="Top-p (1: off)")
                            cfg_scale = gr.Slider(0, 5, value=d.cfg_scale, step=0.25,
                                                  label="Text guidance (classifier-free; 1: off; on, each step "
                                                        "runs twice the rows)")
                            seed = gr.Number(0, precision=0, label="Seed (same seed and settings: same audio; "
                                                                   "-1: new each time)")
                        speak = gr.Button("Speak", variant="primary", elem_id="tts-button")
                    with gr.Column():
                        audio = gr.Audio(label="Speech (plays while it is being made)", streaming=True, autoplay=True,
                                         interactive=False, elem_id="tts-audio")
                        status = gr.Markdown(elem_id="tts-status")
                        image = gr.Image(label="Waveform and spectrogram", show_label=False, format="png",
                                         interactive=False, elem_id="tts-image")
                        download = gr.File(label="Download (WAV)", elem_id="tts-file")
                speak.click(self.tts, [text, voice, reference, reference_text, temperature, top_k, top_p, cfg_scale,
                                       seed],
                            [audio, status, image, download], api_name="tts", concurrency_id="pipeline")
                reference.change(lambda clip: gr.update(value=REFERENCE) if clip else gr.skip(), reference, voice,
                                 queue=False, api_visibility="private")

            with gr.Tab("Voice chat"):
                gr.Markdown(f"Replies by **{self.responder.name}** (`responder:` in the demo config). Speak or type; "
                            "the reply is spoken back as it is made.")
                chatbot = gr.Chatbot(label="Conversation", height=380, elem_id="chat")
                with gr.Row():
                    recording = gr.Audio(sources=["microphone", "upload"], type="filepath", format="wav",
                                         label="Speak")
                    with gr.Column():
                        typed = gr.Textbox(label="…or type", max_length=limits.max_text_chars, elem_id="chat-text")
                        recognizer = gr.Radio([(label, key) for key, label in RECOGNIZERS.items()],
                                              value=self.cfg.asr, label="Speech recognition")
                        reply_voice = gr.Dropdown(self.voices, value=self.default_voice, label="Reply voice")
                        with gr.Row():
                            send = gr.Button("Send", variant="primary", elem_id="chat-button")
                            clear = gr.Button("New conversation")
                reply = gr.Audio(label="Reply", streaming=True, autoplay=True, interactive=False, elem_id="chat-audio")
                chat_status = gr.Markdown(elem_id="chat-status")
                turns = gr.State([])
                sent = send.click(self.chat, [turns, recording, typed, recognizer, reply_voice],
                                  [chatbot, reply, chat_status, turns], api_name="chat", concurrency_id="pipeline")
                sent.success(lambda: (None, ""), None, [recording, typed], queue=False, api_visibility="private")
                clear.click(lambda: ([], [], ""), None, [chatbot, turns, chat_status], queue=False,
                            api_visibility="private")
        self.blocks = blocks
        return blocks

    def launch(self) -> str:
        """Start serving on ``cfg.host:cfg.port`` from a background thread; returns the local URL."""
        cfg = self.cfg
        blocks = self.blocks or self.build()
        blocks.queue(default_concurrency_limit=cfg.queue.concurrency, max_size=cfg.queue.max_size)
        blocks.launch(server_name=cfg.host, server_port=cfg.port, share=cfg.share, prevent_thread_lock=True,
                      max_file_size=int(cfg.limits.max_upload_mb * 1024 * 1024), show_error=False, quiet=True,
                      enable_monitoring=False, ssr_mode=False, mcp_server=False, theme=THEME,
                      footer_links=["api", "settings"])
        return blocks.local_url

    def close(self) -> None:
        if self.blocks is not None:
            self.blocks.close()
        self.files.close()
