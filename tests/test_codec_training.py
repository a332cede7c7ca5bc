"""A real (tiny) codec training run through `speechlm train codec`, then a resumed run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speechlm.codec.neural import NeuralCodec
from speechlm.data.prepare import prepare
from speechlm.train import main as train_main
from tests.conftest import voiced

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "codec"


def test_tiny_codec_trains_exports_and_resumes(layouts, tmp_path):
    root = layouts.generic_table(lines=[f"u{i}|s|Sentence {i}." for i in range(6)])
    prepare("generic", root, tmp_path / "data", progress=False)
    manifest = str(tmp_path / "data" / "cuts.jsonl.gz")
    run = tmp_path / "run"
    args = ["codec", "-c", str(CONFIGS / "base.yaml"), "-c", str(CONFIGS / "tiny.yaml"),
            "--data.train_manifests", f"[{manifest}]", "--data.val_manifests", f"[{manifest}]",
            "--trainer.default_root_dir", str(run), "--model.export_dir", str(run / "export"),
            "--trainer.logger", "false"]
    assert train_main(args) == 0
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4
    codec = NeuralCodec.from_pretrained(run / "export")
    wav = voiced(1.0, 24000)
    assert codec.decode(codec.encode(wav), 24000).shape == (1, 24000)

    assert train_main(args + ["--trainer.max_steps", "6"]) == 0  # picks up last.ckpt
    resumed = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == 6
    assert resumed["optimizer_states"][0]["state"]  # optimizer moments came along


MRD_ONLY = ["--model.mpd_periods", "[]", "--model.mrd_weight", "1.0", "--model.mrd_channels", "4"]  # voice_mrd.yaml's


@pytest.mark.parametrize("overlay,extra", [(None, []), (None, MRD_ONLY), ("spectral.yaml", []),
                                           ("spectral.yaml+harmonic.yaml", []),
                                           ("spectral.yaml", ["--model.phase_weight", "1.0"])],
                         ids=["gan", "mrd-only", "spectral", "harmonic", "phase"])
def test_tiny_vocoder_stage_on_frozen_tokens(layouts, tmp_path, overlay, extra):
    root = layouts.generic_table(lines=[f"u{i}|s|Sentence {i}." for i in range(4)])
    prepare("generic", root, tmp_path / "data", progress=False)
    manifest = str(tmp_path / "data" / "cuts.jsonl.gz")
    torch.manual_seed(0)
    from speechlm.codec.model import CodecConfig
    from speechlm.vocoder.model import VocoderConfig

    start = NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny())
    start.save_pretrained(tmp_path / "codec")
    vocoder_cfgs = CONFIGS.parent / "vocoder"
    overlays = [a for name in overlay.split("+") for a in ("-c", str(vocoder_cfgs / name))] if overlay else []
    args = ["vocoder", "-c", str(vocoder_cfgs / "base.yaml"), *overlays, "-c", str(vocoder_cfgs / "tiny.yaml"),
            "--model.codec_dir", str(tmp_path / "codec"), "--data.train_manifests", f"[{manifest}]",
            "--data.val_manifests", f"[{manifest}]", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--model.export_dir", str(tmp_path / "run" / "export"), "--trainer.logger", "false", *extra]
    assert train_main(args) == 0
    tuned = NeuralCodec.from_pretrained(tmp_path / "run" / "export")
    assert tuned.harmonic == ("harmonic" in (overlay or ""))
    before, after = start.state_dict(), tuned.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("tokenizer."))  # tokens frozen
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("vocoder."))  # vocoder learned
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    discriminators = {k.split(".")[0] for k in ckpt["state_dict"] if k.startswith(("mpd.", "mrd."))}
    assert discriminators == (set() if overlay else {"mrd"} if extra == MRD_ONLY else {"mpd", "mrd"})
    assert len(ckpt["optimizer_states"]) == (1 if overlay else 2)
    assert ckpt["hyper_parameters"]["phase_weight"] == (1.0 if "--model.phase_weight" in extra else 0.0)
    if extra == MRD_ONLY:  # the narrow MRD: 4 channels in its first convolution
        assert ckpt["state_dict"]["mrd.discriminators.0.band_convs.0.0.bias"].shape == (4,)


def test_tiny_codec_with_pitch_target_from_an_export(layouts, tmp_path):
    """configs/codec/pitch.yaml's path: start from an exported codec, add the pitch head, export a new
    version without the head; a start of another shape is refused by name."""
    from speechlm.codec.lightning import CodecModule
    from speechlm.codec.model import CodecConfig
    from speechlm.errors import SpeechLMError
    from speechlm.vocoder.model import VocoderConfig

    root = layouts.generic_table(lines=[f"u{i}|s|Sentence {i}." for i in range(4)])
    prepare("generic", root, tmp_path / "data", progress=False)
    manifest = str(tmp_path / "data" / "cuts.jsonl.gz")
    torch.manual_seed(0)
    tiny = dict(codec={"dim": 16, "blocks_per_stage": 1, "latent_dim": 8, "n_codebooks": 2, "fsq_levels": [4, 4],
                       "n_mels": 20},
                vocoder={"latent_dim": 8, "dim": 16, "intermediate_dim": 32, "num_layers": 1, "n_fft": 480})
    start = NeuralCodec(CodecConfig(**tiny["codec"]), VocoderConfig(**tiny["vocoder"]))
    start.save_pretrained(tmp_path / "start")

    module = CodecModule(CodecConfig(**tiny["codec"]), VocoderConfig(**tiny["vocoder"]),
                         init_from=str(tmp_path / "start"), pitch_weight=1.0, version="3")
    assert all(torch.equal(v, module.model.state_dict()[k]) for k, v in start.state_dict().items())
    with pytest.raises(SpeechLMError, match="init_from needs the same shapes"):
        CodecModule(CodecConfig(**{**tiny["codec"], "dim": 24}), VocoderConfig(**tiny["vocoder"]),
                    init_from=str(tmp_path / "start"))

    run = tmp_path / "run"
    args = ["codec", "-c", str(CONFIGS / "base.yaml"), "-c", str(CONFIGS / "tiny.yaml"),
            "--model.init_from", str(tmp_path / "start"), "--model.pitch_weight", "1.0", "--model.version", "3",
            "--data.train_manifests", f"[{manifest}]", "--data.val_manifests", f"[{manifest}]",
            "--trainer.default_root_dir", str(run), "--model.export_dir", str(run / "export")]
    assert train_main(args) == 0
    metrics = (next(run.glob("lightning_logs/*/metrics.csv"))).read_text().splitlines()[0]
    assert "train/pitch" in metrics and "val/voicing_acc" in metrics
    tuned = NeuralCodec.from_pretrained(run / "export")
    assert tuned.info.version == "3"
    assert tuned.state_dict().keys() == start.state_dict().keys()  # the pitch head is not part of the codec
    assert not all(torch.equal(v, tuned.state_dict()[k]) for k, v in start.state_dict().items())


def test_encoder_band_limit_hides_the_high_band_only():
    """codec.encoder_max_hz (configs/codec/band.yaml): a tone above the limit cannot reach the encoder, while
    without the limit it changes the top bands; bands below the limit are untouched."""
    import math

    from speechlm.codec.model import CodecConfig, SpeechTokenizer
    from speechlm.errors import SpeechLMError

    torch.manual_seed(0)
    full = SpeechTokenizer(CodecConfig.tiny())
    limited = SpeechTokenizer(CodecConfig(**{**CodecConfig.tiny().__dict__, "encoder_max_hz": 7000.0}))
    kept = limited.encoder_bands
    assert 0 < int(kept.sum()) < len(kept) and kept[: int(kept.sum())].all()  # the lowest bands, contiguous
    speech = torch.from_numpy(voiced(1.0, 24000))[None]
    tone = 0.1 * torch.sin(2 * math.pi * 10_000 * torch.arange(24000) / 24000)
    inner = slice(2, -2)  # the first and last frames see the tone's cut edges (reflect padding): broadband
    heard = (limited.features(speech + tone) - limited.features(speech))[..., inner].abs().amax(dim=(0, 2))
    changed = (full.features(speech + tone) - full.features(speech))[..., inner].abs().amax(dim=(0, 2))
    assert changed[~kept].max() > 1.0  # without the limit the tone lifts the top bands by e-fold and more
    assert heard[~kept].max() == 0 and heard.max() < 0.05  # with it: nothing but the window's far leakage
    assert torch.equal(limited.features(speech)[:, kept], full.features(speech)[:, kept])
    assert (limited.features(speech)[:, ~kept] == math.log(1e-5)).all()
    with pytest.raises(SpeechLMError, match="encoder_max_hz"):
        CodecConfig(encoder_max_hz=20_000.0)


def test_voice_conditioned_codec_fine_tunes_with_a_band_limit(layouts, tmp_path):
    """configs/codec/real.yaml + band.yaml's path: the whole codec (tokenizer too) fine-tunes from a
    voice-conditioned export on (crop, reference) batches, with another encoder_max_hz than the start's."""
    from speechlm.codec.model import CodecConfig
    from speechlm.vocoder.model import VocoderConfig

    root = layouts.generic_table(lines=[f"u{i}|s{i % 2}|Sentence {i}." for i in range(4)])
    prepare("generic", root, tmp_path / "data", progress=False)
    manifest = str(tmp_path / "data" / "cuts.jsonl.gz")
    torch.manual_seed(0)
    start = NeuralCodec(CodecConfig.tiny(), VocoderConfig(**{**VocoderConfig.tiny().__dict__, "speaker_dim": 8}))
    start.save_pretrained(tmp_path / "start")
    run = tmp_path / "run"
    args = ["codec", "-c", str(CONFIGS / "base.yaml"), "-c", str(CONFIGS / "real.yaml"), "-c", str(CONFIGS / "band.yaml"),
            "-c", str(CONFIGS / "tiny.yaml"), "--model.vocoder.speaker_dim", "8",
            "--model.init_from", str(tmp_path / "start"), "--data.train_manifests", f"[{manifest}]",
            "--data.train_weights", "null", "--data.val_manifests", f"[{manifest}]",
            "--data.reference_seconds", "0.5", "--trainer.default_root_dir", str(run),
            "--model.export_dir", str(run / "export"), "--trainer.logger", "false"]
    assert train_main(args) == 0
    tuned = NeuralCodec.from_pretrained(run / "export")
    assert tuned.info.version == "4" and tuned.codec_config.encoder_max_hz == 7000.0 and tuned.speaker_dim == 8
    before, after = start.state_dict(), tuned.state_dict()
    for part in ("tokenizer.encoder.", "vocoder.backbone.", "vocoder.speaker_proj."):  # all of it learned
        assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith(part)), part
    wav = voiced(1.0, 24000)
    assert tuned.decode(tuned.encode(wav), 24000, speaker=tuned.speaker_embedding(wav, 24000)).shape == (1, 24000)


