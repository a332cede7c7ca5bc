"""The one public pipeline: text (+ a voice) -> phonemes -> LM audio tokens -> codec decoder -> audio.

    from speechlm import Pipeline
    tts = Pipeline.from_pretrained("default")            # or a pipeline folder
    result = tts.synthesize("Hello there.", voice="alice", seed=0)   # preset, reference audio, or None
    for chunk in tts.stream("Hello there."): ...          # numpy float32 chunks as tokens arrive

A pipeline folder (written by :meth:`Pipeline.save_pretrained`, or ``speechlm pipeline build``)::

    pipeline.json                       format version, codec identity, tokenizer hash, language, defaults
    codec/  lm/  tokenizer.json         the parts (safetensors + JSON only; nothing is unpickled)
    voices.safetensors  voices.json     voice presets: prompt codes [K, T] + transcript + speaker
    MODEL_CARD.md

``speechlm/synthesis/bundle.py`` documents every field and the checks made when loading it. Long text is split at sentence boundaries
(``speechlm/synthesis/sentences.py``), further where a sentence would not fit the LM's context, and
the pieces are generated in left-padded batches, then joined with short fades and pauses; the
result lists every piece with its sample span, including pieces with nothing speakable (skipped).
Prompts are built by the same code as the training sequences (``SequenceBuilder.tts_prompt``).

Seeds: the pieces of a text are generated in batches of up to ``batch_size``; a batch uses the
seed ``seed + index of its first piece``, and pieces with other seeds or sampling options never
share a batch. One generator serves a whole batch, so a piece's tokens depend on its batchmates:
the same texts, voices, seeds and batch size give the same audio. With ``batch_size=1`` piece ``i``
uses ``seed + i``, as :meth:`Pipeline.stream` does, so both give the same tokens and the same audio.
"""

from __future__ import annotations

import dataclasses
import shutil
import time
import warnings
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Iterator

import numpy as np
import torch

from speechlm.codec.base import Codec
from speechlm.codec.streaming import StreamingDecoder
from speechlm.errors import SpeechLMError
from speechlm.io import write_json
from speechlm.lm.data import SequenceBuilder
from speechlm.lm.generate import AlignmentGuard, GenerationConfig, generate, length_guard, stream_frames
from speechlm.lm.layout import TokenLayout
from speechlm.lm.model import SpeechLM
from speechlm.lm.rerank import transcript_nll
from speechlm.lm.sampling import SamplingConfig
from speechlm.synthesis import bundle
from speechlm.synthesis.bundle import SynthesisDefaults, Voice
from speechlm.synthesis.results import Fader, Request, Segment, SynthesisResult, Timings, VoiceInfo, fade, silence
from speechlm.synthesis.sentences import split_sentences, split_text
from speechlm.synthesis.voice import AUDIO_SUFFIXES, generate_text, read_reference
from speechlm.text.frontend import TextFrontend
from speechlm.text.normalize import NormalizedText, TextError, normalize_checked
from speechlm.text.tokenizer import TextTokenizer

BUNDLED = Path(__file__).resolve().parent / "pretrained"
# ``phonemes``: the text is already the front-end's output (a chat reply), so it is not normalized again
OPTIONS = ("temperature", "top_k", "top_p", "repetition_window", "cfg_scale", "candidates", "min_frames", "max_frames",
           "phonemes")


@dataclass
class _Plan:
    """One piece of one request: its segment, and its prompt unless it is skipped."""

    request: int
    index: int  # position among the request's segments (seeds derive from it)
    segment: Segment
    prompt: torch.Tensor | None = None  # [K, S]
    uncond: torch.Tensor | None = None  # [K, S'] the same voice prompt without the text (classifier-free guidance)
    ids: list[int] = dataclasses.field(default_factory=list)  # the piece's phoneme ids
    min_frames: int = 1
    max_frames: int = 1
    codes: torch.Tensor | None = None  # [K, T] once generated
    speaker: torch.Tensor | None = None  # the voice embedding a voice-conditioned codec decodes with
    audio: np.ndarray | None = None
    ready_at: float = 0.0


