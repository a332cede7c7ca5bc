"""LM stages after pretraining: the export format, SFT's init_from, and LoRA voice adaptation through peft.

A tiny LM is pretrained for a few steps and exported; the LoRA stage (configs/lm/lora.yaml) adapts it
to one speaker, and its small adapter, loaded on top of the base export, reproduces the trained logits.
"""

from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from speechlm.errors import SpeechLMError
from speechlm.lm.data import collate
from speechlm.lm.export import ADAPTER_WEIGHTS, WEIGHTS, export_lm, lm_meta, load_lm, read_meta
from speechlm.lm.lightning import LMDataModule
from speechlm.lm.lora import count_parameters
from speechlm.lm.model import SpeechLM, lm_config
from speechlm.train import build_cli
from speechlm.train import main as train_main
from tests.test_lm_training import CONFIGS, _args, tokenize_tiny_corpus


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    return tokenize_tiny_corpus(tmp_path_factory.mktemp("lm"))


@pytest.fixture(scope="module")
def pretrained(tokenized, tmp_path_factory):
    """A tiny LM pretrained for 2 steps by `speechlm train lm`; returns its export folder."""
    run = tmp_path_factory.mktemp("pt")
    assert train_main(_args(*tokenized, run) + ["--trainer.max_steps", "2"]) == 0
    return run / "export"


def _batch(dm: LMDataModule, n: int = 2):
    return collate([dm.train_set[i] for i in range(n)], dm.layout)


def test_export_holds_weights_config_and_codec(tokenized, pretrained):
    out, _, vocab = tokenized
    lm, layout, meta = load_lm(pretrained)
    assert isinstance(lm, SpeechLM) and not lm.training
    assert (layout.text_vocab, layout.n_codebooks, layout.codebook_size) == (vocab, 2, 16)
    assert meta["size"] == "tiny" and meta["step"] == 2 and meta["codec"]["n_codebooks"] == 2
    assert (pretrained / "tokenizer.json").read_bytes() == (out / "text" / "tokenizer.json").read_bytes()
    ckpt = torch.load(pretrained.parent / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert all(torch.equal(v, ckpt["state_dict"][f"model.{k}"]) for k, v in lm.state_dict().items())


def test_export_refuses_mismatched_weights(tmp_path, pretrained):
    other = SpeechLM(lm_config("tiny", load_lm(pretrained).layout.stream_vocab))
    export_lm(tmp_path, other, read_meta(pretrained))  # a config from one model, weights from another ...
    meta = json.loads((tmp_path / "lm.json").read_text())
    (tmp_path / "lm.json").write_text(json.dumps({**meta, "weights_sha256": read_meta(pretrained)["weights_sha256"]}))
    with pytest.raises(SpeechLMError, match="checksum"):  # ... paired by hand: caught
        load_lm(tmp_path)


def test_sft_starts_from_the_pretrained_weights(tokenized, pretrained, tmp_path):
    cli = build_cli("lm", _args(*tokenized, tmp_path)[1:] + ["-c", str(CONFIGS / "sft.yaml"), "--model.size", "tiny",
                                                             "--model.init_from", str(pretrained)])
    base = load_lm(pretrained).model.state_dict()
    assert all(torch.equal(v, base[k]) for k, v in cli.model.model.state_dict().items())
    assert cli.model.hparams.lr < 3e-4  # a lower LR than pretraining
    meta = read_meta(cli.model.export(tmp_path / "continued"))  # the export names its origin
    assert meta["init_from"]["weights_sha256"] == read_meta(pretrained)["weights_sha256"]
    assert meta["total_steps"] == read_meta(pretrained)["step"] + meta["step"]
    with pytest.raises(SpeechLMError, match="model.size"):
        build_cli("lm", _args(*tokenized, tmp_path)[1:] + ["--model.size", "small",
                                                           "--model.init_from", str(pretrained)])


def test_speaker_filter(tokenized):
    out, tokens, _ = tokenized
    dm = LMDataModule(str(out), str(tokens), speakers=["s0"])
    dm.setup()
    assert dm.train_set.utts and {u.speaker for u in dm.train_set.utts} == {"s0"}
    with pytest.raises(SpeechLMError, match="no train utterance of speaker"):
        LMDataModule(str(out), str(tokens), speakers=["nobody"]).setup()


@pytest.mark.slow
def test_lora_trains_adapters_only_and_reloads_exactly(tokenized, pretrained, tmp_path):
    run = tmp_path / "lora"
    args = ["-c", str(CONFIGS / "base.yaml"), "-c", str(CONFIGS / "lora.yaml"), "-c", str(CONFIGS / "tiny.yaml"),
            *_args(*tokenized, run)[5:], "--model.init_from", str(pretrained), "--data.speakers", "[s0]",
            "--model.lora.r", "2", "--model.lora.alpha", "4", "--model.lr", "0.01", "--trainer.max_steps", "6"]
    cli = build_cli("lm", args)
    module = cli.model
    trainable, total = count_parameters(module.model, trainable=True), count_parameters(module.model)
    lora_params = sum(p.numel() for n, p in module.model.named_parameters() if "lora_" in n)
    assert trainable == lora_params and trainable < 0.05 * total
    cli.trainer.fit(module, datamodule=cli.datamodule)
    assert {u.speaker for u in cli.datamodule.train_set.utts} == {"s0"}

    base = load_lm(pretrained)
    trained = module.model.eval()
    frozen = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
              for k, v in trained.state_dict().items() if "lora_" not in k}
    assert all(torch.equal(frozen[k], v) for k, v in base.model.state_dict().items())  # base untouched

    inputs, _, _, _ = _batch(cli.datamodule)
    with torch.no_grad():
        before, after = base.model(inputs).logits, trained(inputs).logits
        assert any(not torch.allclose(a, b, atol=1e-4) for a, b in zip(after, before))  # training changed outputs

        export = run / "export"
        assert (export / ADAPTER_WEIGHTS).stat().st_size < 0.1 * (pretrained / WEIGHTS).stat().st_size
        saved = load_file(export / ADAPTER_WEIGHTS)  # A and B of 5 linear layers in each of 2 blocks, nothing else
        assert len(saved) == 2 * 5 * 2 and all("lora_" in k for k in saved)
        again = load_lm(pretrained, adapter=export, merge=False).model(inputs).logits
        assert all(torch.equal(a, b) for a, b in zip(again, after))  # the adapter reproduces training exactly
        merged = load_lm(pretrained, adapter=export).model
        assert isinstance(merged, SpeechLM)
        assert all(torch.allclose(a, b, atol=1e-5) for a, b in zip(merged(inputs).logits, after))

    other = tmp_path / "other"
    export_lm(other, SpeechLM(base.model.cfg), lm_meta("tiny", base.model, base.layout, None, step=0))
    with pytest.raises(SpeechLMError, match="other base weights"):
        load_lm(other, adapter=export)
