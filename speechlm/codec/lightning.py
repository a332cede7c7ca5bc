"""Stage 1 codec training: tokenizer + vocoder end to end with multi-resolution mel/STFT losses.

Adversarial fine-tuning of the vocoder on frozen tokens is stage 2 (``speechlm.vocoder.lightning``):
spectral losses alone train fast and give the tokens their content; the GAN then restores the fine
detail (phase, noise) that makes the waveform sound natural.

With ``phoneme_vocab`` (and the data module's ``phoneme_manifests``) the first level is also trained to
carry the phonemes, by CTC through a training-only head (``semantic.py``).
"""

from __future__ import annotations

import math
from pathlib import Path

import lightning as L
import torch

from speechlm.codec.model import CodecConfig, codebook_stats
from speechlm.codec.neural import NeuralCodec
from speechlm.codec.semantic import PhonemeHead, phoneme_ctc_loss
from speechlm.errors import SpeechLMError
from speechlm.vocoder.losses import MultiResolutionMelLoss, MultiResolutionSTFTLoss
from speechlm.vocoder.model import VocoderConfig


def warmup_cosine(step: int, warmup: int, total: int, floor: float = 0.05) -> float:
    """LR multiplier: linear warmup, then cosine decay to ``floor``."""
    if step < warmup:
        return (step + 1) / warmup
    t = min(1.0, (step - warmup) / max(1, total - warmup))
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * t))


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
                 phoneme_vocab: int | None = None, phoneme_weight: float = 1.0, init_from: str | None = None,
                 name: str = "speechlm-codec", version: str = "2", export_dir: str | None = None):
        """``phoneme_vocab``: the phoneme tokenizer's vocab size, to supervise codebook 0 with CTC
        (weighted ``phoneme_weight``) on the data module's phonemized utterances; None: no supervision.
        ``init_from``: a saved codec to start from (same configs; the optimizer starts fresh).
        ``version`` goes into every token file: tokens of codecs trained differently must not mix."""
        super().__init__()
        self.save_hyperparameters()
        self.model = NeuralCodec(codec, vocoder, name=name, version=version)
        if init_from:
            base = NeuralCodec.from_pretrained(init_from)
            if (base.codec_config, base.vocoder_config) != (self.model.codec_config, self.model.vocoder_config):
                raise SpeechLMError(f"model.init_from {init_from} holds a codec with other configs than model.codec / "
                                    "model.vocoder; copy them from its codec.json")
            self.model.load_state_dict(base.state_dict())
        self.phoneme_head = PhonemeHead(codec.latent_dim, phoneme_vocab) if phoneme_vocab else None
        self.mel_loss = MultiResolutionMelLoss(codec.sample_rate)
        self.stft_loss = MultiResolutionSTFTLoss()

    def _step(self, wav: torch.Tensor, train: bool) -> dict[str, torch.Tensor]:
        h = self.hparams
        dropout = train and bool(torch.rand(()) < h.quantizer_dropout)  # keep lower bitrates usable
        out = self.model.tokenizer(wav, quantizer_dropout=dropout)
        y = self.model.vocoder(out.latent)[..., : wav.shape[-1]]
        mel, stft = self.mel_loss(y, wav), self.stft_loss(y, wav)
        loss = h.mel_weight * mel + h.stft_weight * stft
        return {"loss": loss, "mel": mel, "stft": stft, "codes": out.codes, "dropout": dropout}

    def on_fit_start(self) -> None:
        dm = self.trainer.datamodule
        has = bool(getattr(dm, "hparams", {}).get("phoneme_manifests")) if dm is not None else False
        if (self.phoneme_head is not None) != has:
            raise SpeechLMError("phoneme supervision needs both model.phoneme_vocab and data.phoneme_manifests "
                                "(+ data.tokenizer); set both or neither")
        if has:
            vocab = dm.phoneme_vocab()
            spf = self.model.codec_config.samples_per_frame
            if vocab != self.hparams.phoneme_vocab or dm.hparams.samples_per_frame != spf:
                raise SpeechLMError(f"model.phoneme_vocab {self.hparams.phoneme_vocab} / codec frames of {spf} "
                                    f"samples do not match data.tokenizer's {vocab} / data.samples_per_frame "
                                    f"{dm.hparams.samples_per_frame}")

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        wav, phonemes = (batch["audio"], batch.get("phonemes")) if isinstance(batch, dict) else (batch, None)
        r = self._step(wav, train=True)
        self.log_dict({f"train/{k}": r[k] for k in ("loss", "mel", "stft")}, prog_bar=True)
        if phonemes is not None:
            ctc = phoneme_ctc_loss(self.phoneme_head, self.model.tokenizer, phonemes)
            self.log("train/phoneme_ctc", ctc, prog_bar=True)
            r["loss"] = r["loss"] + self.hparams.phoneme_weight * ctc
        cfg = self.model.codec_config
        if self.global_step % 50 == 0 and not r["dropout"]:
            stats = codebook_stats(r["codes"], cfg.codebook_size)
            self.log_dict({f"codebook/{k}": v for k, v in stats.items()})
        return r["loss"]

    def validation_step(self, wav: torch.Tensor, batch_idx: int) -> None:
        r = self._step(wav, train=False)
        self.log_dict({f"val/{k}": r[k] for k in ("loss", "mel", "stft")}, prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        h = self.hparams
        opt = torch.optim.AdamW(self.parameters(), lr=h.lr, betas=(0.8, 0.99), weight_decay=h.weight_decay)
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_cosine(s, h.warmup_steps, h.max_steps))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
