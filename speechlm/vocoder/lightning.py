"""Stage 2 vocoder training: adversarial fine-tuning on frozen codec tokens (Lightning manual optimization).

The tokenizer from stage 1 is frozen, so the tokens the LM learns stay fixed; only the vocoder
learns to turn them into a natural waveform. Losses follow Vocos: multi-period and multi-resolution
discriminators (hinge GAN), feature matching, and the multi-resolution mel loss; the discriminators
and GAN losses are the ``vocos`` package's own modules. Two optimizers, stepped by hand: the
discriminator on real vs. generated audio, then the generator.

``gan_start_step: null`` trains the vocoder on the spectral losses alone (mel + ``stft_weight`` x
multi-resolution STFT), with no discriminators at all: the five MPD periods are 40M parameters,
several seconds a step on one CPU core, so on CPU (``configs/vocoder/spectral.yaml``) the decoder
keeps learning on the frozen tokens while the LM trains beside it, and the full GAN stage waits for a GPU.
``phase_weight`` adds the phase-derivative loss (``speechlm.vocoder.losses.PhaseDerivativeLoss``), which asks
for the target's harmonic frequencies and frame timing where the magnitude losses leave the phase free.
``mpd_periods: []`` drops the MPD and ``mrd_channels`` narrows the MRD (cost grows with its width squared):
``configs/vocoder/voice_mrd.yaml``'s small adversarial stage for one CPU core.
``disc_warmup_steps`` lets the discriminators train that many steps (counted as ``gan_start_step`` is) before
their verdicts reach the generator, which meanwhile keeps to the spectral losses: a vocoder already trained on
spectral losses would otherwise be pushed around by a discriminator that cannot yet tell anything apart.

``speaker_dim`` makes the vocoder voice-conditioned (see ``speechlm.vocoder.model``): an export
without conditioning gains a reference encoder and a zero projection, so it starts from exactly the
audio it made before. Batches are then ``(crops, references)`` (``data.reference_seconds``), and
``reference_dropout`` of the steps' rows go without a reference, so decoding without one still works.

``harmonic: true`` gives the vocoder a harmonic source (``speechlm.vocoder.harmonic``), added to an export
without one (its shared weights carried over, the source at full gate). Training drives the source with the target
F0 (WORLD DIO, ``speechlm.codec.pitch.f0_frames``) and teaches the vocoder's own F0 prediction with
``pitch_weight`` x the pitch loss; validation decodes with the predicted F0, as inference does.
"""

from __future__ import annotations

import dataclasses

import lightning as L
import torch
from vocos.discriminators import DiscriminatorR, MultiPeriodDiscriminator, MultiResolutionDiscriminator
from vocos.loss import DiscriminatorLoss, FeatureMatchingLoss, GeneratorLoss

from speechlm.codec.lightning import ExportsCodec, unpack, voice_embedding, warmup_cosine
from speechlm.codec.neural import NeuralCodec
from speechlm.codec.pitch import f0_frames, pitch_loss
from speechlm.errors import SpeechLMError
from speechlm.vocoder.losses import MultiResolutionMelLoss, MultiResolutionSTFTLoss, PhaseDerivativeLoss

MRD_FFT_SIZES = (2048, 1024, 512)  # vocos' MultiResolutionDiscriminator default


