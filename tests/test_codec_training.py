"""A real (tiny) codec training run through `speechlm train codec`, then a resumed run."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from speechlm.codec.neural import NeuralCodec
from speechlm.data.prepare import prepare
from speechlm.errors import SpeechLMError
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


@pytest.mark.parametrize("overlay", [None, "spectral.yaml"], ids=["gan", "spectral"])
def test_tiny_vocoder_stage_on_frozen_tokens(layouts, tmp_path, overlay):
    root = layouts.generic_table(lines=[f"u{i}|s|Sentence {i}." for i in range(4)])
    prepare("generic", root, tmp_path / "data", progress=False)
    manifest = str(tmp_path / "data" / "cuts.jsonl.gz")
    torch.manual_seed(0)
    from speechlm.codec.model import CodecConfig
    from speechlm.vocoder.model import VocoderConfig

    start = NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny())
    start.save_pretrained(tmp_path / "codec")
    vocoder_cfgs = CONFIGS.parent / "vocoder"
    overlays = ["-c", str(vocoder_cfgs / overlay)] if overlay else []
    args = ["vocoder", "-c", str(vocoder_cfgs / "base.yaml"), *overlays, "-c", str(vocoder_cfgs / "tiny.yaml"),
            "--model.codec_dir", str(tmp_path / "codec"), "--data.train_manifests", f"[{manifest}]",
            "--data.val_manifests", f"[{manifest}]", "--trainer.default_root_dir", str(tmp_path / "run"),
            "--model.export_dir", str(tmp_path / "run" / "export"), "--trainer.logger", "false"]
    assert train_main(args) == 0
    tuned = NeuralCodec.from_pretrained(tmp_path / "run" / "export")
    before, after = start.state_dict(), tuned.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before if k.startswith("tokenizer."))  # tokens frozen
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("vocoder."))  # vocoder learned
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    has_discriminators = any(k.startswith(("mpd.", "mrd.")) for k in ckpt["state_dict"])
    assert has_discriminators == (overlay is None) and len(ckpt["optimizer_states"]) == (2 if overlay is None else 1)


def test_phoneme_supervision_trains_the_first_level(layouts, tmp_path):
    """The codec run with CTC on codebook 0: whole phonemized utterances beside the crops, version kept."""
    from speechlm.codec.model import CodecConfig
    from speechlm.codec.semantic import PhonemeUtterances, ctc_targets
    from speechlm.data.split import split_manifest
    from speechlm.data.text_stage import run_text_stage
    from speechlm.text.tokenizer import TextTokenizer
    from speechlm.vocoder.model import VocoderConfig

    root = layouts.generic_table(lines=[f"u{i}|s|Sentence {i}." for i in range(6)])
    prepare("generic", root, tmp_path / "data", progress=False)
    split_manifest(tmp_path / "data" / "cuts.jsonl.gz", tmp_path / "data", dev_fraction=0.0, test_fraction=0.0)
    run_text_stage(tmp_path / "data", progress=False)
    phonemized, tok_file = tmp_path / "data" / "text" / "cuts_train.jsonl.gz", tmp_path / "data" / "text" / "tokenizer.json"
    tok = TextTokenizer.load(tok_file)
    ids = ctc_targets(tok, "sˈɛntəns wˈʌn.")
    assert ids == [tok.encode(s)[0] for s in "sɛntənswʌn"]  # no stress marks, spaces or punctuation
    utts = PhonemeUtterances([str(phonemized)], str(tok_file), 24000, 25.0)
    assert len(utts) == 6 and utts[0][0].dim() == 1

    torch.manual_seed(0)
    NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).save_pretrained(tmp_path / "start")
    manifest = str(tmp_path / "data" / "cuts.jsonl.gz")
    run = tmp_path / "run"
    args = ["codec", "-c", str(CONFIGS / "base.yaml"), "-c", str(CONFIGS / "phonemes.yaml"), "-c", str(CONFIGS / "tiny.yaml"),
            "--model.init_from", str(tmp_path / "start"), "--model.phoneme_vocab", str(tok.vocab_size),
            "--data.phoneme_manifests", f"[{phonemized}]", "--data.tokenizer", str(tok_file),
            "--data.phoneme_batch_size", "2", "--data.train_manifests", f"[{manifest}]",
            "--data.val_manifests", f"[{manifest}]", "--trainer.default_root_dir", str(run),
            "--model.export_dir", str(run / "export")]
    assert train_main(args) == 0
    assert "train/phoneme_ctc" in next(run.rglob("metrics.csv")).read_text().splitlines()[0]
    codec = NeuralCodec.from_pretrained(run / "export")
    assert codec.info.version == "3"  # its tokens are not the v2 codec's
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert any(k.startswith("phoneme_head.") for k in ckpt["state_dict"])
    # a vocab that is not the tokenizer's is named, not a shape error deep in CTC
    with pytest.raises(SpeechLMError, match="phoneme_vocab"):
        train_main(args[:-4] + ["--model.phoneme_vocab", str(tok.vocab_size + 1), "--trainer.default_root_dir",
                                str(tmp_path / "run2"), "--model.export_dir", str(tmp_path / "run2" / "export")])
