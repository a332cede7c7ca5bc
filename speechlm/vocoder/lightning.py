"""Stage 2 vocoder training: adversarial fine-tuning on frozen codec tokens (Lightning manual optimization).

The tokenizer from stage 1 is frozen, so the tokens the LM learns stay fixed; only the vocoder
learns to turn them into a natural waveform. Losses follow Vocos: multi-period and multi-resolution
discriminators (hinge GAN), feature matching, and the multi-resolution mel loss; the discriminators
and GAN losses are the ``vocos`` package's own modules. Two optimizers, stepped by hand: the
discriminator on real vs. generated audio, then the generator.

``gan_start_step: null`` trains the vocoder on the spectral losses alone (mel + ``stft_weight`` x
multi-resolution STFT), with no discriminators at all: the five MPD periods are 40M parameters,
several seconds a step on one CPU core, so on CPU (``configs/vocoder/spectral.yaml``) the decoder
keeps learning on the frozen tokens while the LM trains beside it, and the GAN stage waits for a GPU.
"""

from __future__ import annotations

import lightning as L
import torch
from vocos.discriminators import MultiPeriodDiscriminator, MultiResolutionDiscriminator
from vocos.loss import DiscriminatorLoss, FeatureMatchingLoss, GeneratorLoss

from speechlm.codec.lightning import ExportsCodec, warmup_cosine
from speechlm.codec.neural import NeuralCodec
from speechlm.vocoder.losses import MultiResolutionMelLoss, MultiResolutionSTFTLoss


class VocoderModule(ExportsCodec, L.LightningModule):
    def __init__(self, codec_dir: str, lr: float = 2e-4, warmup_steps: int = 200, max_steps: int = 100_000,
                 mel_weight: float = 45.0, fm_weight: float = 2.0, mrd_weight: float = 0.1,
                 gan_start_step: int | None = 0, mpd_periods: list[int] = (2, 3, 5, 7, 11),
                 stft_weight: float = 0.0, export_dir: str | None = None):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.model = NeuralCodec.from_pretrained(codec_dir).train()
        self.model.tokenizer.requires_grad_(False)
        self.gan = gan_start_step is not None
        if self.gan:  # each period is an 8M-parameter sub-discriminator: tiny test configs use one
            self.mpd, self.mrd = MultiPeriodDiscriminator(periods=tuple(mpd_periods)), MultiResolutionDiscriminator()
            self.d_loss, self.g_loss, self.fm_loss = DiscriminatorLoss(), GeneratorLoss(), FeatureMatchingLoss()
        self.mel_loss = MultiResolutionMelLoss(self.model.sample_rate)
        self.stft_loss = MultiResolutionSTFTLoss() if stft_weight > 0 else None

    def _generate(self, wav: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            self.model.tokenizer.eval()  # frozen: no EMA codebook updates, no dead-code re-seeding
            latent = self.model.tokenizer(wav).latent
        return self.model.vocoder(latent)[..., : wav.shape[-1]]

    def training_step(self, wav: torch.Tensor, batch_idx: int) -> None:
        h = self.hparams
        opts, scheds = self.optimizers(), self.lr_schedulers()
        opt_g, sched_g = (opts[0], scheds[0]) if self.gan else (opts, scheds)
        y_hat = self._generate(wav)
        use_gan = self.gan and self.global_step >= h.gan_start_step

        if use_gan:
            real_p, fake_p, _, _ = self.mpd(y=wav, y_hat=y_hat.detach())
            real_r, fake_r, _, _ = self.mrd(y=wav, y_hat=y_hat.detach())
            loss_mp, _, _ = self.d_loss(disc_real_outputs=real_p, disc_generated_outputs=fake_p)
            loss_mr, _, _ = self.d_loss(disc_real_outputs=real_r, disc_generated_outputs=fake_r)
            loss_d = loss_mp + h.mrd_weight * loss_mr
            opt_d, sched_d = opts[1], scheds[1]
            opt_d.zero_grad()
            self.manual_backward(loss_d)
            opt_d.step()
            sched_d.step()
            self.log("train/disc", loss_d, prog_bar=True)

        mel = self.mel_loss(y_hat, wav)
        loss_g = h.mel_weight * mel
        if self.stft_loss is not None:
            stft = self.stft_loss(y_hat, wav)
            loss_g = loss_g + h.stft_weight * stft
            self.log("train/stft", stft)
        if use_gan:
            _, fake_p, fmap_rp, fmap_gp = self.mpd(y=wav, y_hat=y_hat)
            _, fake_r, fmap_rr, fmap_gr = self.mrd(y=wav, y_hat=y_hat)
            adv_p, _ = self.g_loss(disc_outputs=fake_p)
            adv_r, _ = self.g_loss(disc_outputs=fake_r)
            fm = self.fm_loss(fmap_r=fmap_rp, fmap_g=fmap_gp) + h.mrd_weight * self.fm_loss(fmap_r=fmap_rr,
                                                                                             fmap_g=fmap_gr)
            adv = adv_p + h.mrd_weight * adv_r
            loss_g = loss_g + adv + h.fm_weight * fm
            self.log_dict({"train/adv": adv, "train/fm": fm})
        opt_g.zero_grad()
        self.manual_backward(loss_g)
        opt_g.step()
        sched_g.step()
        self.log_dict({"train/gen": loss_g, "train/mel": mel}, prog_bar=True)

    def validation_step(self, wav: torch.Tensor, batch_idx: int) -> None:
        self.log("val/mel", self.mel_loss(self._generate(wav), wav), prog_bar=True, sync_dist=True)

    def configure_optimizers(self):
        h = self.hparams
        opts = [torch.optim.AdamW(self.model.vocoder.parameters(), lr=h.lr, betas=(0.8, 0.9))]
        if self.gan:
            opts.append(torch.optim.AdamW([*self.mpd.parameters(), *self.mrd.parameters()], lr=h.lr, betas=(0.8, 0.9)))
        sched = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: warmup_cosine(s, h.warmup_steps, h.max_steps))
                 for o in opts]
        return opts, [{"scheduler": s, "interval": "step"} for s in sched]
