"""Pipeline speed benchmark: `say` real-time factor, streaming first-chunk latency, batch throughput, peak memory,
and whether int8 dynamic quantization / torch.compile of the LM pay, on 1 and 2 CPU threads.

    python eval/bench_pipeline.py --model DIR --out eval/reports/pipeline      # a trained pipeline folder
    python eval/bench_pipeline.py --random-weights --out eval/reports/pipeline # default sizes, random weights

Every measurement runs in a fresh process (``--worker``), so its peak RSS (``ru_maxrss``) is its own
and no warm cache from an earlier one helps it. Each loads the pipeline, synthesizes one short warm-up
sentence (which also triggers torch.compile's compilation, timed separately), then measures once.

``--random-weights`` builds a pipeline folder with the sizes of ``configs/codec/base.yaml`` and LM
size ``small`` (random weights): speed can be measured before training ends, and such results are
labelled random-weight speed. A random LM never stops by itself, so every utterance is forced to
``--frames`` frames (``min_frames = max_frames``) and timings are for a known audio length; with a
trained model the length guard applies as usual unless ``--force-frames`` is given.
Writes ``bench_pipeline.json`` and ``bench_pipeline.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# ~10 s of speech at an ordinary speaking rate (about 150 words per minute)
TEXT = ("The old bridge was finally repaired last spring, and now the children walk across it to school "
        "every morning while their parents wave from the window.")
WARMUP = "Good morning."


# ----------------------------------------------------------------------------------------- worker

def worker(spec: dict) -> dict:
    import numpy as np
    import torch

    from speechlm.inference import Pipeline
    from speechlm.synthesis.results import Request

    torch.set_num_threads(spec["threads"])
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t = time.perf_counter()
    pipe = Pipeline.from_pretrained(spec["model"], quantize=spec.get("quantize"), compile=spec.get("compile", False))
    load_s = time.perf_counter() - t
    voice = spec.get("voice")
    frames = spec.get("frames")
    opts = {"min_frames": frames, "max_frames": frames} if frames else {}
    t = time.perf_counter()
    warm = {"min_frames": 10, "max_frames": 10} if frames else {}
    if spec["kind"] == "stream":  # warm up the path that is measured (its own kernel shapes, compile graphs)
        list(pipe.stream(WARMUP, voice, seed=0, lookahead=spec.get("lookahead"), **warm))
    else:
        pipe.synthesize(WARMUP, voice, seed=0, **warm)
    warmup_s = time.perf_counter() - t
    out = {"load_s": load_s, "warmup_s": warmup_s}
    if spec["kind"] == "say":
        r = pipe.synthesize(TEXT, voice, seed=0, **opts)
        out.update(audio_s=r.duration, total_s=r.timings.total_s, rtf=r.timings.rtf, first_audio_s=r.timings.first_audio_s,
                   frames=int(r.tokens.shape[-1]))
    elif spec["kind"] == "stream":
        t = time.perf_counter()
        first, n, samples = None, 0, 0
        chunks = []
        for chunk in pipe.stream(TEXT, voice, seed=0, lookahead=spec.get("lookahead"), **opts):
            if first is None and chunk.any():
                first = time.perf_counter() - t
                first_len = len(chunk)
            chunks.append(chunk)
            n, samples = n + 1, samples + len(chunk)
        total = time.perf_counter() - t
        audio_s = samples / pipe.sample_rate
        out.update(first_chunk_s=first, first_chunk_ms_audio=1000 * first_len / pipe.sample_rate, chunks=n,
                   audio_s=audio_s, total_s=total, rtf=total / audio_s)
        if spec.get("lookahead") is not None:  # what the shorter lookahead costs: distance to the exact audio
            exact = pipe.synthesize(TEXT, voice, seed=0, batch_size=1, **opts).audio
            streamed = np.concatenate(chunks)
            err = streamed - exact
            out.update(max_abs_diff=float(np.abs(err).max()),
                       snr_db=float(10 * np.log10((exact ** 2).sum() / max((err ** 2).sum(), 1e-20))))
    elif spec["kind"] == "batch":
        b = spec["batch"]
        # one seed for all, as `speechlm synthesize` gives them: different seeds never share a batch
        requests = [Request(TEXT, voice, seed=0, options=opts) for i in range(b)]
        t = time.perf_counter()
        results = pipe.synthesize_batch(requests, batch_size=b)
        total = time.perf_counter() - t
        errors = [str(r) for r in results if isinstance(r, Exception)]
        if errors:
            raise RuntimeError(errors[0])
        audio_s = sum(r.duration for r in results)
        out.update(batch=b, audio_s=audio_s, total_s=total, audio_s_per_s=audio_s / total)
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["base_rss_mb"] = base_rss / 1024
    return out


def measure(spec: dict, timeout: float) -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "MKL_NUM_THREADS": str(spec["threads"])}
    t = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, __file__, "--worker", json.dumps(spec)], capture_output=True, text=True,
                           env=env, timeout=timeout, cwd=REPO)
    except subprocess.TimeoutExpired:
        return {**spec, "error": f"timed out after {timeout:.0f} s"}
    lines = [line for line in r.stdout.splitlines() if line.startswith("{")]
    if r.returncode != 0 or not lines:
        tail = (r.stderr.strip().splitlines() or ["(no output)"])[-1]
        return {**spec, "error": tail[:300]}
    return {**spec, **json.loads(lines[-1]), "process_s": time.perf_counter() - t}


# ----------------------------------------------------------------------------------------- model

def build_random_pipeline(out: Path, max_seq_len: int = 2048) -> Path:
    """A pipeline folder with the default sizes (configs/codec/base.yaml, LM ``small``) and random weights."""
    import torch
    import yaml

    from speechlm.codec.model import CodecConfig
    from speechlm.codec.neural import NeuralCodec
    from speechlm.corpus.sentences import WRITTEN
    from speechlm.inference import Pipeline
    from speechlm.lm.layout import TokenLayout
    from speechlm.lm.model import SpeechLM, lm_config
    from speechlm.text.frontend import TextFrontend
    from speechlm.text.tokenizer import TextTokenizer
    from speechlm.vocoder.model import VocoderConfig

    torch.manual_seed(0)
    model_cfg = yaml.safe_load((REPO / "configs/codec/base.yaml").read_text())["model"]
    codec = NeuralCodec(CodecConfig(**model_cfg["codec"]), VocoderConfig(**model_cfg["vocoder"])).eval()
    fe = TextFrontend("en")
    tok = TextTokenizer.build([o.phonemes for o in fe.process(list(WRITTEN))], kind=fe.symbol_kind, language="en")
    layout = TokenLayout(tok.vocab_size, codec.n_codebooks, codec.codebook_size)
    lm = SpeechLM(lm_config("mini", layout.stream_vocab, max_seq_len=max_seq_len))
    pipe = Pipeline(codec, lm, layout, tok, fe)
    pipe.add_voice("random", _voiced(4.0, 24000), 24000, text="She opened the window to let in some fresh air.")
    pipe.default_voice = "random"
    return pipe.save_pretrained(out, note="**Random weights**: built by eval/bench_pipeline.py --random-weights "
                                          "for speed measurements only; it says nothing.")


def _voiced(seconds: float, sr: int, f0: float = 140.0):
    """A speech-like signal for the voice preset: harmonics under a syllable-rate envelope."""
    import numpy as np

    t = np.arange(int(seconds * sr)) / sr
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    return (0.2 * tone * 0.5 * (1 - np.cos(2 * np.pi * 4 * t))).astype(np.float32)


def describe(model: str) -> dict:
    from speechlm.synthesis import bundle

    m = bundle.read_manifest(Path(model))
    lm = json.loads((Path(model) / m["lm"].get("folder", "lm") / "lm.json").read_text())
    return {"codec": m["codec"]["info"], "lm": {k: lm["config"][k] for k in ("dim", "n_layers", "n_heads", "max_seq_len")},
            "voices": m.get("voices", []), "default_voice": m.get("default_voice")}


# ----------------------------------------------------------------------------------------- main

def plan(threads: list[int], batches: list[int], frames: int | None, voice: str | None, model: str,
         variants: bool) -> list[dict]:
    specs = []
    for t in threads:
        common = {"threads": t, "model": model, "frames": frames, "voice": voice}
        specs.append({**common, "kind": "say"})
        specs.append({**common, "kind": "stream"})
        specs.append({**common, "kind": "stream", "lookahead": 2})
        if variants:
            specs.append({**common, "kind": "say", "quantize": "int8"})
            specs.append({**common, "kind": "stream", "quantize": "int8"})
            if t == threads[0]:  # compiling takes minutes; one thread count shows whether it pays
                specs.append({**common, "kind": "say", "compile": True})
        for b in batches:
            specs.append({**common, "kind": "batch", "batch": b})
            if variants and b == max(batches):
                specs.append({**common, "kind": "batch", "batch": b, "quantize": "int8"})
    return specs


def _what(r: dict) -> str:
    if r["kind"] == "batch":
        return f"batch {r['batch']}"
    if r.get("lookahead") is not None:
        snr = f", SNR {r['snr_db']:.0f} dB vs exact" if "snr_db" in r else ""
        return f"{r['kind']} (lookahead {r['lookahead']}{snr})"
    return r["kind"]


def variant(r: dict) -> str:
    return "int8" if r.get("quantize") else ("compile" if r.get("compile") else "fp32")


def _f(x, fmt: str) -> str:
    return "-" if x is None else format(x, fmt)


def markdown(report: dict) -> str:
    label = "**Random-weight speed**: " if report["random_weights"] else ""
    lines = [
        "# Pipeline speed", "",
        f"{label}model `{report['model_label']}` (codec {report['model']['codec']['name']}, "
        f"{report['model']['codec']['n_codebooks']}x{report['model']['codec']['codebook_size']} codes at "
        f"{report['model']['codec']['frame_rate']:g} Hz; LM {report['model']['lm']['n_layers']} layers x "
        f"{report['model']['lm']['dim']}), voice `{report['voice']}`, "
        + (f"every utterance forced to {report['frames']} frames "
           f"({report['frames'] / report['model']['codec']['frame_rate']:.1f} s)." if report['frames']
           else "natural lengths (length guard)."),
        (f"Machine: {report['machine']['cpu_count']} cores, load average {report['machine']['loadavg_before']} before / "
         f"{report['machine']['loadavg_after']} after; {report['machine']['python']}, torch {report['machine']['torch']}."),
        "Each row is one fresh process: load, a warm-up sentence, one measurement. RTF = compute seconds per audio second."
        + ("" if report.get("complete", True) else " **Interrupted run: not every measurement is here.**"),
        "",
        "| threads | measurement | LM | audio s | wall s | RTF | first audio s | audio s / s | peak RSS MB | load s | warm-up s |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in report["results"]:
        what = _what(r)
        if "error" in r:
            lines.append(f"| {r['threads']} | {what} | {variant(r)} | error: {r['error']} ||||||||")
            continue
        first = r.get("first_chunk_s", r.get("first_audio_s"))
        lines.append(f"| {r['threads']} | {what} | {variant(r)} | {r['audio_s']:.1f} | {r['total_s']:.2f} | "
                     f"{_f(r.get('rtf'), '.3f')} | {_f(first, '.3f')} | {_f(r.get('audio_s_per_s'), '.2f')} | "
                     f"{r['peak_rss_mb']:.0f} | {r['load_s']:.1f} | {r['warmup_s']:.1f} |")
    lines += ["", "## Verdict", ""] + [f"- {v}" for v in report["verdict"]] + [""]
    return "\n".join(lines)


def verdict(results: list[dict]) -> list[str]:
    out = []
    ok = [r for r in results if "error" not in r]
    for t in sorted({r["threads"] for r in ok}):
        key_of = lambda r: (r["kind"], r.get("batch"), r.get("lookahead"))  # noqa: E731
        base = {key_of(r): r for r in ok if r["threads"] == t and variant(r) == "fp32"}
        for r in ok:
            if r["threads"] != t or variant(r) == "fp32" or key_of(r) not in base:
                continue
            b = base[key_of(r)]
            key = "audio_s_per_s" if r["kind"] == "batch" else "rtf"
            speedup = (r[key] / b[key]) if key == "audio_s_per_s" else (b[key] / r[key])
            what = _what(r)
            cost = f", after {r['warmup_s']:.0f} s of compiling" if variant(r) == "compile" else ""
            out.append(f"{t} thread(s), {what}: {variant(r)} is {speedup:.2f}x the fp32 speed{cost} "
                       f"({'pays' if speedup > 1.1 else 'does not pay'}; peak RSS {r['peak_rss_mb']:.0f} vs "
                       f"{b['peak_rss_mb']:.0f} MB)")
    for r in results:
        if "error" in r:
            out.append(f"{r['threads']} thread(s), {r['kind']} {variant(r)}: failed ({r['error']})")
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="default", help="pipeline folder, or default (the bundled one)")
    p.add_argument("--random-weights", action="store_true", help="build and measure a random-weight default-size pipeline")
    p.add_argument("--out", default=str(REPO / "eval/reports/pipeline"))
    p.add_argument("--threads", default="1,2")
    p.add_argument("--batches", default="1,4,16")
    p.add_argument("--frames", type=int, default=250, help="frames per utterance with --random-weights/--force-frames")
    p.add_argument("--force-frames", action="store_true", help="force --frames frames with a trained model too")
    p.add_argument("--voice", default=None, help="voice preset (default: the pipeline's default voice)")
    p.add_argument("--no-variants", action="store_true", help="skip the int8 / compile measurements")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per measurement")
    p.add_argument("--render", help="rewrite the Markdown (and verdict) of an existing bench_pipeline.json")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    if args.render:
        from speechlm.io import write_json, write_text

        report = json.loads(Path(args.render).read_text())
        report["verdict"] = verdict(report["results"])
        write_json(args.render, report)
        write_text(Path(args.render).with_suffix(".md"), markdown(report))
        return 0
    import torch

    from speechlm.io import write_json, write_text

    with tempfile.TemporaryDirectory() as tmp:
        if args.random_weights:
            model, label = str(build_random_pipeline(Path(tmp) / "random")), "random weights, default sizes"
        else:
            from speechlm.inference import BUNDLED

            model = label = str(BUNDLED if args.model == "default" else args.model)
            if not (Path(model) / "pipeline.json").exists():
                p.error(f"{model} is not a pipeline folder (no bundled pipeline yet?): pass --model DIR, or "
                        "--random-weights to measure random-weight speed at the default sizes")
        info = describe(model)
        frames = args.frames if (args.random_weights or args.force_frames) else None
        voice = args.voice or info["default_voice"]
        specs = plan([int(t) for t in args.threads.split(",")], [int(b) for b in args.batches.split(",")], frames,
                     voice, model, not args.no_variants)
        load_before = " ".join(f"{x:.1f}" for x in os.getloadavg())
        out = Path(args.out)
        out.mkdir(parents=True, exist_ok=True)
        results = []
        for i, spec in enumerate(specs, 1):
            r = measure(spec, args.timeout)
            results.append(r)
            shown = {k: (round(v, 3) if isinstance(v, float) else v) for k, v in r.items() if k not in ("model",)}
            print(f"[{i}/{len(specs)}] {json.dumps(shown)}", flush=True)
            report = {  # rewritten after every measurement: an interrupted run keeps what it measured
                "random_weights": args.random_weights, "model_label": label, "model": info, "voice": voice,
                "frames": frames, "text": TEXT, "complete": i == len(specs),
                "machine": {"cpu_count": os.cpu_count(), "python": platform.python_version(), "torch": torch.__version__,
                            "loadavg_before": load_before, "loadavg_after": " ".join(f"{x:.1f}" for x in os.getloadavg())},
                "results": [{k: v for k, v in r.items() if k != "model"} for r in results],
                "verdict": verdict(results),
            }
            write_json(out / "bench_pipeline.json", report)
            write_text(out / "bench_pipeline.md", markdown(report))
    print(markdown(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
