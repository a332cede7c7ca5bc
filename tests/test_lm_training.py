"""`speechlm train lm` end to end on a tiny corpus: manifests -> phonemes -> tokens -> training -> resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from speechlm.codec.model import CodecConfig
from speechlm.codec.neural import NeuralCodec
from speechlm.data.prepare import prepare
from speechlm.data.split import split_manifest
from speechlm.data.text_stage import run_text_stage
from speechlm.data.tokenize_stage import run_tokenize_stage
from speechlm.errors import SpeechLMError
from speechlm.text.tokenizer import TextTokenizer
from speechlm.train import main as train_main
from speechlm.vocoder.model import VocoderConfig

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "lm"


def tokenize_tiny_corpus(base: Path) -> tuple[Path, Path, int]:
    """16 utterances of 2 speakers -> split, phonemized, tokenized by a tiny codec (2 codebooks of 16).

    Returns ``(data dir, token dir, text vocab size)``, what ``_args`` takes.
    """
    from tests.conftest import Layouts

    words = ["apple", "river", "candle", "mountain", "yellow", "seven", "garden", "window"]
    lines = [f"u{i}|s{i % 2}|The {words[i % 8]} is number {i}." for i in range(16)]
    root = Layouts(base / "corpora").generic_table(lines=lines)
    out = base / "exp"
    prepare("generic", root, out, progress=False)
    split_manifest(out / "cuts.jsonl.gz", out, dev_fraction=0.25, test_fraction=0.0)
    run_text_stage(out, progress=False)
    torch.manual_seed(0)
    NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).save_pretrained(base / "codec")
    report = run_tokenize_stage(out, str(base / "codec"), shard_size=8, workers=1, progress=False)
    return out, Path(report.out_dir), TextTokenizer.load(out / "text" / "tokenizer.json").vocab_size


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    return tokenize_tiny_corpus(tmp_path_factory.mktemp("lm"))


def _args(out: Path, tokens: Path, vocab: int, run: Path) -> list[str]:
    return ["lm", "-c", str(CONFIGS / "base.yaml"), "-c", str(CONFIGS / "tiny.yaml"),
            "--data.data_dir", str(out), "--data.token_dir", str(tokens), "--model.text_vocab", str(vocab),
            "--model.n_codebooks", "2", "--model.codebook_size", "16", "--trainer.default_root_dir", str(run),
            "--trainer.logger", "false"]


def test_lm_trains_and_resumes(tokenized, tmp_path):
    out, tokens, vocab = tokenized
    args = _args(out, tokens, vocab, tmp_path / "run")
    assert train_main(args) == 0
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 4
    assert train_main(args + ["--trainer.max_steps", "6"]) == 0
    ckpt = torch.load(tmp_path / "run" / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 6
    export = tmp_path / "run" / "export" / "lm.json"
    assert json.loads(export.read_text())["step"] == 6
    export.unlink()  # a resume at a step already reached trains nothing and still exports those weights
    assert train_main(args + ["--trainer.max_steps", "6"]) == 0
    assert json.loads(export.read_text())["step"] == 6


def test_layout_mismatch_is_a_clear_error(tokenized, tmp_path):
    out, tokens, vocab = tokenized
    with pytest.raises(SpeechLMError, match="does not match the data"):
        train_main(_args(out, tokens, vocab + 5, tmp_path / "run"))
