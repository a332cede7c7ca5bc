"""Stage 1 codec training: tokenizer + vocoder end to end with multi-resolution mel/STFT losses.

Adversarial fine-tuning of the vocoder on frozen tokens is stage 2 (``speechlm.vocoder.lightning``):
spectral losses alone train fast and give the tokens their content; the GAN then restores the fine
detail (phase, noise) that makes the waveform sound natural.

``pitch_weight > 0`` adds a pitch target (``speechlm.codec.pitch``): a small head must read voicing and
F0 back from the quantized latent, so the tokens carry the pitch contour (``configs/codec/pitch.yaml``).
``init_from`` starts from an exported codec of the same shape (its tokens then change: give the result
a new ``version``, so token files of the old one are refused); ``codec.encoder_max_hz`` may differ from the
export's (the encoder then learns to do without the bands above it: ``configs/codec/band.yaml``).

A voice-conditioned vocoder (``vocoder.speaker_dim``, as in the bundled codec) trains here as in stage 2:
batches are ``(crops, references)`` (``data.reference_seconds``) and ``reference_dropout`` of the rows go
without one (:func:`voice_embedding`).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import lightning as L
import torch

from speechlm.codec.model import CodecConfig, codebook_stats
from speechlm.codec.neural import NeuralCodec
from speechlm.codec.pitch import PitchHead, f0_frames, pitch_loss
from speechlm.errors import SpeechLMError
from speechlm.vocoder.losses import MultiResolutionMelLoss, MultiResolutionSTFTLoss
from speechlm.vocoder.model import VocoderConfig


def warmup_cosine(step: int, warmup: int, total: int, floor: float = 0.05) -> float:
    """LR multiplier: linear warmup, then cosine decay to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


def unpack(batch) -> tuple[torch.Tensor, torch.Tensor | None]:
    """A batch of crops, or of ``(crops, references)`` -> (crops, references or None)."""
    return (batch[0], batch[1]) if isinstance(batch, (list, tuple)) else (batch, None)


def voice_embedding(codec: NeuralCodec, reference: torch.Tensor | None, dropout: float = 0.0) -> torch.Tensor | None:
    """The voice embedding ``[B, speaker_dim]`` of each row's reference (None for a vocoder without voice
    conditioning); with ``dropout``, that share of the rows get the zero embedding, as a caller without a
    reference gives."""
    if not codec.voice_conditioned:
        return None
    if reference is None:
        raise SpeechLMError("a voice-conditioned vocoder trains on (crop, reference) batches: "
                            "set data.reference_seconds (e.g. 3.0)")
    speaker = codec.vocoder.embed_reference(reference)
    if dropout:
        keep = (torch.rand(speaker.shape[0], 1, device=speaker.device) >= dropout).to(speaker.dtype)
        speaker = speaker * keep
    return speaker


class ExportsCodec:
    """LightningModule mixin: ``self.model`` (a NeuralCodec) is saved to ``hparams.export_dir`` after every
    validation and when training ends, so a loadable export always sits next to the checkpoints."""

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            self._export()

    def on_train_end(self) -> None:
        # A run stopped by max_steps or max_time exports its last weights, not those of the last validation.
        self._export()

    def _export(self) -> None:
        if self.hparams.export_dir and self.trainer.is_global_zero:  # rank 0 only
            self.model.save_pretrained(Path(self.hparams.export_dir))


class CodecModule(ExportsCodec, L.LightningModule):
    def __init__(self, codec: CodecConfig = CodecConfig(), vocoder: VocoderConfig = VocoderConfig(),
                 lr: float = 1e-3, weight_decay: float = 0.01, warmup_steps: int = 500, max_steps: int = 100_000,
                 quantizer_dropout: float = 0.5, mel_weight: float = 1.0, stft_weight: float = 1.0,
                 name: str = "speechlm-codec", version: str = "2", export_dir: str | None = None,
                 pitch_weight: float = 0.0, init_from: str | None = None, reference_dropout: float = 0.1):
        super().__init__()
        self.save_hyperparameters()
        self.model = NeuralCodec(codec, vocoder, name=name, version=version)
        if init_from:
            start = NeuralCodec.from_pretrained(init_from)
            same_shapes = dataclasses.replace(start.codec_config, encoder_max_hz=codec.encoder_max_hz)
            if (same_shapes, start.vocoder_config) != (codec, vocoder):
                raise SpeechLMError(f"{init_from}: its codec/vocoder config differs from model.codec/model.vocoder; "
                                    "init_from needs the same shapes (only codec.encoder_max_hz may differ)")
            self.model.load_state_dict(start.state_dict())
        self.pitch_head = PitchHead(codec.latent_dim, math.prod(codec.strides)) if pitch_weight > 0 else None
        self.mel_loss = MultiResolutionMelLoss(codec.sample_rate)
        self.stft_loss = MultiResolutionSTFTLoss()

    def _step(self, batch, train: bool) -> dict[str, torch.Tensor]:
        h = self.hparams
        wav, reference = unpack(batch)
        dropout = train and bool(torch.rand(()) < h.quantizer_dropout)  # keep lower bitrates usable
        out = self.model.tokenizer(wav, quantizer_dropout=dropout)
        speaker = voice_embedding(self.model, reference, h.reference_dropout if train else 0.0)
        y = self.model.vocoder(out.latent, speaker)[..., : wav.shape[-1]]
        mel, stft = self.mel_loss(y, wav), self.stft_loss(y, wav)
        loss = h.mel_weight * mel + h.stft_weight * stft
        r = {"mel": mel, "stft": stft, "codes": out.codes, "dropout": dropout}
        if self.pitch_head is not None:
            cfg = self.model.codec_config
            pitch = pitch_loss(self.pitch_head(out.latent), f0_frames(wav, cfg.sample_rate, cfg.hop_length))
            loss = loss + h.pitch_weight * pitch["loss"]
            r.update(pitch=pitch["loss"], voicing_acc=pitch["voicing_acc"], f0_cents=pitch["cents"])
        return {"loss": loss, **r}

    def _metrics(self, r: dict, split: str) -> dict[str, torch.Tensor]:
        keys = ("loss", "mel", "stft") + (("pitch", "voicing_acc", "f0_cents") if self.pitch_head is not None else ())
        # f0_cents is NaN for a batch where no frame is voiced in both the target and the prediction
        return {f"{split}/{k}": r[k] for k in keys if not (k == "f0_cents" and torch.isnan(r[k]))}

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        r = self._step(batch, train=True)
        self.log_dict(self._metrics(r, "train"), prog_bar=True)
        cfg = self.model.codec_config
        if self.global_step % 50 == 0 and not r["dropout"]:
            stats = codebook_stats(r["codes"], cfg.codebook_size)
            self.log_dict({f"codebook/{k}": v for k, v in stats.items()})
        return r["loss"]

    def validation_step(self, batch, batch_idx: int) -> None:
        r = self._step(batch, train=False)
        self.log_dict(self._metrics(r, "val"), prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        h = self.hparams
        opt = torch.optim.AdamW(self.parameters(), lr=h.lr, betas=(0.8, 0.99), weight_decay=h.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, h.warmup_steps, h.max_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
