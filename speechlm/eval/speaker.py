"""Speaker similarity: cosine between resemblyzer d-vectors of a synthesized clip and a reference clip."""

from __future__ import annotations

import contextlib
import functools
import io
import warnings

import numpy as np

SPEAKER_SAMPLE_RATE = 16000  # resemblyzer's mel front-end and VAD both run at 16 kHz
SILENCE_PEAK = 1e-4  # about -80 dBFS: below this a clip carries no voice to embed


class SpeakerEncoder:
    """resemblyzer's GE2E ``VoiceEncoder`` (its weights ship with the package), built once and reused.

    Its embeddings are L2-normalized, so cosine similarity is a dot product; same-speaker pairs of
    clean read speech score about 0.8-0.95, different speakers about 0.5-0.75.
    """

    def __init__(self, device: str = "cpu"):
        with warnings.catch_warnings():
            # resemblyzer imports a scipy name deprecated since 1.8; nothing a user of ours can act on.
            warnings.simplefilter("ignore", DeprecationWarning)
            from resemblyzer import VoiceEncoder

        # VoiceEncoder prints a load message on every construction; keep the eval progress bar clean.
        with contextlib.redirect_stdout(io.StringIO()):
            self.encoder = VoiceEncoder(device=device)

    def embed(self, wav: np.ndarray, sample_rate: int) -> np.ndarray:
        """Unit-norm embedding ``[256]`` of mono float audio ``[T]``.

        Raises ``ValueError`` for silent audio, or audio in which the voice-activity detector finds no
        speech: an embedding of silence is a number, but not a speaker.
        """
        from resemblyzer import preprocess_wav
        from resemblyzer.audio import normalize_volume
        from resemblyzer.hparams import audio_norm_target_dBFS

        wav = np.asarray(wav, dtype=np.float32)
        if wav.ndim != 1 or wav.size == 0:
            raise ValueError(f"expected non-empty mono audio [T], got shape {wav.shape}")
        if float(np.abs(wav).max()) < SILENCE_PEAK:
            raise ValueError("silent audio has no speaker to embed")
        if sample_rate != SPEAKER_SAMPLE_RATE:
            import librosa

            wav = librosa.resample(wav, orig_sr=sample_rate, target_sr=SPEAKER_SAMPLE_RATE, res_type="soxr_hq")
        # resemblyzer's mel front-end is not level-invariant (a -10 dB copy of a clip scores only ~0.9 against
        # itself), and its own preprocessing only ever raises the level. Setting every clip to the RMS it was
        # trained at (-30 dBFS), up or down, keeps output loudness, which a TTS system may change freely, from
        # moving SIM; preprocess_wav then cuts long pauses (webrtcvad) for the same reason.
        wav = normalize_volume(np.clip(wav, -1.0, 1.0), audio_norm_target_dBFS, increase_only=False)
        wav = preprocess_wav(np.clip(wav, -1.0, 1.0))
        if wav.size < SPEAKER_SAMPLE_RATE // 10:
            raise ValueError("voice-activity detection found less than 0.1 s of speech")
        return self.encoder.embed_utterance(wav)

    def similarity(self, wav: np.ndarray, sample_rate: int, reference: np.ndarray, reference_rate: int) -> float:
        """Cosine similarity in [-1, 1] between the speakers of ``wav`` and ``reference``."""
        return cosine(self.embed(wav, sample_rate), self.embed(reference, reference_rate))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b)))


@functools.lru_cache(maxsize=2)
def get_speaker_encoder(device: str = "cpu") -> SpeakerEncoder:
    """One encoder per process and device: building it costs seconds, reusing it costs nothing."""
    return SpeakerEncoder(device)