@pytest.mark.parametrize("warmup", [0, 2])
def test_discriminator_warmup_keeps_its_verdicts_from_the_generator(layouts, tmp_path, warmup):
    import csv

    root = layouts.generic_table(lines=[f"u{i}|s|Sentence {i}." for i in range(4)])
    prepare("generic", root, tmp_path / "data", progress=False)
    manifest = str(tmp_path / "data" / "cuts.jsonl.gz")
    torch.manual_seed(0)
    from speechlm.codec.model import CodecConfig
    from speechlm.vocoder.model import VocoderConfig

    NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).save_pretrained(tmp_path / "codec")
    vocoder_cfgs = CONFIGS.parent / "vocoder"
    args = ["vocoder", "-c", str(vocoder_cfgs / "base.yaml"), "-c", str(vocoder_cfgs / "tiny.yaml"),
            "--model.codec_dir", str(tmp_path / "codec"), "--data.train_manifests", f"[{manifest}]",
            "--data.val_manifests", f"[{manifest}]", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--model.export_dir", str(tmp_path / "run" / "export"), *MRD_ONLY,
            "--model.disc_warmup_steps", str(warmup)]
    assert train_main(args) == 0
    with open(next((tmp_path / "run").rglob("metrics.csv")), newline="") as f:
        rows = [r for r in csv.DictReader(f) if r.get("train/gen")]
    assert len(rows) == 2  # 4 steps: 2 discriminator + 2 generator updates
    disc = [bool(r["train/disc"]) for r in rows]
    adv = [bool(r.get("train/adv")) for r in rows]
    assert disc == [True, True]  # the discriminator trains from the start either way
    assert adv == ([True, True] if warmup == 0 else [False, True])  # its verdicts reach the generator after the warmup
