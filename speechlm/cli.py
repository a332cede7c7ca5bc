"""The ``speechlm`` command. Thin: every subcommand parses its options and calls one library function.

Options come from flags and from stackable YAML files (``-c base.yaml -c override.yaml``; later
values win, flags win over files), parsed by jsonargparse, the same parser LightningCLI uses.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path

from jsonargparse import ActionConfigFile, ArgumentParser

from speechlm import __version__
from speechlm.errors import SpeechLMError

CODEC_HELP = "default | a saved codec folder | encodec_24khz[@kbps]"
MODEL_HELP = "default (the bundled pipeline) | a pipeline folder (Pipeline.save_pretrained)"
CORPORA = ("synthetic", "ljspeech", "libritts", "vctk", "librispeech", "fsdd", "generic")


def _leaf(description: str) -> ArgumentParser:
    p = ArgumentParser(description=description)
    p.add_argument("-c", "--config", action=ActionConfigFile, help="YAML config file(s); stack several")
    return p


def build_parser() -> ArgumentParser:
    from speechlm.data.prepare import PrepareOptions

    parser = ArgumentParser(prog="speechlm", description=__doc__.splitlines()[0])
    parser.add_argument("--version", action="version", version=f"speechlm {__version__}")
    top = parser.add_subcommands(dest="command")

    data = ArgumentParser(description="Corpora -> manifests -> model inputs (see data_recipes/).")
    top.add_subcommand("data", data)  # jsonargparse wants levels added top-down
    sub = data.add_subcommands(dest="data_command")

    prep = _leaf("Scan a corpus, check every transcript and audio file, write <out>/cuts.jsonl.gz.")
    prep.add_argument("corpus", choices=CORPORA, help="corpus layout")
    prep.add_argument("--root", type=str, required=True, help="corpus folder")
    prep.add_argument("--out", type=str, required=True, help="output folder for manifests")
    prep.add_class_arguments(PrepareOptions, None)
    sub.add_subcommand("prepare", prep)

    synth = _leaf("Build the embedded synthetic corpus with offline Debian speech engines.")
    synth.add_argument("--size", choices=("tiny", "default"), default="default")
    synth.add_argument("--out", type=str, required=True)
    synth.add_argument("--workers", type=int | None, default=None)
    synth.add_argument("--corpus", type=dict | None, default=None,
                       help="overrides of CorpusConfig fields on top of the --size preset")
    sub.add_subcommand("synth", synth)

    split = _leaf("Split <manifest> into cuts_{train,dev,test}.jsonl.gz (keeps a corpus's own splits).")
    split.add_argument("--manifest", type=str, required=True)
    split.add_argument("--out", type=str, required=True)
    split.add_argument("--dev_fraction", type=float, default=0.05)
    split.add_argument("--test_fraction", type=float, default=0.05)
    split.add_argument("--by", choices=("text", "speaker"), default="text")
    split.add_argument("--seed", type=int, default=0)
    split.add_argument("--force", type=bool, default=False)
    sub.add_subcommand("split", split)

    text = _leaf("Phonemize split manifests and build the text tokenizer from the train split.")
    text.add_argument("--dir", type=str, required=True, help="folder holding cuts_{train,dev,test}.jsonl.gz")
    text.add_argument("--language", type=str, default="en")
    text.add_argument("--backend", choices=("auto", "espeak", "char"), default="auto")
    text.add_argument("--force", type=bool, default=False)
    sub.add_subcommand("text", text)

    chat = _leaf("Write the chat turns (closed-domain Q/A) phonemized with the text stage's tokenizer.")
    chat.add_argument("--dir", type=str, required=True, help="folder whose text/tokenizer.json the text stage wrote")
    chat.add_argument("--language", type=str, default="en")
    chat.add_argument("--backend", choices=("auto", "espeak", "char"), default="auto")
    chat.add_argument("--force", type=bool, default=False)
    sub.add_subcommand("chat", chat)

    stats = _leaf("Print utterances, hours, speakers and durations of a manifest.")
    stats.add_argument("manifest", type=str)
    sub.add_subcommand("stats", stats)

    tok = _leaf("Encode the split manifests into token shards (<dir>/tokens/<codec>/) for LM training.")
    tok.add_argument("--dir", type=str, required=True, help="folder holding cuts_{train,dev,test}.jsonl.gz")
    tok.add_argument("--codec", type=str, default="default", help=CODEC_HELP)
    tok.add_argument("--shard_size", type=int, default=500)
    tok.add_argument("--workers", type=int | None, default=None)
    tok.add_argument("--force", type=bool, default=False)
    sub.add_subcommand("tokenize", tok)

    codec = ArgumentParser(description="Speech <-> tokens with a codec (default: the bundled one).")
    top.add_subcommand("codec", codec)
    csub = codec.add_subcommands(dest="codec_command")
    for name, a, b, what in (("encode", "input", "output", "audio file -> token file"),
                             ("decode", "input", "output", "token file -> WAV"),
                             ("resynth", "input", "output", "audio file -> tokens -> WAV")):
        leaf = _leaf(what)
        leaf.add_argument(a, type=str)
        leaf.add_argument(b, type=str)
        leaf.add_argument("--codec", type=str, default="default", help=CODEC_HELP)
        leaf.add_argument("--n_codebooks", type=int | None, default=None, help="fewer codebooks = lower bitrate")
        if name != "encode":
            leaf.add_argument("--reference", type=str | None, default=None,
                              help="a clip of the voice, for a voice-conditioned codec's decoder "
                                   + ("(default: the input itself)" if name == "resynth" else "(default: none)"))
        csub.add_subcommand(name, leaf)

    say = _leaf("Speak a text into a WAV file.")
    say.add_argument("text", type=str)
    say.add_argument("-o", "--output", type=str, required=True, help="WAV file to write")
    _synthesis_arguments(say)
    say.add_argument("--batch_size", type=int, default=8, help="sentences generated together")
    top.add_subcommand("say", say)

    syn = _leaf("Synthesize every text of a .txt (one per line) or .jsonl file into WAVs + manifest.jsonl; "
                "re-running resumes.")
    syn.add_argument("--input", type=str, required=True, help=".txt or .jsonl ({id, text, voice, voice_text, seed})")
    syn.add_argument("--out_dir", type=str, required=True)
    _synthesis_arguments(syn)
    syn.add_argument("--batch_size", type=int, default=8, help="texts generated together")
    syn.add_argument("--devices", type=int, default=1, help="processes (ddp_spawn through Lightning's predict loop)")
    syn.add_argument("--accelerator", type=str, default="cpu")
    syn.add_argument("--progress", type=bool, default=True)
    top.add_subcommand("synthesize", syn)

    pipe = ArgumentParser(description="Pipeline folders (the model `say` and `synthesize` load).")
    top.add_subcommand("pipeline", pipe)
    psub = pipe.add_subcommands(dest="pipeline_command")
    build = _leaf("Assemble a pipeline folder from a trained codec, LM and tokenizer, plus voice presets.")
    build.add_argument("--codec", type=str, required=True, help=CODEC_HELP)
    build.add_argument("--lm", type=str, required=True, help="LM folder (lm.json + lm.safetensors)")
    build.add_argument("--tokenizer", type=str | None, default=None,
                       help="tokenizer.json the LM was trained with (default: the one in the LM folder)")
    build.add_argument("--out", type=str, required=True)
    build.add_argument("--language", type=str, default="en")
    build.add_argument("--backend", choices=("auto", "espeak", "char"), default="auto")
    build.add_argument("--voices", type=str | None, default=None,
                       help=".jsonl of presets: {name, audio, text, speaker}; audio relative to the file")
    build.add_argument("--default_voice", type=str | None, default=None)
    build.add_argument("--note", type=str, default="", help="a line for MODEL_CARD.md")
    build.add_argument("--defaults", type=dict | None, default=None,
                       help="synthesis defaults stored in pipeline.json, e.g. '{temperature: 0.7, cpu_quantize: null}' "
                            "(fields of SynthesisDefaults in speechlm/synthesis/bundle.py)")
    psub.add_subcommand("build", build)

    from speechlm.demo.config import DemoConfig

    demo = _leaf("Serve the Gradio demo (text-to-speech, voice chat) on this machine: configs/demo/default.yaml.")
    demo.add_class_arguments(DemoConfig, None)
    top.add_subcommand("demo", demo)

    from speechlm.eval.cli import add_eval_arguments

    evaluate = _leaf("Score synthesized audio: WER/CER, speaker similarity, DNSMOS, duration, codec fidelity.")
    top.add_subcommand("eval", add_eval_arguments(evaluate))

    from speechlm.mos.cli import add_mos_subcommands

    add_mos_subcommands(top)
    return parser


def _synthesis_arguments(p: ArgumentParser) -> None:
    p.add_argument("--model", type=str, default="default", help=MODEL_HELP)
    p.add_argument("--voice", type=str | None, default=None, help="reference audio of the wanted voice (3-6 s)")
    p.add_argument("--voice_text", type=str | None, default=None,
                   help="what the reference says (otherwise the LM transcribes it)")
    p.add_argument("--speaker", type=str | None, default=None, help="a voice preset of the pipeline")
    p.add_argument("--seed", type=int | None, default=0)
    p.add_argument("--temperature", type=float | None, default=None, help="default: the pipeline's")
    p.add_argument("--top_k", type=int | None, default=None)
    p.add_argument("--top_p", type=float | None, default=None)
    p.add_argument("--cfg_scale", type=float | None, default=None,
                   help="classifier-free guidance (1: off; default: the pipeline's)")
    p.add_argument("--candidates", type=int | None, default=None,
                   help="best of N: takes per sentence, the one the LM's asr task reads best is kept "
                        "(default: the pipeline's)")
    p.add_argument("--max_frames", type=int | None, default=None,
                   help="cap on frames per sentence (default: the length guard, from the text's length)")
    p.add_argument("--quantize", choices=("auto", "none", "int8"), default="auto",
                   help="LM int8 dynamic quantization on CPU; auto: as the pipeline folder says (int8 by default)")
    p.add_argument("--threads", type=int | None, default=None, help="torch CPU threads (per process)")


def _synthesis_options(args) -> dict:
    return {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
            "cfg_scale": args.cfg_scale, "candidates": args.candidates, "max_frames": args.max_frames}


def _voice_arg(args) -> str | None:
    if args.voice and args.speaker:
        raise SpeechLMError("give --voice (reference audio) or --speaker (a preset), not both")
    if args.voice and not Path(args.voice).exists():
        raise SpeechLMError(f"{args.voice}: reference audio not found")
    return args.voice or args.speaker


def _run_say(args) -> int:
    import torch

    from speechlm.inference import Pipeline
    from speechlm.synthesis.batch import check_writable

    voice = _voice_arg(args)
    check_writable(Path(args.output).resolve().parent)
    if args.threads:
        torch.set_num_threads(args.threads)
    tts = Pipeline.from_pretrained(args.model, quantize=None if args.quantize == "none" else args.quantize)
    r = tts.synthesize(args.text, voice, voice_text=args.voice_text, seed=args.seed, batch_size=args.batch_size,
                       **_synthesis_options(args))
    _write_wav(args.output, r.audio, r.sample_rate)
    skipped = sum(s.status != "ok" for s in r.segments)
    print(f"{args.output}: {r.duration:.2f} s at {r.sample_rate} Hz, {len(r.segments)} piece(s)"
          + (f" ({skipped} with nothing speakable, skipped)" if skipped else "")
          + f", first audio after {r.timings.first_audio_s:.2f} s, RTF {r.timings.rtf:.2f}")
    return 0


def _run_synthesize(args) -> int:
    import os

    from speechlm.synthesis.batch import run_batch

    voice = _voice_arg(args)
    threads = args.threads or max(1, (os.cpu_count() or 1) // max(1, args.devices))
    summary = run_batch(args.model, args.input, args.out_dir, voice=voice, seed=args.seed, batch_size=args.batch_size,
                        devices=args.devices, accelerator=args.accelerator, options=_synthesis_options(args),
                        quantize=None if args.quantize == "none" else args.quantize, threads=threads,
                        progress=args.progress)
    print(summary)
    return 0 if summary.failed == 0 else 2


def _run_pipeline(cfg) -> int:
    from speechlm.codec.registry import load_codec
    from speechlm.inference import Pipeline
    from speechlm.lm.export import load_lm
    from speechlm.text.frontend import TextFrontend
    from speechlm.text.tokenizer import TextTokenizer

    args = cfg.build
    lm, layout, meta = load_lm(args.lm)
    codec = load_codec(args.codec, layout.n_codebooks)
    if meta.get("codec") and meta["codec"] != codec.info.to_dict():
        raise SpeechLMError(f"{args.lm} was trained on tokens of {meta['codec']}, not of --codec {args.codec} "
                            f"({codec.info.to_dict()})")
    tokenizer = TextTokenizer.load(args.tokenizer or Path(args.lm) / "tokenizer.json")
    tts = Pipeline(codec, lm, layout, tokenizer, TextFrontend(args.language, args.backend), lm_meta=meta)
    if args.voices:
        base = Path(args.voices).parent
        for n, line in enumerate(Path(args.voices).read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                v = json.loads(line)
                tts.add_voice(v["name"], base / v["audio"], text=v.get("text"), speaker=v.get("speaker", ""))
            except (json.JSONDecodeError, KeyError, TypeError) as e:
                raise SpeechLMError(f"{args.voices}:{n}: expected {{name, audio, text, speaker}} ({e})") from None
    if args.defaults:
        from speechlm.synthesis.bundle import with_defaults

        tts.defaults = with_defaults(tts.defaults, args.defaults, "--defaults")
    if args.default_voice is not None:
        if args.default_voice not in tts.voices:
            raise SpeechLMError(f"--default_voice {args.default_voice!r} is not one of the presets {sorted(tts.voices)}")
        tts.default_voice = args.default_voice
    out = tts.save_pretrained(args.out, note=args.note)
    print(f"{out}: {tts}")
    return 0


def _bool_flags() -> set[str]:
    from speechlm.data.prepare import PrepareOptions

    names = {f.name for f in dataclasses.fields(PrepareOptions) if f.type in (bool, "bool")}
    return names | {"force", "progress", "share"}


def normalize_argv(argv: list[str]) -> list[str]:
    """Accept ``--skip-bad`` as well as jsonargparse's ``--skip_bad true``.

    Option names may use dashes or underscores, and a boolean option given bare means true.
    """
    bools = _bool_flags()
    out: list[str] = []
    for i, tok in enumerate(argv):
        if tok.startswith("--") and len(tok) > 2:
            name, eq, value = tok[2:].partition("=")
            name = name.replace("-", "_")
            tok = f"--{name}{eq}{value}"
            nxt = argv[i + 1].lower() if i + 1 < len(argv) else ""
            if not eq and name in bools and nxt not in ("true", "false", "yes", "no", "1", "0"):
                out.extend([tok, "true"])
                continue
        out.append(tok)
    return out


def prepare_options(args):
    """The ``PrepareOptions`` that ``speechlm data prepare`` builds from parsed flags and YAML."""
    from speechlm.data.audio import AudioCheck
    from speechlm.data.prepare import PrepareOptions

    fields = {f.name for f in dataclasses.fields(PrepareOptions)}
    opts = {k: v for k, v in vars(args).items() if k in fields}
    opts["check"] = AudioCheck(**vars(args.check))
    return PrepareOptions(**opts)


def corpus_config(args):
    """The ``CorpusConfig`` that ``speechlm data synth`` builds: the ``--size`` preset plus overrides."""
    from speechlm.corpus.build import CorpusConfig

    config = getattr(CorpusConfig, args.size)()
    if args.corpus:
        unknown = set(args.corpus) - {f.name for f in dataclasses.fields(CorpusConfig)}
        if unknown:
            raise SpeechLMError(f"unknown corpus option(s) {sorted(unknown)}; see CorpusConfig in "
                                "speechlm/corpus/build.py")
        config = dataclasses.replace(config, **args.corpus)
    return config


def _run_data(cfg) -> int:
    cmd = cfg.data.data_command
    args = cfg.data[cmd]
    if cmd == "prepare":
        from speechlm.data.prepare import prepare

        print(prepare(args.corpus, args.root, args.out, prepare_options(args)).summary())
    elif cmd == "synth":
        from speechlm.corpus.build import build_corpus

        build_corpus(corpus_config(args), args.out, workers=args.workers)
    elif cmd == "split":
        from speechlm.data.split import split_manifest

        stats = split_manifest(args.manifest, args.out, args.dev_fraction, args.test_fraction, args.by,
                               args.seed, args.force)
        print(json.dumps(stats, indent=2))
    elif cmd == "text":
        from speechlm.data.text_stage import run_text_stage

        print(run_text_stage(args.dir, args.language, args.backend, args.force).summary())
    elif cmd == "chat":
        from speechlm.data.chat_stage import run_chat_stage

        print(run_chat_stage(args.dir, args.language, args.backend, force=args.force).summary())
    elif cmd == "tokenize":
        from speechlm.data.tokenize_stage import run_tokenize_stage

        print(run_tokenize_stage(args.dir, args.codec, args.shard_size, args.workers, args.force).summary())
    elif cmd == "stats":
        from speechlm.data.manifest import iter_manifest, manifest_stats

        print(json.dumps(manifest_stats(iter_manifest(args.manifest)), indent=2))
    return 0


def _run_codec(cfg) -> int:
    from speechlm.codec.registry import load_codec
    from speechlm.codec.streaming import encode_file
    from speechlm.codec.tokens import load_tokens, save_tokens

    cmd = cfg.codec.codec_command
    args = cfg.codec[cmd]
    codec = load_codec(args.codec, args.n_codebooks)
    if cmd in ("encode", "resynth"):
        codes, n = encode_file(codec, args.input)
        if cmd == "encode":
            save_tokens(args.output, codec.info, [Path(args.input).stem], [codes[0]], [n])
            print(f"{args.input}: {codes.shape[-1]} frames x {codes.shape[1]} codebooks at {codec.frame_rate:g} Hz "
                  f"({codec.bitrate:g} bit/s) -> {args.output}")
            return 0
        wav = codec.decode(codes, n, speaker=_reference_embedding(codec, args.reference or args.input))[0]
    else:
        tokens = load_tokens(args.input, expect=codec.info)
        codes, n = tokens.codes[0], tokens.num_samples[0]
        wav = codec.decode(codes[None], n, speaker=_reference_embedding(codec, args.reference))[0]
    _write_wav(args.output, wav.numpy(), codec.sample_rate)
    print(f"{args.input} -> {args.output} ({len(wav) / codec.sample_rate:.2f} s at {codec.sample_rate} Hz)")
    return 0


def _reference_embedding(codec, reference: str | None):
    """The voice embedding of ``reference`` (its first 10 s) for a voice-conditioned codec, else None."""
    if reference is None or not codec.voice_conditioned:
        return None
    from speechlm.synthesis.voice import read_reference

    audio, sr = read_reference(reference)
    return codec.speaker_embedding(audio[None, :, : 10 * sr], sr)  # [1, C, L]: mixed to mono


def _write_wav(path: str, wav, sample_rate: int) -> None:
    import soundfile as sf

    from speechlm.io import atomic_path

    try:
        with atomic_path(path) as tmp:
            sf.write(str(tmp), wav, sample_rate, format="WAV", subtype="PCM_16")
    except PermissionError:
        raise SpeechLMError(f"{path}: output location is not writable") from None


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["train"]:  # LightningCLI parses its own arguments
        from speechlm.train import main as train_main

        try:
            return train_main(argv[1:])
        except SpeechLMError as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
    cfg = build_parser().parse_args(normalize_argv(argv))
    try:
        if cfg.command == "mos":
            from speechlm.mos.cli import run_mos_command

            return run_mos_command(cfg.mos)
        if cfg.command == "eval":
            from speechlm.eval.cli import run_eval_command

            return run_eval_command(cfg.eval)
        if cfg.command == "say":
            return _run_say(cfg.say)
        if cfg.command == "synthesize":
            return _run_synthesize(cfg.synthesize)
        if cfg.command == "pipeline":
            return _run_pipeline(cfg.pipeline)
        if cfg.command == "demo":
            from speechlm.demo import serve
            from speechlm.demo.config import from_namespace

            return serve(from_namespace(cfg.demo))
        return _run_codec(cfg) if cfg.command == "codec" else _run_data(cfg)
    except SpeechLMError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted; finished outputs are kept and a re-run resumes", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
