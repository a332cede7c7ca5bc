"""Token latent -> 24 kHz waveform: upsample 25 Hz -> 100 Hz, Vocos ConvNeXt backbone, ISTFT head.

The head predicts STFT magnitude and phase per 100 Hz frame and an inverse STFT makes the waveform,
so the network never runs at the sample rate, unlike HiFi-GAN-style upsampling stacks; that is what
makes Vocos-style vocoders fast on CPU (``eval/bench_codec.py`` measures ours). The backbone and
head are the ``vocos`` package's own modules; the inverse STFT is ``speechlm.vocoder.spectral``'s, which
equals the head's own to the bit and keeps frames along time, which is faster on CPU.

Voice conditioning (``speaker_dim > 0``): a small reference encoder turns a few seconds of the
target voice into one vector, added to every frame's input features. 1 kbps tokens keep what is
said and how, but little of the voice's fine timbre; the reference restores it, the way a TTS voice
prompt already gives the LM the voice. The reference is another utterance of the same speaker in
training (another crop of the same one where a speaker has only one), the voice prompt in
synthesis. The projection starts at zero, so a vocoder gaining conditioning starts as it was; with
no reference (``speaker=None``) the decoder runs unconditioned, as training's reference dropout taught it.

Harmonic source (``harmonic: true``, ``speechlm.vocoder.harmonic``): the backbone also predicts voicing
and F0 per 100 Hz frame, a pulse train at that F0 is analysed into the head's STFT frames, shaped by a
learned per-bin magnitude and added, through a learned gate, to the head's own spectrum.
Training passes the target F0 (teacher forcing); decoding uses the predicted one.

Decode-time postfilters (``postfilter``, ``pitch_postfilter``; ``speechlm.vocoder.postfilter``): off in
training, set in the saved config, so a codec's tokens and weights stay the same whichever is on.

Decode precision (``decode_precision: bf16``): the ConvNeXt backbone, nearly all of the decoder's time, runs
under bfloat16 autocast when decoding on a device that computes bfloat16 natively (CUDA with bf16, CPUs with
AVX512-BF16 or AMX); the head, the inverse STFT and the postfilters stay in fp32. Elsewhere it runs in fp32:
bfloat16 emulated on other CPUs is slower than fp32 (``eval/bench_codec.py --speed-only --onednn-isa AVX2``:
the project's Zen 4 held to AVX2 encoded + decoded 8x real time with a bf16 decoder, 41x in fp32). Training
ignores it (Lightning's ``precision`` decides there).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
from torch import nn
from vocos.heads import ISTFTHead
from vocos.models import VocosBackbone

from speechlm.codec.pitch import F0_FLOOR, F0_REF
from speechlm.errors import SpeechLMError
from speechlm.vocoder.harmonic import excitation, fill_unvoiced
from speechlm.vocoder.postfilter import pitch_comb, sharpen
from speechlm.vocoder.spectral import istft_same, stft_same


DECODE_PRECISIONS = ("fp32", "bf16")


def native_bf16(device: torch.device) -> bool:
    """Whether ``device`` computes bfloat16 matrix products in hardware (emulated bf16 is slower than fp32)."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":  # x86 only: AVX512-BF16 (Zen 4, Cooper Lake and later) or AMX (Sapphire Rapids)
        probes = (getattr(torch.cpu, "_is_avx512_bf16_supported", None), getattr(torch.cpu, "_is_amx_tile_supported", None))
        return any(p is not None and p() for p in probes)
    return False


@dataclass
class VocoderConfig:
    latent_dim: int = 128  # the codec's latent size (input)
    upsample: int = 4  # codec frames -> 100 Hz vocoder frames
    dim: int = 256
    intermediate_dim: int = 768
    num_layers: int = 8
    sample_rate: int = 24000
    n_fft: int = 1024
    hop_length: int = 240
    speaker_dim: int = 0  # voice embedding size from a reference clip; 0 = not voice-conditioned
    harmonic: bool = False  # add a harmonic source at the predicted F0 (speechlm.vocoder.harmonic)
    harmonic_max_hz: float = 8000.0  # the source's highest harmonic
    postfilter: float = 0.0  # spectral contrast enhancement at inference (see sharpen); 0 = off
    postfilter_bins: int = 9  # its envelope: a moving average over this many STFT bins (9 x 23.4 Hz at 24 kHz)
    pitch_postfilter: float = 0.0  # long-term (pitch comb) postfilter at inference (see pitch_comb); 0 = off, <= 1
    decode_precision: str = "fp32"  # "bf16": the backbone in bfloat16 when decoding, where the device has it natively

    def __post_init__(self):
        if self.decode_precision not in DECODE_PRECISIONS:
            raise SpeechLMError(f"vocoder decode_precision must be one of {', '.join(DECODE_PRECISIONS)}, "
                                f"got {self.decode_precision!r}")
        if self.postfilter < 0 or self.postfilter_bins < 3 or self.postfilter_bins % 2 == 0:
            raise SpeechLMError(f"vocoder postfilter needs strength >= 0 and an odd postfilter_bins >= 3, got "
                                f"{self.postfilter} and {self.postfilter_bins}")
        if not 0 <= self.pitch_postfilter <= 1:
            raise SpeechLMError(f"vocoder pitch_postfilter needs a strength in [0, 1], got {self.pitch_postfilter}")

    @classmethod
    def tiny(cls) -> "VocoderConfig":
        return cls(latent_dim=8, dim=16, intermediate_dim=32, num_layers=1, n_fft=480)

    @classmethod
    def default(cls) -> "VocoderConfig":
        return cls()