class VocoderModule(ExportsCodec, L.LightningModule):
    def __init__(self, codec_dir: str, lr: float = 2e-4, warmup_steps: int = 200, max_steps: int = 100_000,
                 mel_weight: float = 45.0, fm_weight: float = 2.0, mrd_weight: float = 0.1,
                 gan_start_step: int | None = 0, mpd_periods: list[int] = (2, 3, 5, 7, 11),
                 stft_weight: float = 0.0, export_dir: str | None = None, speaker_dim: int | None = None,
                 reference_dropout: float = 0.1, harmonic: bool | None = None, pitch_weight: float = 1.0,
                 mrd_channels: int = 32, phase_weight: float = 0.0, disc_warmup_steps: int = 0):
        super().__init__()
        self.save_hyperparameters()
        self.automatic_optimization = False
        self.model = NeuralCodec.from_pretrained(codec_dir).train()
        changes = {}
        if speaker_dim is not None and speaker_dim != self.model.vocoder_config.speaker_dim:
            changes["speaker_dim"] = speaker_dim
        if harmonic is not None and harmonic != self.model.vocoder_config.harmonic:
            changes["harmonic"] = harmonic
        if changes:
            self.model = _extend_vocoder(self.model, **changes).train()
        self.model.tokenizer.requires_grad_(False)
        self.gan = gan_start_step is not None
        if self.gan:  # each period is an 8M-parameter sub-discriminator (tiny test configs use one); [] = MRD only
            self.mpd = MultiPeriodDiscriminator(periods=tuple(mpd_periods)) if mpd_periods else None
            self.mrd = MultiResolutionDiscriminator()
            if mrd_channels != 32:  # vocos' MRD takes no width: narrower sub-discriminators (cost ~ channels^2)
                self.mrd.discriminators = torch.nn.ModuleList(
                    DiscriminatorR(window_length=w, channels=mrd_channels) for w in MRD_FFT_SIZES)
            self.d_loss, self.g_loss, self.fm_loss = DiscriminatorLoss(), GeneratorLoss(), FeatureMatchingLoss()
        self.mel_loss = MultiResolutionMelLoss(self.model.sample_rate)
        self.stft_loss = MultiResolutionSTFTLoss() if stft_weight > 0 else None
        self.phase_loss = PhaseDerivativeLoss() if phase_weight > 0 else None

    def _generate(self, wav: torch.Tensor, reference: torch.Tensor | None = None, dropout: float = 0.0,
                  teacher_f0: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The decoded crops and, for a harmonic vocoder, the pitch loss (target F0 drives the source
        when ``teacher_f0``, the predicted one otherwise)."""
        with torch.no_grad():
            self.model.tokenizer.eval()  # frozen: no EMA codebook updates, no dead-code re-seeding
            latent = self.model.tokenizer(wav).latent
        speaker = voice_embedding(self.model, reference, dropout)
        if not self.model.harmonic:
            return self.model.vocoder(latent, speaker)[..., : wav.shape[-1]], None
        cfg = self.model.vocoder_config
        f0 = f0_frames(wav, cfg.sample_rate, cfg.hop_length)
        out = self.model.vocoder.synthesize(latent, speaker, f0=f0 if teacher_f0 else None)
        return out.wav[..., : wav.shape[-1]], pitch_loss(out.pitch, f0)["loss"]

    def training_step(self, batch, batch_idx: int) -> None:
        h = self.hparams
        opts, scheds = self.optimizers(), self.lr_schedulers()
        opt_g, sched_g = (opts[0], scheds[0]) if self.gan else (opts, scheds)
        wav, reference = unpack(batch)
        y_hat, pitch = self._generate(wav, reference, h.reference_dropout, teacher_f0=True)
        use_gan = self.gan and self.global_step >= h.gan_start_step
        adversarial = use_gan and self.global_step >= h.gan_start_step + h.disc_warmup_steps

        if use_gan:
            loss_d = sum(w * self.d_loss(*d(y=wav, y_hat=y_hat.detach())[:2])[0] for d, w in self._discriminators())
            opt_d, sched_d = opts[1], scheds[1]
            opt_d.zero_grad()
            self.manual_backward(loss_d)
            opt_d.step()
            sched_d.step()
            self.log("train/disc", loss_d, prog_bar=True)

        mel = self.mel_loss(y_hat, wav)
        loss_g = h.mel_weight * mel
        if pitch is not None:
            loss_g = loss_g + h.pitch_weight * pitch
            self.log("train/pitch", pitch)
        if self.stft_loss is not None:
            stft = self.stft_loss(y_hat, wav)
            loss_g = loss_g + h.stft_weight * stft
            self.log("train/stft", stft)
        if self.phase_loss is not None:
            phase = self.phase_loss(y_hat, wav)
            loss_g = loss_g + h.phase_weight * phase
            self.log("train/phase", phase)
        if adversarial:
            adv = fm = 0.0
            for d, w in self._discriminators():
                _, fake, fmap_real, fmap_fake = d(y=wav, y_hat=y_hat)
                adv = adv + w * self.g_loss(disc_outputs=fake)[0]
                fm = fm + w * self.fm_loss(fmap_r=fmap_real, fmap_g=fmap_fake)
            loss_g = loss_g + adv + h.fm_weight * fm
            self.log_dict({"train/adv": adv, "train/fm": fm})
        opt_g.zero_grad()
        self.manual_backward(loss_g)
        opt_g.step()
        sched_g.step()
        self.log_dict({"train/gen": loss_g, "train/mel": mel}, prog_bar=True)

    def _discriminators(self) -> list[tuple[torch.nn.Module, float]]:
        """(discriminator, loss weight) pairs: MPD at 1 when it has periods, MRD at ``mrd_weight``."""
        return ([(self.mpd, 1.0)] if self.mpd is not None else []) + [(self.mrd, self.hparams.mrd_weight)]

    def validation_step(self, batch, batch_idx: int) -> None:
        wav, reference = unpack(batch)
        y_hat, pitch = self._generate(wav, reference)
        self.log("val/mel", self.mel_loss(y_hat, wav), prog_bar=True, sync_dist=True)
        if pitch is not None:
            self.log("val/pitch", pitch, sync_dist=True)

    def configure_optimizers(self):
        h = self.hparams
        opts = [torch.optim.AdamW(self.model.vocoder.parameters(), lr=h.lr, betas=(0.8, 0.9))]
        if self.gan:
            params = [p for d, _ in self._discriminators() for p in d.parameters()]
            opts.append(torch.optim.AdamW(params, lr=h.lr, betas=(0.8, 0.9)))
        sched = [torch.optim.lr_scheduler.LambdaLR(o, lambda s: warmup_cosine(s, h.warmup_steps, h.max_steps))
                 for o in opts]
        return opts, [{"scheduler": s, "interval": "step"} for s in sched]


NEW_PARTS = {"speaker_dim": ("vocoder.reference.", "vocoder.speaker_proj."),
             "harmonic": ("vocoder.pitch.", "vocoder.harmonic_filter.", "vocoder.harmonic_gate")}


def _extend_vocoder(codec: NeuralCodec, **changes) -> NeuralCodec:
    """The same codec with a vocoder that gains voice conditioning (``speaker_dim``) and/or a harmonic source
    (``harmonic=True``): every shared weight carried over. The reference projection starts at zero (the
    audio is unchanged); the harmonic source starts sounding (its gate at 1, see ``speechlm.vocoder.model``)."""
    old = codec.vocoder_config
    if changes.get("speaker_dim") is not None and old.speaker_dim:
        raise SpeechLMError(f"the codec's vocoder is already voice-conditioned (speaker_dim {old.speaker_dim}); "
                            f"model.speaker_dim {changes['speaker_dim']} would drop that")
    if changes.get("harmonic") is False and old.harmonic:
        raise SpeechLMError("the codec's vocoder has a harmonic source; model.harmonic false would drop it")
    other = NeuralCodec(codec.codec_config, dataclasses.replace(old, **changes), codec.info.name, codec.info.version)
    missing, unexpected = other.load_state_dict(codec.state_dict(), strict=False)
    new = tuple(p for k in changes for p in NEW_PARTS[k])
    assert not unexpected and all(k.startswith(new) for k in missing)
    return other
