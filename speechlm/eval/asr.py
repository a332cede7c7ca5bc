"""ASR backends that turn synthesized speech back into text for WER/CER: pocketsphinx, or a local Whisper."""

from __future__ import annotations

import functools
import importlib.util
from abc import ABC, abstractmethod
from pathlib import Path

import numpy as np

from speechlm.errors import SpeechLMError

ASR_SAMPLE_RATE = 16000  # both pocketsphinx's bundled model and Whisper expect 16 kHz input
ASR_BACKENDS = ("pocketsphinx", "whisper")


class ASRError(SpeechLMError):
    """An ASR backend that cannot be built as asked (missing library, missing model, wrong language)."""


def _to_rate(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    wav = np.asarray(wav, dtype=np.float32)
    if wav.ndim != 1:
        raise ValueError(f"expected mono audio [T], got shape {wav.shape}")
    if sample_rate != ASR_SAMPLE_RATE:
        import librosa  # deferred: slow import, and callers usually pass 16 kHz already

        wav = librosa.resample(wav, orig_sr=sample_rate, target_sr=ASR_SAMPLE_RATE, res_type="soxr_hq")
    return wav


class ASRBackend(ABC):
    """Speech -> text. Implementations hold their model; build one per process (see :func:`get_asr`)."""

    name: str = "asr"

    @abstractmethod
    def _transcribe16k(self, wav: np.ndarray) -> str:
        """Transcribe mono float32 audio at 16 kHz."""

    def transcribe(self, wav: np.ndarray, sample_rate: int) -> str:
        """Transcribe mono float audio ``[T]`` at ``sample_rate``; returns "" when nothing is recognized."""
        wav = _to_rate(wav, sample_rate)
        if wav.size == 0:
            return ""
        return self._transcribe16k(wav).strip()

    def describe(self) -> str:
        return self.name


class PocketSphinxASR(ASRBackend):
    """CMU pocketsphinx with the US-English acoustic model, dictionary and LM it ships (fully offline).

    ``words`` turns it into an isolated-word recognizer: a JSGF grammar that accepts exactly one of
    those words (e.g. the ten digits, for FSDD), in place of the open-vocabulary language model.
    """

    name = "pocketsphinx"

    def __init__(self, language: str = "en", words: list[str] | None = None, **decoder_options):
        if language.split("-")[0].lower() != "en":
            raise ASRError(f"pocketsphinx ships an English model only; for language {language!r} use "
                           "--asr whisper with --whisper_model PATH")
        from pocketsphinx import Decoder

        # Building the decoder loads the model (~0.5 s), so one instance is reused for every utterance.
        self.decoder = Decoder(samprate=ASR_SAMPLE_RATE, loglevel="FATAL", **decoder_options)
        if words:
            unknown = [w for w in words if not self.decoder.lookup_word(w.lower())]
            if unknown:
                raise ASRError(f"pocketsphinx's dictionary has no pronunciation for {unknown}")
            self.name = f"pocketsphinx, one of {len(words)} words"
            self.decoder.add_jsgf_string("words", "#JSGF V1.0;\ngrammar words;\npublic <word> = "
                                         + " | ".join(w.lower() for w in words) + ";\n")
            self.decoder.activate_search("words")

    def _transcribe16k(self, wav: np.ndarray) -> str:
        pcm = (np.clip(wav, -1.0, 1.0) * 32767).astype(np.int16)
        # The feature front-end adapts across utterances (cepstral mean and more: resetting the CMN vector
        # alone is not enough), which made a clip's transcript, and so a WER, depend on what was heard
        # before it. Resetting it makes every utterance decode as with a fresh decoder (~0.1 ms).
        self.decoder.reinit_feat()
        self.decoder.start_utt()
        self.decoder.process_raw(pcm.tobytes(), no_search=False, full_utt=True)
        self.decoder.end_utt()
        hyp = self.decoder.hyp()
        return hyp.hypstr if hyp is not None else ""


def whisper_libraries() -> list[str]:
    """The Whisper implementations importable here, in the order they are preferred."""
    return [m for m in ("faster_whisper", "whisper", "transformers") if importlib.util.find_spec(m) is not None]


def _whisper_kind(path: Path) -> str:
    """Which library can read the model at ``path``: decided by its files, never by trying a download."""
    if path.is_file() and path.suffix == ".pt":
        return "whisper"  # an openai-whisper checkpoint such as small.en.pt
    if path.is_dir() and (path / "model.bin").exists():
        return "faster_whisper"  # a CTranslate2 conversion
    if path.is_dir() and (path / "config.json").exists():
        return "transformers"  # a Hugging Face snapshot (openai/whisper-*)
    raise ASRError(f"{path}: not a Whisper model: expected an openai-whisper .pt file, a faster-whisper "
                   "folder (model.bin) or a transformers folder (config.json)")


class WhisperASR(ASRBackend):
    """Whisper from a local model path, through whichever library reads that model. Never downloads."""

    name = "whisper"

    def __init__(self, model_path: str | Path, language: str = "en", device: str = "cpu"):
        path = Path(model_path)
        if not path.exists():
            raise ASRError(f"{path}: Whisper model not found (give a local path; nothing is downloaded)")
        self.kind = _whisper_kind(path)
        if importlib.util.find_spec(self.kind) is None:
            have = ", ".join(whisper_libraries()) or "none"
            raise ASRError(f"{path} needs the {self.kind!r} package, which is not installed "
                           f"(Whisper libraries available: {have})")
        self.path, self.language = path, language.split("-")[0].lower()
        if self.kind == "faster_whisper":
            from faster_whisper import WhisperModel

            compute = "int8" if device == "cpu" else "float16"
            self.model = WhisperModel(str(path), device=device, compute_type=compute, local_files_only=True)
        elif self.kind == "whisper":
            import whisper

            self.model = whisper.load_model(str(path), device=device)
        else:
            from transformers import pipeline

            self.model = pipeline("automatic-speech-recognition", model=str(path), device=device,
                                  model_kwargs={"local_files_only": True})

    def _transcribe16k(self, wav: np.ndarray) -> str:
        if self.kind == "faster_whisper":
            segments, _ = self.model.transcribe(wav, language=self.language, beam_size=5)
            return " ".join(s.text.strip() for s in segments)
        if self.kind == "whisper":
            return self.model.transcribe(wav, language=self.language, fp16=False)["text"]
        out = self.model({"raw": wav, "sampling_rate": ASR_SAMPLE_RATE},
                         generate_kwargs={"language": self.language, "task": "transcribe"})
        return out["text"]

    def describe(self) -> str:
        return f"whisper ({self.kind}: {self.path})"


def build_asr(name: str = "pocketsphinx", model_path: str | None = None, language: str = "en") -> ASRBackend:
    """A new ASR backend by name; ``model_path`` is required for ``whisper``."""
    if name == "pocketsphinx":
        return PocketSphinxASR(language)
    if name == "whisper":
        if not whisper_libraries():
            raise ASRError("--asr whisper needs faster-whisper, openai-whisper or transformers installed")
        if not model_path:
            raise ASRError("--asr whisper needs --whisper_model PATH (a local model; nothing is downloaded)")
        return WhisperASR(model_path, language)
    raise ASRError(f"unknown ASR backend {name!r}; choose one of {', '.join(ASR_BACKENDS)}")


@functools.lru_cache(maxsize=4)
def get_asr(name: str = "pocketsphinx", model_path: str | None = None, language: str = "en") -> ASRBackend:
    """Like :func:`build_asr`, but one shared instance per process (training hooks call this every epoch)."""
    return build_asr(name, model_path, language)
