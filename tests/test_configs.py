"""Every YAML under configs/ parses with the command that consumes it and builds its objects."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from speechlm.cli import build_parser, corpus_config, prepare_options
from speechlm.corpus.voices import VOICES
from speechlm.data.corpora import SCANNERS
from speechlm.text.frontend import TextFrontend

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
ALL = sorted(CONFIGS.rglob("*.yaml"))


def _build(path: Path, tmp_path: Path):
    """Parse ``path`` the way its command does and return the object(s) the command would build."""
    rel = path.relative_to(CONFIGS).as_posix()
    parser = build_parser()
    if rel.startswith("data/prepare/"):
        cfg = parser.parse_args(["data", "prepare", "-c", str(path), "--root", str(tmp_path), "--out", "o"])
        args = cfg.data.prepare
        assert args.corpus == path.stem and args.corpus in SCANNERS  # file name = corpus it configures
        return prepare_options(args)
    if rel.startswith("data/synth_"):
        args = parser.parse_args(["data", "synth", "-c", str(path), "--out", "o"]).data.synth
        config = corpus_config(args)
        assert set(config.voices) <= set(VOICES)
        return config
    if rel == "data/split.yaml":
        args = parser.parse_args(["data", "split", "-c", str(path), "--manifest", "m", "--out", "o"]).data.split
        assert 0 <= args.dev_fraction + args.test_fraction < 1
        return args
    if rel.startswith("data/text_"):
        args = parser.parse_args(["data", "text", "-c", str(path), "--dir", "d"]).data.text
        return TextFrontend(args.language, args.backend)
    if rel.startswith(("codec/", "vocoder/")):
        from speechlm.train import build_cli

        stage = rel.split("/")[0]
        args = ["-c", str(CONFIGS / stage / "base.yaml")]
        if path.name != "base.yaml":
            args += ["-c", str(path)]
        if stage == "vocoder":  # stage 2 starts from a stage-1 export: give it a tiny one
            from speechlm.codec.model import CodecConfig
            from speechlm.codec.neural import NeuralCodec
            from speechlm.vocoder.model import VocoderConfig

            NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).save_pretrained(tmp_path / "codec")
            args += ["--model.codec_dir", str(tmp_path / "codec")]
        overrides = yaml.safe_load(path.read_text()).get("model") or {}
        if stage == "codec" and overrides.get("init_from"):
            from speechlm.codec.model import CodecConfig  # a fine-tune (pitch.yaml) starts from an export
            from speechlm.codec.neural import NeuralCodec  # of base.yaml's shapes + the config's vocoder changes
            from speechlm.vocoder.model import VocoderConfig

            vocoder = VocoderConfig(**(overrides.get("vocoder") or {}))
            NeuralCodec(CodecConfig(), vocoder).save_pretrained(tmp_path / "start")
            args += ["--model.init_from", str(tmp_path / "start")]
        # No GPU here: the GPU overlay's keys are still parsed and validated, its devices swapped for CPU.
        args += ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "auto",
                 "--trainer.precision", "32-true", "--trainer.default_root_dir", str(tmp_path)]
        cli = build_cli(stage, args)
        assert cli.model.model.frame_rate <= 25 and cli.model.model.bitrate <= 1000
        return cli.model
    if rel.startswith("lm/"):
        from speechlm.train import build_cli

        args = ["-c", str(CONFIGS / "lm/base.yaml")] + (["-c", str(path)] if path.name != "base.yaml" else [])
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        _check_strategy((raw.get("trainer") or {}).get("strategy"))
        if (raw.get("model") or {}).get("init_from"):  # SFT / LoRA start from an LM export: give them a tiny one
            args += ["--model.size", "tiny", "--model.init_from", str(_tiny_lm_export(tmp_path / "export"))]
        args += ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.strategy", "auto",
                 "--trainer.precision", "32-true", "--trainer.default_root_dir", str(tmp_path)]
        cli = build_cli("lm", args)
        assert cli.model.model.num_params() > 0 and cli.trainer.max_steps > 0
        return cli.model
    if rel.startswith("demo/"):
        from speechlm.demo.config import check, from_namespace

        cfg = check(from_namespace(parser.parse_args(["demo", "-c", str(path)]).demo))
        assert cfg.host == "127.0.0.1" and not cfg.share, "the shipped demo config serves localhost, no public link"
        return cfg
    raise AssertionError(f"no builder for {rel}: teach tests/test_configs.py which command consumes it")


def _check_strategy(strategy) -> None:
    """A strategy the GPU overlays name: a registered name, or a class_path that builds without a GPU.

    The Trainer itself is built on CPU with ``strategy: auto`` (FSDP refuses a CPU accelerator and
    DeepSpeed is not installed here), so this is where the overlay's strategy is checked.
    """
    if strategy is None or isinstance(strategy, str):
        from lightning.pytorch.strategies import StrategyRegistry

        assert strategy is None or strategy in StrategyRegistry, f"unknown strategy {strategy!r}"
        return
    from jsonargparse import ArgumentParser
    from lightning.pytorch.strategies import Strategy

    parser = ArgumentParser()
    parser.add_argument("--strategy", type=Strategy)
    built = parser.instantiate(parser.parse_object({"strategy": strategy})).strategy
    assert isinstance(built, Strategy)


def _tiny_lm_export(out: Path) -> Path:
    """A tiny LM export with base.yaml's layout (what sft.yaml / lora.yaml start from)."""
    from speechlm.lm.export import export_lm, lm_meta
    from speechlm.lm.layout import TokenLayout
    from speechlm.lm.model import SpeechLM, lm_config

    base = yaml.safe_load((CONFIGS / "lm/base.yaml").read_text(encoding="utf-8"))["model"]
    layout = TokenLayout(base["text_vocab"], base["n_codebooks"], base["codebook_size"])
    model = SpeechLM(lm_config("tiny", layout.stream_vocab))
    return export_lm(out, model, lm_meta("tiny", model, layout, None, step=0))


def test_configs_exist():
    assert len(ALL) >= 10


@pytest.mark.parametrize("path", ALL, ids=lambda p: p.relative_to(CONFIGS).as_posix())
def test_config_builds(path, tmp_path):
    text = path.read_text(encoding="utf-8")
    assert text.startswith("#"), "each config opens with a comment on how to run and override it"
    assert "Run:" in text.split("\n\n")[0] or "Run:" in text[:600]
    yaml.safe_load(text)
    assert _build(path, tmp_path) is not None


def test_stacked_configs_later_file_wins(tmp_path):
    override = tmp_path / "mine.yaml"
    override.write_text("check:\n  max_duration: 7.5\nskip_bad: true\n", encoding="utf-8")
    cfg = build_parser().parse_args(["data", "prepare", "-c", str(CONFIGS / "data/prepare/ljspeech.yaml"),
                                     "-c", str(override), "--root", "r", "--out", "o"])
    opts = prepare_options(cfg.data.prepare)
    assert opts.check.max_duration == 7.5 and opts.skip_bad and opts.language == "en"


def test_synth_overrides_apply_on_top_of_preset():
    args = build_parser().parse_args(["data", "synth", "-c", str(CONFIGS / "data/synth_tiny.yaml"), "--out", "o",
                                      "--corpus", '{"n_sentences": 30}']).data.synth
    config = corpus_config(args)
    assert config.n_sentences == 30 and config.voices == corpus_config(
        build_parser().parse_args(["data", "synth", "--size", "tiny", "--out", "o"]).data.synth).voices