class ReferenceEncoder(nn.Module):
    """Reference audio ``[B, L]`` at ``sample_rate`` -> voice embedding ``[B, speaker_dim]``.

    Log-mel frames, three convolutions, then the mean and standard deviation over time (statistics
    pooling, as x-vector speaker encoders do), so any length of reference gives one vector.
    """

    N_MELS = 80

    def __init__(self, cfg: VocoderConfig):
        super().__init__()
        import torchaudio  # deferred, as in the codec's mel front end

        self.mel = torchaudio.transforms.MelSpectrogram(sample_rate=cfg.sample_rate, n_fft=cfg.n_fft,
                                                        hop_length=cfg.hop_length, n_mels=self.N_MELS, power=1.0)
        layers: list[nn.Module] = []
        for i in range(3):
            layers += [nn.Conv1d(self.N_MELS if i == 0 else cfg.dim, cfg.dim, 5, padding=2), nn.GELU()]
        self.convs = nn.Sequential(*layers)
        self.out = nn.Linear(2 * cfg.dim, cfg.speaker_dim)

    def forward(self, wav: torch.Tensor) -> torch.Tensor:
        with torch.autocast(wav.device.type, enabled=False):
            mel = self.mel(wav.float()).clamp(min=1e-5).log()
        h = self.convs(mel)
        return self.out(torch.cat([h.mean(-1), h.std(-1, unbiased=False)], dim=-1))


@dataclass
class VocoderOutput:
    wav: torch.Tensor  # [B, T100 * hop_length]
    pitch: torch.Tensor | None = None  # [B, 2, T100]: voicing logit, log2(F0 / 100 Hz) (harmonic only)
    phase: torch.Tensor | None = None  # [B, T100 + 1]: the source's phase at each frame start (harmonic only)


