"""Vocoders: token latent -> waveform models, GAN and spectral losses, LightningModule."""
