"""The project's codec as a :class:`Codec`: tokenizer + vocoder, saved as safetensors + the config that built them."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from speechlm.codec.base import Codec, CodecInfo
from speechlm.codec.model import CodecConfig, SpeechTokenizer
from speechlm.errors import SpeechLMError
from speechlm.io import atomic_path, write_json
from speechlm.vocoder.model import Vocoder, VocoderConfig

FORMAT = "speechlm-codec"
FORMAT_VERSION = 1
WEIGHTS, CONFIG = "codec.safetensors", "codec.json"


class NeuralCodec(Codec, torch.nn.Module):
    """Encode with :class:`SpeechTokenizer`, decode with :class:`Vocoder` (codes -> latent -> 24 kHz)."""

    def __init__(self, codec: CodecConfig, vocoder: VocoderConfig, name: str = "speechlm-codec",
                 version: str = "2", n_codebooks: int | None = None):
        torch.nn.Module.__init__(self)
        if vocoder.latent_dim != codec.latent_dim or vocoder.sample_rate != codec.sample_rate:
            raise SpeechLMError(f"vocoder (latent {vocoder.latent_dim}, {vocoder.sample_rate} Hz) does not fit the "
                                f"codec (latent {codec.latent_dim}, {codec.sample_rate} Hz)")
        if vocoder.upsample * vocoder.hop_length != codec.samples_per_frame:
            raise SpeechLMError("vocoder upsample x hop_length must equal the codec's samples per frame")
        self.codec_config, self.vocoder_config = codec, vocoder
        self.tokenizer = SpeechTokenizer(codec)
        self.vocoder = Vocoder(vocoder)
        k = n_codebooks or codec.n_codebooks
        if not 1 <= k <= codec.n_codebooks:
            raise SpeechLMError(f"n_codebooks must be in 1..{codec.n_codebooks}, got {k}")
        self.info = CodecInfo(name=name, version=version, sample_rate=codec.sample_rate,
                              frame_rate=codec.frame_rate, n_codebooks=k, codebook_size=codec.codebook_size)

    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        return self.tokenizer.encode(wav.to(self.device), self.info.n_codebooks)

    def _decode(self, codes: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        return self.vocoder(self.tokenizer.embed(codes.to(self.device)),
                            None if speaker is None else speaker.to(self.device))

    @property
    def harmonic(self) -> bool:
        """The vocoder has a harmonic source, whose phase chunked decoding must carry (``codec.streaming``)."""
        return self.vocoder_config.harmonic

    def _decode_anchored(self, codes: torch.Tensor, speaker: torch.Tensor | None,
                         anchor: tuple[int, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        """``_decode`` of a window whose source phase is fixed at one frame; also returns the phase at every
        100 Hz frame start of the window."""
        out = self.vocoder.synthesize(self.tokenizer.embed(codes.to(self.device)),
                                      None if speaker is None else speaker.to(self.device), anchor=anchor)
        return out.wav, out.phase

    @property
    def speaker_dim(self) -> int:
        return self.vocoder_config.speaker_dim

    def _speaker_embedding(self, wav: torch.Tensor) -> torch.Tensor:
        return self.vocoder.embed_reference(wav.to(self.device))

    @property
    def voice_encoder_hash(self) -> str | None:
        if not self.voice_conditioned:
            return None
        h = hashlib.sha256()
        for name, t in sorted(self.vocoder.reference.state_dict().items()):
            h.update(name.encode())
            h.update(t.detach().float().cpu().contiguous().numpy().tobytes())
        return "sha256:" + h.hexdigest()

    @property
    def device(self) -> torch.device:
        return next(self.parameters()).device

    def with_codebooks(self, n_codebooks: int) -> "NeuralCodec":
        """The same weights at a lower bitrate (the first ``n_codebooks`` residual levels)."""
        return self._variant(self.vocoder_config, n_codebooks)

    def with_postfilter(self, strength: float | None = None, bins: int | None = None,
                        pitch: float | None = None) -> "NeuralCodec":
        """The same weights and tokens, decoding with other postfilter settings (``speechlm.vocoder.postfilter``):
        the spectral contrast ``strength`` and envelope ``bins``, the pitch comb's strength ``pitch``; each one
        left at None stays as configured, 0 turns a filter off."""
        given = {"postfilter": strength, "postfilter_bins": bins, "pitch_postfilter": pitch}
        changes = {k: type(getattr(self.vocoder_config, k))(v) for k, v in given.items() if v is not None}
        return self._variant(dataclasses.replace(self.vocoder_config, **changes), self.info.n_codebooks)

    def with_decode_precision(self, precision: str) -> "NeuralCodec":
        """The same weights and tokens, the vocoder's backbone decoding in ``precision`` ("fp32" or "bf16",
        see ``speechlm.vocoder.model``); encoding is always fp32, so the tokens do not depend on it."""
        return self._variant(dataclasses.replace(self.vocoder_config, decode_precision=precision), self.info.n_codebooks)

    def _variant(self, vocoder: VocoderConfig, n_codebooks: int) -> "NeuralCodec":
        """A codec with these weights, another vocoder setting or number of levels (the weights' shapes unchanged)."""
        other = NeuralCodec(self.codec_config, vocoder, self.info.name, self.info.version, n_codebooks)
        other.load_state_dict(self.state_dict())
        return other.eval()

    # ------------------------------------------------------------------ persistence

    def save_pretrained(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        state = {k: v.detach().contiguous().cpu() for k, v in self.state_dict().items()}
        with atomic_path(out / WEIGHTS) as tmp:
            save_file(state, str(tmp), metadata={"format": FORMAT})
        write_json(out / CONFIG, {
            "format": FORMAT, "format_version": FORMAT_VERSION, "name": self.info.name,
            "version": self.info.version, "codec": dataclasses.asdict(self.codec_config),
            "vocoder": dataclasses.asdict(self.vocoder_config)})
        return out

    @classmethod
    def from_pretrained(cls, path: str | Path, n_codebooks: int | None = None) -> "NeuralCodec":
        path = Path(path)
        cfg_file, weights = path / CONFIG, path / WEIGHTS
        for f in (cfg_file, weights):
            if not f.exists():
                raise SpeechLMError(f"{f}: not found ({path} is not a saved speechlm codec)")
        try:
            cfg = json.loads(cfg_file.read_text(encoding="utf-8"))
        except json.JSONDecodeError as e:
            raise SpeechLMError(f"{cfg_file}: invalid JSON ({e})") from None
        if cfg.get("format") != FORMAT or cfg.get("format_version") != FORMAT_VERSION:
            raise SpeechLMError(f"{cfg_file}: not a {FORMAT} v{FORMAT_VERSION} config "
                                f"(format={cfg.get('format')!r}, version={cfg.get('format_version')!r})")
        try:
            codec = cls(CodecConfig(**cfg["codec"]), VocoderConfig(**cfg["vocoder"]), cfg["name"], cfg["version"],
                        n_codebooks)
            codec.load_state_dict(load_file(str(weights)))
        except (TypeError, KeyError, RuntimeError) as e:
            raise SpeechLMError(f"{path}: weights do not match the config ({str(e).splitlines()[0]})") from None
        return codec.eval()