class Vocoder(nn.Module):
    """``latent [B, latent_dim, T]`` (+ a voice embedding ``[B or 1, speaker_dim]``) -> ``wav [B, T * upsample * hop_length]``."""

    def __init__(self, cfg: VocoderConfig):
        super().__init__()
        self.cfg = cfg
        s = cfg.upsample
        # kernel 2s, stride s, padding s/2: output length is exactly s * T
        self.upsample = nn.ConvTranspose1d(cfg.latent_dim, cfg.dim, 2 * s, stride=s, padding=s // 2)
        self.backbone = VocosBackbone(input_channels=cfg.dim, dim=cfg.dim, intermediate_dim=cfg.intermediate_dim,
                                      num_layers=cfg.num_layers)
        self.head = ISTFTHead(dim=cfg.dim, n_fft=cfg.n_fft, hop_length=cfg.hop_length, padding="same")
        if cfg.speaker_dim:
            self.reference = ReferenceEncoder(cfg)
            self.speaker_proj = nn.Linear(cfg.speaker_dim, cfg.dim)
            nn.init.zeros_(self.speaker_proj.weight)  # adding conditioning to a trained vocoder changes nothing yet
            nn.init.zeros_(self.speaker_proj.bias)
        if cfg.harmonic:
            self.pitch = nn.Linear(cfg.dim, 2)  # voicing logit, log2(F0 / F0_REF), as codec.pitch.pitch_loss reads them
            self.harmonic_filter = nn.Linear(cfg.dim, cfg.n_fft // 2 + 1)  # log magnitude per bin
            nn.init.zeros_(self.harmonic_filter.weight)
            nn.init.constant_(self.harmonic_filter.bias, -3.0)  # ~0.05 per unit harmonic: speech's order
            # Not zero: the losses see magnitudes, and at gate 0 adding a harmonic of arbitrary phase to the
            # head's spectrum raises some bins and lowers others, so the gate's gradient averages out (measured:
            # gate -0.0004 after 1,000 steps from 0). From 1 the source sounds and the head learns around it.
            self.harmonic_gate = nn.Parameter(torch.ones(()))

    def embed_reference(self, wav: torch.Tensor) -> torch.Tensor:
        """Reference audio ``[B, L]`` at the vocoder's sample rate -> voice embedding ``[B, speaker_dim]``
        (``speaker_dim > 0`` only; ``Codec.speaker_embedding`` is the checked entry point)."""
        return self.reference(wav)

    def forward(self, latent: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        """``speaker`` is checked where callers pass it in (``codec.base.check_speaker``)."""
        return self.synthesize(latent, speaker).wav

    def synthesize(self, latent: torch.Tensor, speaker: torch.Tensor | None = None, f0: torch.Tensor | None = None,
                   anchor: tuple[int, torch.Tensor] | None = None) -> VocoderOutput:
        """The waveform and, for a harmonic vocoder, its pitch predictions and source phase.

        ``f0 [B, T100]`` (Hz, 0 = unvoiced) replaces the predicted F0 (training's teacher forcing);
        ``anchor = (frame, phase [B])`` fixes the source's phase at a frame (chunked decoding).
        """
        x = self.upsample(latent)
        if self.cfg.speaker_dim:  # no reference: the zero embedding that reference dropout trained
            speaker = x.new_zeros(1, self.cfg.speaker_dim) if speaker is None else speaker
            x = x + self.speaker_proj(speaker.to(x.dtype))[..., None]
        with self._backbone_precision(x.device):
            x = self.backbone(x)  # [B, T100, dim]
        with torch.autocast(latent.device.type, enabled=False):  # the inverse STFT wants fp32
            x = x.float()
            mag, p = self.head.out(x).chunk(2, dim=-1)  # vocos' ISTFTHead's layer: [B, T100, F] log magnitude, phase
            if self.cfg.postfilter and not self.training:
                mag = sharpen(mag.transpose(1, 2), self.cfg.postfilter, self.cfg.postfilter_bins).transpose(1, 2)
            spec = torch.polar(torch.exp(mag).clip(max=1e2), p)
            if self.cfg.harmonic:
                pitch = self.pitch(x).transpose(1, 2)
                with torch.no_grad():  # the source is not differentiated: F0 is learned by its own loss
                    if f0 is None:
                        track, voiced = F0_REF * torch.exp2(pitch[:, 1]), torch.sigmoid(pitch[:, 0])
                    else:
                        track, voiced = fill_unvoiced(f0), (f0 > 0).float()
                    source, phase = excitation(track, voiced, self.cfg.hop_length, self.cfg.sample_rate,
                                               self.cfg.harmonic_max_hz, anchor)
                    source = stft_same(source, self.cfg.n_fft, self.cfg.hop_length, self.head.istft.window)
                spec = spec + self.harmonic_gate * torch.exp(self.harmonic_filter(x).clamp(max=4.0)) * source
            wav = self._pitch_postfilter(istft_same(spec, self.cfg.n_fft, self.cfg.hop_length, self.head.istft.window))
            return VocoderOutput(wav, pitch, phase) if self.cfg.harmonic else VocoderOutput(wav)

    def decodes_in_bf16(self, device: torch.device) -> bool:
        """Whether decoding on ``device`` runs the backbone in bfloat16: ``decode_precision: bf16`` and native bf16."""
        return self.cfg.decode_precision == "bf16" and native_bf16(device)

    def _backbone_precision(self, device: torch.device) -> contextlib.AbstractContextManager:
        """bfloat16 autocast for the backbone when decoding in bf16 (``decodes_in_bf16``); otherwise nothing
        (fp32, or whatever autocast the caller, e.g. training, set)."""
        if self.training or not self.decodes_in_bf16(device):
            return contextlib.nullcontext()
        return torch.autocast(device.type, dtype=torch.bfloat16)

    def _pitch_postfilter(self, wav: torch.Tensor) -> torch.Tensor:
        if not self.cfg.pitch_postfilter or self.training:
            return wav
        return pitch_comb(wav, self.cfg.pitch_postfilter, self.cfg.sample_rate, self.cfg.hop_length,
                          self.head.istft.window)

    @property
    def receptive_frames(self) -> int:
        """Codec frames of context on each side that influence an output frame (for chunked decoding)."""
        cfg = self.cfg
        per_100hz = 3 + 3 * cfg.num_layers + cfg.n_fft // cfg.hop_length  # embed k7, ConvNeXt k7, ISTFT overlap
        if cfg.harmonic:  # the source's STFT frames overlap as far again, and its F0 is interpolated
            per_100hz += cfg.n_fft // cfg.hop_length + 1
        if cfg.pitch_postfilter:  # two of the longest periods, the pitch analysis window, interpolation between frames
            per_100hz += math.ceil(2 * cfg.sample_rate / (F0_FLOOR * cfg.hop_length)) + cfg.n_fft // cfg.hop_length + 1
        return 1 + -(-per_100hz // cfg.upsample)