class Pipeline:
    """Codec + LM + text front-end + tokenizer + voice presets, checked to belong together."""

    def __init__(self, codec: Codec, lm: SpeechLM, layout: TokenLayout, tokenizer: TextTokenizer,
                 frontend: TextFrontend, voices: dict[str, Voice] | None = None,
                 defaults: SynthesisDefaults | None = None, default_voice: str | None = None,
                 lm_meta: dict | None = None):
        bundle.check_parts("pipeline", codec, layout, tokenizer, None, frontend.symbol_kind)
        self.codec, self.lm, self.layout, self.tokenizer, self.frontend = codec, lm.eval(), layout, tokenizer, frontend
        self.voices: dict[str, Voice] = dict(voices or {})
        for v in self.voices.values():
            self.voice_embedding(v)
        self.defaults = defaults or SynthesisDefaults()
        if default_voice is not None and default_voice not in self.voices:
            raise SpeechLMError(f"default voice {default_voice!r} is not a preset ({self._voice_names()})")
        self.default_voice = default_voice
        self.lm_meta = lm_meta  # lm.json of a loaded LM (preset name, training step), kept when saving
        self.builder = SequenceBuilder(layout)
        self._lm_run: torch.nn.Module = self.lm  # what generation calls: the LM, quantized and/or compiled
        self.quantize: str | None = None
        self.compiled = False
        self._lm_dir: Path | None = None  # where a loaded LM came from: a quantized one is saved from there

    # ------------------------------------------------------------------------------ loading, saving

    @classmethod
    def from_pretrained(cls, path_or_name: str | Path = "default", *, device: str = "cpu",
                        quantize: str | None = "auto", compile: bool = False) -> "Pipeline":
        """Load a pipeline folder (``"default"``: the bundled one).

        ``quantize``: ``"auto"`` applies the folder's ``defaults.cpu_quantize`` on CPU (int8 unless the
        folder says otherwise: ``eval/bench_pipeline.py`` measured it to pay), ``"int8"`` forces dynamic
        int8 quantization of the LM's linear layers, None keeps fp32. ``compile`` runs the LM through
        ``torch.compile`` (measured: slow to compile, less gain than int8; off by default).
        """
        path = _resolve(path_or_name)
        m = bundle.read_manifest(path)
        codec = bundle.load_codec_entry(path, m["codec"])
        lm, layout, lm_meta = bundle.load_lm_checked(path / m["lm"].get("folder", "lm"), codec.info)
        tokenizer = TextTokenizer.load(path / m["tokenizer"].get("file", bundle.TOKENIZER))
        frontend = TextFrontend(m["frontend"].get("language", "en"), m["frontend"].get("backend", "auto"))
        bundle.check_parts(str(path), codec, layout, tokenizer, m["tokenizer"].get("hash"), frontend.symbol_kind)
        voices = bundle.load_voices(path, codec.info, codec.voice_encoder_hash)
        if m.get("default_voice") is not None and m["default_voice"] not in voices:
            raise bundle.BundleError(f"{path / bundle.MANIFEST}: default_voice {m['default_voice']!r} is not in "
                                     f"{bundle.VOICES_INDEX}")
        pipe = cls(codec, lm, layout, tokenizer, frontend, voices, bundle.defaults_from(m, path), m.get("default_voice"),
                   lm_meta)
        pipe._lm_dir = path / m["lm"].get("folder", "lm")
        if quantize == "auto":
            quantize = pipe.defaults.cpu_quantize if torch.device(device).type == "cpu" else None
        return pipe.to(device).optimize(quantize, compile)

    def save_pretrained(self, out_dir: str | Path, note: str = "") -> Path:
        """Write the pipeline folder (layout in ``speechlm/synthesis/bundle.py``) atomically."""
        if self.quantize and not (self._lm_dir and (self._lm_dir / "lm.json").exists()):
            raise SpeechLMError("this pipeline's LM was quantized and its float weights are not on disk any more; "
                                "save a pipeline loaded with quantize=None")
        from speechlm.codec.neural import NeuralCodec

        manifest = {
            "format": bundle.FORMAT, "format_version": bundle.FORMAT_VERSION,
            "codec": bundle.codec_entry(self.codec),
            "lm": {"folder": "lm"},
            "tokenizer": {"file": bundle.TOKENIZER, "hash": self.tokenizer.content_hash},
            "frontend": {"language": self.frontend.language, "backend": self.frontend.backend},
            "voices": sorted(self.voices), "default_voice": self.default_voice,
            "defaults": dataclasses.asdict(self.defaults),
        }

        def write(tmp: Path) -> None:
            if isinstance(self.codec, NeuralCodec):
                self.codec.save_pretrained(tmp / "codec")
            if self.quantize:  # the float weights it was loaded from
                shutil.copytree(self._lm_dir, tmp / "lm")
            else:
                bundle.save_lm(self.lm, self.layout, self.codec.info, tmp / "lm", self.lm_meta)
            self.tokenizer.save(tmp / bundle.TOKENIZER)
            bundle.save_voices(tmp, self.voices, self.codec.voice_encoder_hash)
            bundle.write_card(tmp, bundle.model_card(manifest, self.lm, self.voices, note))
            write_json(tmp / bundle.MANIFEST, manifest)

        return bundle.write_folder(out_dir, write)

    def to(self, device: str | torch.device) -> "Pipeline":
        self.lm.to(device)
        if isinstance(self.codec, torch.nn.Module):
            self.codec.to(device)
        return self

    def optimize(self, quantize: str | None = None, compile: bool = False) -> "Pipeline":
        """Dynamic int8 quantization of the LM's linear layers (CPU) and/or ``torch.compile`` of the LM."""
        if quantize not in (None, "int8"):
            raise SpeechLMError(f"quantize must be None, 'int8' or (when loading) 'auto', got {quantize!r}")
        if quantize == "int8" and not self.quantize:
            if next(self.lm.parameters()).device.type != "cpu":
                raise SpeechLMError("dynamic int8 quantization runs on CPU only")
            from torch.ao.quantization import quantize_dynamic

            with warnings.catch_warnings():  # torch.ao.quantization points to torchao, which we do not depend on
                warnings.simplefilter("ignore", DeprecationWarning)
                quantize_dynamic(self.lm, {torch.nn.Linear}, dtype=torch.qint8, inplace=True)
            self.quantize = "int8"
        if compile and not self.compiled:
            self._lm_run = torch.compile(self.lm, dynamic=True)
            self.compiled = True
        return self

    @property
    def sample_rate(self) -> int:
        return self.codec.sample_rate

    # ------------------------------------------------------------------------------ voices

    def _voice_names(self) -> str:
        return "available: " + (", ".join(sorted(self.voices)) if self.voices else "none in this pipeline")

    def add_voice(self, name: str, audio: str | Path | np.ndarray, sample_rate: int | None = None,
                  text: str | None = None, speaker: str = "") -> Voice:
        """Make a preset from reference audio (a file, or samples at ``sample_rate``); saved with the pipeline."""
        voice = self.voice_from_audio(audio, sample_rate, text, speaker)
        voice.name, voice.transcript_source = name, "preset"
        self.voices[name] = voice
        return voice

    def voice_from_audio(self, audio: str | Path | np.ndarray, sample_rate: int | None = None,
                         text: str | None = None, speaker: str = "") -> Voice:
        """A voice prompt from reference audio; without ``text`` its transcript comes from the LM's ``asr`` task."""
        name = ""
        if isinstance(audio, (str, Path)):
            name = str(audio)
            audio, sample_rate = read_reference(audio)
        elif sample_rate is None:
            raise SpeechLMError("reference audio given as samples needs its sample_rate")
        wav = np.atleast_2d(np.asarray(audio, np.float32))  # [C, L]
        # a voice prompt may take at most half of the LM's context, the rest is for the text and its audio
        frames = min(int(self.defaults.max_voice_seconds * self.codec.frame_rate), self._voice_budget() - 8)
        seconds, cap = wav.shape[-1] / sample_rate, frames / self.codec.frame_rate
        if seconds > cap:
            if text is not None:
                raise SpeechLMError(f"{name or 'reference audio'} is {seconds:.1f} s; with a transcript it must be at "
                                    f"most {cap:g} s (the transcript has to match the audio). Cut it, or leave the "
                                    f"transcript out to use (and transcribe) its first {cap:g} s")
            wav = wav[:, : int(cap * sample_rate)]
        codes = self.codec.encode(wav[None], sample_rate)[0].cpu()
        embedding = self.codec.speaker_embedding(wav[None], sample_rate)  # None unless voice-conditioned
        embedding = None if embedding is None else embedding.cpu()
        if text is not None:
            return Voice(codes, self.frontend.process([text])[0].phonemes, speaker, text, name, "given", embedding)
        return Voice(codes, self.tokenizer.decode(self._transcribe_codes(codes)), speaker, "", name, "asr", embedding)

    def voice_embedding(self, voice: Voice | None) -> torch.Tensor | None:
        """The voice embedding the codec decodes ``voice`` with: None for a codec that takes none; for a voice
        without one (a preset saved with another codec), taken from its prompt decoded, and kept on it."""
        if voice is None or not self.codec.voice_conditioned:
            return None
        if voice.embedding is None or tuple(voice.embedding.shape) != (1, self.codec.speaker_dim):
            audio = self.codec.decode(voice.codes[None])
            voice.embedding = self.codec.speaker_embedding(audio, self.sample_rate).cpu()
        return voice.embedding

    def resolve_voice(self, voice=None, voice_text: str | None = None) -> Voice | None:
        """``voice``: None (the default preset, if any), a preset name, a reference audio path, or a Voice."""
        if voice is None:
            if voice_text is not None:
                raise SpeechLMError("voice_text is the transcript of a reference audio file; give the file too")
            return self.voices.get(self.default_voice) if self.default_voice else None
        if isinstance(voice, Voice):
            return voice
        if isinstance(voice, str) and voice in self.voices:
            if voice_text is not None:
                raise SpeechLMError(f"voice {voice!r} is a preset with its own transcript; voice_text is for "
                                    "reference audio files")
            return self.voices[voice]
        path = Path(voice)
        if not path.exists() and path.suffix.lower() not in AUDIO_SUFFIXES:
            raise SpeechLMError(f"unknown voice preset {str(voice)!r} ({self._voice_names()}); or give the path of a "
                                "reference audio file")
        return self.voice_from_audio(path, text=voice_text)

    def transcribe(self, audio: np.ndarray, sample_rate: int) -> str:
        """Phonemes of ``audio`` by the LM's ``asr`` task (greedy)."""
        return self.tokenizer.decode(self._transcribe_codes(self.codec.encode(audio, sample_rate)[0].cpu()))

    def chat(self, text: str, max_tokens: int = 200, phonemes: bool = False) -> str:
        """The LM's ``chat`` reply to ``text`` (greedy), as phonemes: speak it with ``synthesize(reply, phonemes=True)``.

        ``phonemes`` says ``text`` is already phonemes (the ``asr`` transcript of a spoken question),
        read as it is rather than normalized and phonemized again.
        The default model learned a closed domain (:mod:`speechlm.corpus.dialogues`: small-number
        arithmetic, counting, days, months, letters, courtesies); outside it, expect nonsense.
        """
        if phonemes:
            if not text.strip():
                raise TextError("chat: the question is empty")
            question = text
        else:
            question = self.frontend.process([text])[0].phonemes  # TextError if nothing speakable
        prompt = self.builder.chat_prompt(self.tokenizer.encode(question), self.frontend.language)
        return self.tokenizer.decode(generate_text(self._lm_run, self.layout, prompt, max_tokens))

    def _voice_budget(self) -> int:
        return self.lm.cfg.max_seq_len // 2 - self.layout.n_codebooks

    def _transcribe_codes(self, codes: torch.Tensor) -> list[int]:
        prompt = self.builder.asr_prompt(codes, self.frontend.language)
        seconds = codes.shape[-1] / self.codec.frame_rate
        # 25 symbols/s is well above speech's phoneme rate; the budget keeps the voice prompt in its half
        budget = self._voice_budget() - prompt.shape[-1]
        return generate_text(self._lm_run, self.layout, prompt, max_tokens=min(int(25 * seconds) + 8, budget))

    # ------------------------------------------------------------------------------ planning

    def _frames(self, n_tokens: int, opts: dict) -> tuple[int, int]:
        d = self.defaults
        lo, hi = length_guard(n_tokens, self.codec.frame_rate, d.min_seconds_per_token, d.max_seconds_per_token,
                              d.slack_seconds)
        if opts.get("max_frames") is not None:
            hi = int(opts["max_frames"])
            lo = min(lo, hi)
        if opts.get("min_frames") is not None:
            lo = int(opts["min_frames"])
        if not 1 <= lo <= hi:
            raise SpeechLMError(f"need 1 <= min_frames <= max_frames, got {lo} and {hi}")
        return lo, hi

    def _plan(self, request: int, text: str, voice: Voice | None, opts: dict) -> list[_Plan]:
        """Split ``text`` into pieces that fit the LM's context, each with its prompt and frame limits."""
        if not isinstance(text, str):
            raise TextError(f"text must be a str, got {type(text).__name__}")
        voice_ids = self.tokenizer.encode(voice.phonemes) if voice else None
        k, limit = self.layout.n_codebooks, self.lm.cfg.max_seq_len
        analysed: dict[str, tuple] = {}

        def analyse(pieces: list[str]) -> None:
            new = [p for p in dict.fromkeys(pieces) if p not in analysed]
            if opts.get("phonemes"):
                norm = [NormalizedText(p.strip(), [], self.frontend.language) for p in new]
                phones = [n.text for n in norm]
            else:
                norm = [self.frontend.normalize_with_report(p) for p in new]
                phones = self.frontend.phonemize([n.text if n.is_speakable else "" for n in norm])
            for p, n, ph in zip(new, norm, phones):
                analysed[p] = (n, ph, self.tokenizer.encode(ph))

        def prompt_of(ids: list[int]) -> torch.Tensor:
            return self.builder.tts_prompt(ids, self.frontend.language, voice_ids, voice.codes if voice else None)

        def fits(piece: str) -> bool:
            analyse([piece])
            norm, _, ids = analysed[piece]
            return not norm.is_speakable or prompt_of(ids).shape[-1] + self._frames(len(ids), opts)[1] + k <= limit

        analyse([text[a:b] for a, b in split_sentences(text)])  # one phonemizer call for most of the work
        plans = []
        for i, piece in enumerate(split_text(text, fits)):
            norm, phonemes, ids = analysed[piece.text]
            seg = Segment(piece.sentence, piece.text, (piece.start, piece.end), norm.text, phonemes)
            plan = _Plan(request, i, seg, speaker=self.voice_embedding(voice))
            if not norm.is_speakable:
                seg.status = "skipped (nothing speakable)"
            else:
                if not fits(piece.text):
                    raise SpeechLMError(f"{piece.text!r} does not fit the LM's {limit} steps even alone; the voice "
                                        f"prompt takes {prompt_of([]).shape[-1]} of them: use a shorter voice")
                plan.prompt, plan.uncond, plan.ids = prompt_of(ids), prompt_of([]), ids
                plan.min_frames, plan.max_frames = self._frames(len(ids), opts)
            plans.append(plan)
        if all(p.prompt is None for p in plans):
            normalize_checked(text, self.frontend.language)  # raises the front-end's TextError
            raise TextError(f"text {text!r:.100} has nothing speakable")
        return plans

    def alignment_guard(self) -> AlignmentGuard | None:
        """The ``<eos>`` guard of an LM trained with guided attention: its last guided layer's first head."""
        guided, d = (self.lm_meta or {}).get("guided_attention"), self.defaults
        if not guided or not guided.get("layers") or d.align_end_seconds <= 0:
            return None
        return AlignmentGuard(max(guided["layers"]), 0, d.align_end_tokens,
                              max(1, round(d.align_end_seconds * self.codec.frame_rate)))

    def _option(self, opts: dict, name: str):
        return opts[name] if opts.get(name) is not None else getattr(self.defaults, name)

    def _sampling(self, opts: dict) -> SamplingConfig:
        get = partial(self._option, opts)
        return SamplingConfig(temperature=get("temperature"), top_k=get("top_k"), top_p=get("top_p"),
                              repetition_window=get("repetition_window"),
                              repetition_ratio=self.defaults.repetition_ratio)

    def _check_options(self, opts: dict) -> None:
        unknown = set(opts) - set(OPTIONS)
        if unknown:
            raise SpeechLMError(f"unknown synthesis option(s) {sorted(unknown)}; known: {', '.join(OPTIONS)}")
        scale, n = self._option(opts, "cfg_scale"), self._option(opts, "candidates")
        if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not 0 <= scale < float("inf"):
            raise SpeechLMError(f"cfg_scale must be a number >= 0 (1 = off), got {scale!r}")
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise SpeechLMError(f"candidates must be a whole number >= 1 (1 = no reranking), got {n!r}")

    def _generation(self, plans: list[_Plan], opts: dict, seed: int | None
                    ) -> tuple[GenerationConfig, list[torch.Tensor] | None]:
        """The generation settings of ``plans`` (one batch) and, with guidance on, their unconditional prompts."""
        scale = float(self._option(opts, "cfg_scale"))
        cfg = GenerationConfig(min(p.min_frames for p in plans), max(p.max_frames for p in plans),
                               self._sampling(opts), seed, self.alignment_guard(), cfg_scale=scale)
        return cfg, ([p.uncond for p in plans] if scale != 1.0 else None)

    # ------------------------------------------------------------------------------ synthesis

    def synthesize(self, text: str, voice=None, *, voice_text: str | None = None, seed: int | None = 0,
                   batch_size: int = 8, temperature: float | None = None, top_k: int | None = None,
                   top_p: float | None = None, repetition_window: int | None = None, cfg_scale: float | None = None,
                   candidates: int | None = None, min_frames: int | None = None, max_frames: int | None = None,
                   phonemes: bool = False) -> SynthesisResult:
        """Speech for ``text``. ``cfg_scale``: classifier-free guidance (1 = off; see ``speechlm.lm.generate``);
        ``candidates``: takes per piece, the best kept (``speechlm.lm.rerank``); ``min_frames``/``max_frames``
        replace the length guard (tests, benchmarks); ``phonemes`` says ``text`` is already phonemes (e.g.
        :meth:`chat`'s reply)."""
        opts = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "repetition_window": repetition_window,
                "cfg_scale": cfg_scale, "candidates": candidates, "min_frames": min_frames, "max_frames": max_frames,
                "phonemes": phonemes}
        result = self.synthesize_batch([Request(text, voice, voice_text, seed, options=opts)], batch_size)[0]
        if isinstance(result, Exception):
            raise result
        return result

    def synthesize_batch(self, requests: list[Request], batch_size: int = 8
                         ) -> list[SynthesisResult | SpeechLMError]:
        """Results in request order; a request that fails gets its error in its place, the others go on."""
        t0 = time.perf_counter()
        out: list = [None] * len(requests)
        plans: dict[int, list[_Plan]] = {}
        voices: dict[tuple, Voice | None] = {}  # one reference file is read (and transcribed) once per batch
        voice_of: dict[int, Voice | None] = {}
        for r, req in enumerate(requests):
            try:
                self._check_options(req.options)
                key = (id(req.voice) if isinstance(req.voice, Voice) else str(req.voice), req.voice_text)
                if key not in voices:
                    voices[key] = self.resolve_voice(req.voice, req.voice_text)
                voice_of[r] = voices[key]
                plans[r] = self._plan(r, req.text, voice_of[r], req.options)
            except SpeechLMError as e:
                out[r] = e
        # similar lengths together (little padding); pieces with another seed or sampling never share a batch
        todo = sorted((p for ps in plans.values() for p in ps if p.prompt is not None),
                      key=lambda p: (_batch_key(requests[p.request]), p.prompt.shape[-1] + p.max_frames,
                                     p.request, p.index))
        for batch in self._batches(todo, batch_size, requests):
            self._generate(batch, requests)
        for r, ps in plans.items():
            failed = next((p.segment.status for p in ps if p.segment.status.startswith("error")), None)
            out[r] = SpeechLMError(failed) if failed else self._assemble(requests[r], ps, voice_of[r], t0)
        return out

    def _batches(self, todo: list[_Plan], batch_size: int, requests: list[Request]) -> Iterator[list[_Plan]]:
        """Consecutive runs of at most ``batch_size`` pieces with the same seed and sampling options whose
        padded prompt + frames fit the context."""
        k, limit = self.layout.n_codebooks, self.lm.cfg.max_seq_len
        batch: list[_Plan] = []
        for p in todo:
            grown = batch + [p]
            width = max(q.prompt.shape[-1] for q in grown) + max(q.max_frames for q in grown) + k
            other = batch and _batch_key(requests[p.request]) != _batch_key(requests[batch[0].request])
            if batch and (len(grown) > batch_size or width > limit or other):
                yield batch
                grown = [p]
            batch = grown
        if batch:
            yield batch

    def _generate(self, batch: list[_Plan], requests: list[Request]) -> None:
        """Tokens, then audio, for each piece of ``batch``; a piece that fails gets an error status."""
        self._generate_codes(batch, requests)
        for p in batch:
            if p.codes is None:
                continue
            wav = self.codec.decode(p.codes[None], speaker=p.speaker)[0].float().cpu().numpy()
            p.audio = fade(wav, round(self.defaults.fade * self.sample_rate))
            p.ready_at = time.perf_counter()

    def _generate_codes(self, batch: list[_Plan], requests: list[Request]) -> None:
        first = batch[0]
        seed, opts = requests[first.request].seed, requests[first.request].options
        n = int(self._option(opts, "candidates"))
        try:
            cfg, uncond = self._generation(batch, opts, None if seed is None else seed + first.index)
            repeat = lambda xs: [x for x in xs for _ in range(n)]  # noqa: E731  (each piece's takes side by side)
            codes = generate(self._lm_run, self.layout, repeat([p.prompt for p in batch]), cfg,
                             repeat(uncond) if uncond is not None else None)
            if n > 1:
                codes = self._best_takes(batch, codes, n)
        except (RuntimeError, ValueError) as e:
            if len(batch) > 1:  # find the one piece that fails; the others still get their tokens
                for p in batch:
                    self._generate_codes([p], requests)
                return
            first.segment.status = f"error: generation failed: {str(e).splitlines()[0]}"
            return
        for p, c in zip(batch, codes):
            # the batch ran to its longest member's guard; each piece keeps to its own
            p.codes = c[:, : p.max_frames]
            p.segment.frames = p.codes.shape[-1]
            p.segment.hit_max_frames = p.codes.shape[-1] >= p.max_frames

    def _best_takes(self, batch: list[_Plan], codes: list[torch.Tensor], n: int) -> list[torch.Tensor]:
        """Per piece, the take of ``n`` the LM's ``asr`` task reads its phonemes back from best (``rerank.py``)."""
        takes = [codes[i * n + j][:, : p.max_frames] for i, p in enumerate(batch) for j in range(n)]
        nll = transcript_nll(self._lm_run, self.layout, takes, [p.ids for p in batch for _ in range(n)],
                             self.frontend.language).view(len(batch), n)
        return [takes[i * n + int(nll[i].argmin())] for i in range(len(batch))]

    def _pause(self, prev: _Plan | None, plan: _Plan) -> np.ndarray:
        if prev is None:
            return np.zeros(0, np.float32)
        gap = self.defaults.sentence_pause if plan.segment.sentence != prev.segment.sentence else self.defaults.piece_pause
        return silence(gap, self.sample_rate)

    def _assemble(self, req: Request, plans: list[_Plan], voice: Voice | None, t0: float) -> SynthesisResult:
        parts, pos, prev = [], 0, None
        for p in plans:
            if p.audio is not None:
                gap = self._pause(prev, p)
                parts += [gap, p.audio]
                p.segment.sample_span = (pos + len(gap), pos + len(gap) + len(p.audio))
                pos, prev = p.segment.sample_span[1], p
            else:
                p.segment.sample_span = (pos, pos)
        audio = np.concatenate(parts) if parts else np.zeros(0, np.float32)
        done = [p for p in plans if p.audio is not None]
        tokens = torch.cat([p.codes for p in done], dim=-1)
        timings = Timings(done[0].ready_at - t0, max(p.ready_at for p in done) - t0, len(audio) / self.sample_rate)
        return SynthesisResult(audio, self.sample_rate, tokens, req.text, " ".join(p.segment.phonemes for p in done),
                               [p.segment for p in plans], timings, _voice_info(voice), req.seed)

    def stream(self, text: str, voice=None, *, voice_text: str | None = None, seed: int | None = 0,
               first_chunk_frames: int = 1, chunk_frames: int = 8, lookahead: int | None = None,
               **options) -> Iterator[np.ndarray]:
        """Audio chunks (float32) as the LM produces frames; piece by piece, joined as in :meth:`synthesize`.

        The first chunk is decoded as soon as ``first_chunk_frames`` frames are final; later chunks
        every ``chunk_frames``. ``lookahead`` (frames) trades exactness for latency; the default keeps
        the decoder's full context, so the audio equals :meth:`synthesize` with ``batch_size=1``.
        """
        self._check_options(options)
        plans = self._plan(0, text, self.resolve_voice(voice, voice_text), options)
        n_fade = round(self.defaults.fade * self.sample_rate)
        prev = None
        for p in plans:
            if p.prompt is None:
                continue
            gap = self._pause(prev, p)
            if len(gap):
                yield gap
            prev = p
            decoder = StreamingDecoder(self.codec, lookahead, speaker=p.speaker)
            fader, pending, emitted = Fader(n_fade), [], False
            for frame in self._piece_frames(p, Request(text, voice, voice_text, seed, options=options)):
                pending.append(frame)
                if len(pending) >= (chunk_frames if emitted else first_chunk_frames):
                    chunk = fader.push(decoder.push(torch.stack(pending, -1)[None])[0].float().cpu().numpy())
                    pending = []
                    if len(chunk):
                        emitted = True
                        yield chunk
            if pending:
                chunk = fader.push(decoder.push(torch.stack(pending, -1)[None])[0].float().cpu().numpy())
                if len(chunk):
                    yield chunk
            tail = fader.finish(decoder.flush()[0].float().cpu().numpy())
            if len(tail):
                yield tail

    def _piece_frames(self, plan: _Plan, request: Request) -> Iterator[torch.Tensor]:
        """The frames ``[K]`` of one piece as :meth:`stream` gets them: as the LM makes them, or with
        ``candidates`` > 1 all at once when the best take is known (only then can it be chosen)."""
        opts = request.options
        if int(self._option(opts, "candidates")) > 1:
            self._generate_codes([plan], [request])
            if plan.codes is None:
                raise SpeechLMError(plan.segment.status)
            yield from plan.codes.unbind(-1)
            return
        cfg, uncond = self._generation([plan], opts, None if request.seed is None else request.seed + plan.index)
        for ready in stream_frames(self._lm_run, self.layout, [plan.prompt], cfg, uncond):
            if ready[0] is not None:
                yield ready[0]

    def __repr__(self) -> str:
        info, cfg = self.codec.info, self.lm.cfg
        return (f"Pipeline(codec={info.name} {info.n_codebooks}x{info.codebook_size} @ {info.frame_rate:g} Hz, "
                f"lm={cfg.n_layers}x{cfg.dim}, language={self.frontend.language!r}, voices={sorted(self.voices)}, "
                f"quantize={self.quantize}, compiled={self.compiled})")


def _batch_key(req: Request) -> tuple:
    """Seed and sampling options as a sortable key (frame limits are per piece, so they do not count)."""
    return (str(req.seed),) + tuple(str(req.options.get(k)) for k in OPTIONS if k not in ("min_frames", "max_frames"))


def _voice_info(voice: Voice | None) -> VoiceInfo:
    if voice is None:
        return VoiceInfo("", "", "none")
    return VoiceInfo(voice.name, voice.phonemes, voice.transcript_source)


def _resolve(path_or_name: str | Path) -> Path:
    if str(path_or_name) == "default":
        if not (BUNDLED / bundle.MANIFEST).exists():
            raise SpeechLMError(f"no bundled pipeline at {BUNDLED} yet. Pass a pipeline folder instead (--model DIR): "
                                "one written by Pipeline.save_pretrained, or assembled from a trained codec, LM and "
                                "tokenizer with `speechlm pipeline build`")
        return BUNDLED
    path = Path(path_or_name)
    if not path.is_dir():
        raise SpeechLMError(f"{path_or_name}: not 'default' or a pipeline folder (a folder with {bundle.MANIFEST})")
    return path
