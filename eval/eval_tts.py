"""Evaluate a pipeline's text-to-speech on the embedded corpus's test sentences (never seen in training).

    python eval/eval_tts.py --model default --data exp/data/synth_default --out eval/reports/tts
    python eval/eval_tts.py --model DIR --per-voice 4 --voices flite-rms,festival-ked ...   (quicker)

Every test sentence is spoken by every corpus voice, so each engine's own recording of a sentence is
the reference for our output in that voice. For each (sentence, voice) picked, the pipeline speaks
the sentence with that voice's preset prompt (a train-split utterance), and we measure:

* intelligibility: pocketsphinx WER of our output vs the WER of the engine's own recording;
* voice: resemblyzer SIM of our output to the engine's recording of the same sentence in the target
  voice, against the same for every *other* voice (must be clearly lower), beside the ceiling of two
  different recordings of the target voice;
* robustness: output duration / reference duration, and how many fall outside 0.5-2x;
* DNSMOS OVRL of both, and synthesis speed (real-time factor) as measured by the pipeline;
* the same for the engine's recording passed through the pipeline's codec (encode, decode): the
  ceiling of any LM that speaks through this codec, so it tells the LM's share of the gap from the codec's.

Writes ``tts_eval.{json,md}``, the per-utterance rows of ``speechlm eval`` (``eval_report/``) and the WAVs.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import platform
import sys
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def _pick(cuts, voices: list[str] | None, per_voice: int | None):
    """(sentence key, voice) -> cut, for the chosen voices; ``per_voice`` sentences each (all when None).

    The sentences are dealt to voices in rotation, so with ``per_voice`` each voice gets different ones.
    """
    by_sentence: dict[str, dict[str, object]] = defaultdict(dict)
    for c in cuts:
        by_sentence[c.id.split("_", 1)[1]][c.supervisions[0].speaker] = c
    all_voices = sorted({v for d in by_sentence.values() for v in d})
    voices = voices or all_voices
    unknown = [v for v in voices if v not in all_voices]
    if unknown:
        raise SystemExit(f"unknown voice(s) {unknown}; the test split has {all_voices}")
    sentences = sorted(by_sentence)
    picked = []
    if per_voice is None:
        picked = [(s, v) for s in sentences for v in voices if v in by_sentence[s]]
    else:
        for i, v in enumerate(voices):
            mine = [s for s in sentences[i::len(voices)] + sentences if v in by_sentence[s]]
            picked += [(s, v) for s in list(dict.fromkeys(mine))[:per_voice]]
    return by_sentence, all_voices, picked


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="'default' (bundled) or a pipeline folder")
    ap.add_argument("--data", default=str(REPO / "exp/data/synth_default"),
                    help="the corpus recipe's output folder (cuts_test.jsonl.gz)")
    ap.add_argument("--out", default=str(REPO / "eval/reports/tts"))
    ap.add_argument("--voices", default=None, help="comma-separated corpus voices (default: every preset voice)")
    ap.add_argument("--per-voice", type=int, default=None, help="test sentences per voice (default: all)")
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--split", default="test", choices=("test", "dev"),
                    help="dev: for choosing sampling settings; report test")
    ap.add_argument("--temperature", type=float, default=None, help="sampling overrides (default: the pipeline's)")
    ap.add_argument("--top-k", type=int, default=None)
    ap.add_argument("--top-p", type=float, default=None)
    ap.add_argument("--cfg-scale", type=float, default=None,
                    help="classifier-free guidance (1: off; > 1 needs an LM trained with data.text_dropout)")
    ap.add_argument("--candidates", type=int, default=None,
                    help="best of N: takes per sentence, the one the LM's asr task reads best is kept "
                         "(default: the pipeline's)")
    ap.add_argument("--align-end-seconds", type=float, default=None,
                    help="alignment guard of a guided-attention LM (default: the pipeline's; 0 turns it off)")
    ap.add_argument("--durations-only", action="store_true",
                    help="synthesize and check durations only (robustness over a whole split, quickly): durations.{json,md}")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-quantize", action="store_true", help="fp32 LM on CPU (default: the pipeline's choice)")
    args = ap.parse_args(argv)

    import torch
    from tqdm import tqdm

    from speechlm.data.manifest import iter_manifest
    from speechlm.eval.report import aggregate
    from speechlm.eval.runner import run_eval
    from speechlm.eval.speaker import cosine, get_speaker_encoder
    from speechlm.inference import Pipeline
    from speechlm.synthesis.results import Request

    if args.threads:
        torch.set_num_threads(args.threads)
    out = Path(args.out).resolve()
    wav_dir = out / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    test = Path(args.data) / f"cuts_{args.split}.jsonl.gz"
    if not test.exists():
        raise SystemExit(f"{test}: not found (run `make run` to build the embedded corpus and its splits)")
    pipe = Pipeline.from_pretrained(args.model, quantize=None if args.no_quantize else "auto")
    if args.align_end_seconds is not None:
        import dataclasses

        pipe.defaults = dataclasses.replace(pipe.defaults, align_end_seconds=args.align_end_seconds)
    voices = args.voices.split(",") if args.voices else sorted(pipe.voices)
    missing = [v for v in voices if v not in pipe.voices]
    if missing:
        raise SystemExit(f"the pipeline has no preset for voice(s) {missing}; it has {sorted(pipe.voices)}")
    by_sentence, _, picked = _pick(iter_manifest(test), voices, args.per_voice)

    # ---- synthesize (batched, in order of length so batches are even)
    requests = []
    for s, v in picked:
        cut = by_sentence[s][v]
        options = {"temperature": args.temperature, "top_k": args.top_k, "top_p": args.top_p,
                   "cfg_scale": args.cfg_scale, "candidates": args.candidates}
        requests.append(Request(cut.supervisions[0].text, v, seed=args.seed, id=f"{v}_{s}", options=options))
    order = sorted(range(len(requests)), key=lambda i: len(requests[i].text))
    results: dict[str, dict] = {}
    t0 = time.perf_counter()
    audio_seconds = 0.0
    for start in tqdm(range(0, len(order), args.batch_size), desc="synthesizing", unit="batch"):
        chunk = [requests[i] for i in order[start: start + args.batch_size]]
        for req, res in zip(chunk, pipe.synthesize_batch(chunk, args.batch_size)):
            path = wav_dir / f"{req.id}.wav"
            if isinstance(res, Exception):
                results[req.id] = {"error": str(res)}
                continue
            sf.write(path, res.audio, res.sample_rate, subtype="PCM_16")
            audio_seconds += res.duration
            results[req.id] = {"path": str(path), "duration": res.duration}
    synth_seconds = time.perf_counter() - t0

    if args.durations_only:
        return _durations_report(args, argv, pipe, picked, by_sentence, results, out)

    # ---- the codec's ceiling: each reference recording through the pipeline's codec
    from speechlm.data.audio import load_audio

    codec_dir = wav_dir / "codec"
    codec_dir.mkdir(exist_ok=True)
    for s, v in tqdm(picked, desc="codec resynthesis", unit="utt"):
        audio, sr = load_audio(by_sentence[s][v].recording.sources[0].source, pipe.codec.sample_rate)
        speaker = pipe.voice_embedding(pipe.voices[v])  # a voice-conditioned codec hears the preset, as the TTS does
        wav = pipe.codec.decode(pipe.codec.encode(audio, sr), len(audio), speaker=speaker)[0]
        sf.write(codec_dir / f"{v}_{s}.wav", wav.float().cpu().numpy(), pipe.codec.sample_rate, subtype="PCM_16")

    # ---- score: ours against the engine's recording of the same sentence, and the engine's own WER
    ours, engine, resynth = [], [], []
    for s, v in picked:
        key, cut = f"{v}_{s}", by_sentence[s][v]
        ref, text = cut.recording.sources[0].source, cut.supervisions[0].text
        if "path" in results[key]:
            ours.append({"id": key, "audio": results[key]["path"], "text": text, "reference_audio": ref})
        engine.append({"id": key, "audio": ref, "text": text})
        resynth.append({"id": key, "audio": str(codec_dir / f"{key}.wav"), "text": text, "reference_audio": ref})
    manifests = []
    for name, rows in (("speechlm", ours), ("engine", engine), ("codec", resynth)):
        m = out / f"{name}.jsonl"
        m.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
        manifests.append(m)
    report = run_eval(manifests, out / "eval_report", metrics=None, systems=["speechlm", "engine", "codec"])

    # ---- voice: SIM to every other voice's recording of the same sentence, and the same-voice ceiling
    enc = get_speaker_encoder()

    @functools.lru_cache(maxsize=None)  # each recording is compared with many outputs
    def emb(path: str) -> np.ndarray | None:
        try:
            return enc.embed(*load_audio(path, 16000))
        except ValueError:  # no speech in it (the VAD found none): no voice to compare, as in speechlm eval
            return None
    sim_other, sim_ceiling, no_speech = [], [], []
    for s, v in tqdm(picked, desc="speaker similarity", unit="utt"):
        key = f"{v}_{s}"
        if "path" not in results[key]:
            continue
        mine = emb(results[key]["path"])
        if mine is None:
            no_speech.append(key)
            continue
        others = [c for w, c in by_sentence[s].items() if w != v]
        theirs = [e for e in (emb(c.recording.sources[0].source) for c in others) if e is not None]
        if theirs:
            sim_other.append(float(np.mean([cosine(mine, e) for e in theirs])))
        other_sentence = next((t for t in sorted(by_sentence) if t != s and v in by_sentence[t]), None)
        if other_sentence:
            a, b = (emb(by_sentence[t][v].recording.sources[0].source) for t in (s, other_sentence))
            if a is not None and b is not None:
                sim_ceiling.append(cosine(a, b))

    rows = {(r.system, r.id): r for r in report.rows}
    per_voice: dict[str, dict] = {}
    for v in voices:  # the report's own per-system aggregation, on one voice's rows
        mine = [rows[("speechlm", f"{v}_{s}")] for s, w in picked if w == v and ("speechlm", f"{v}_{s}") in rows]
        theirs = [rows[("engine", f"{v}_{s}")] for s, w in picked if w == v]
        coded = [rows[("codec", f"{v}_{s}")] for s, w in picked if w == v]
        ours = aggregate(mine, ["wer", "sim"])[0].metrics if mine else {}
        engine, codec = aggregate(theirs, ["wer"])[0].metrics, aggregate(coded, ["wer"])[0].metrics
        per_voice[v] = {"n": len(theirs), "wer": ours["wer"].value if ours else math.nan,
                        "engine_wer": engine["wer"].value, "codec_wer": codec["wer"].value,
                        "sim": ours["sim"].value if ours else math.nan}
    ratios = [r.metrics["duration_ratio"] for r in report.rows if r.system == "speechlm" and "duration_ratio" in r.metrics]
    summary = {s.system: {m: e.to_dict() for m, e in s.metrics.items()} for s in report.summaries}
    result = {
        "command": "python eval/eval_tts.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads, {platform.processor() or ''}".strip(", "),
        "model": str(args.model), "pipeline": repr(pipe), "split": args.split, "items": len(picked),
        "alignment_guard": repr(pipe.alignment_guard()),
        "sampling": {**{k: getattr(pipe.defaults, k)
                        for k in ("temperature", "top_k", "top_p", "cfg_scale", "candidates")},
                     **{k: v for k, v in (("temperature", args.temperature), ("top_k", args.top_k),
                                          ("top_p", args.top_p), ("cfg_scale", args.cfg_scale),
                                          ("candidates", args.candidates)) if v is not None}},
        "failed": sorted(k for k, r in results.items() if "error" in r),
        "errors": {k: r["error"] for k, r in results.items() if "error" in r},
        "synthesis": {"wall_s": synth_seconds, "audio_s": audio_seconds,
                      "rtf": synth_seconds / audio_seconds if audio_seconds else math.nan},
        "summary": summary,
        "sim_other_voices": float(np.mean(sim_other)) if sim_other else math.nan,
        "sim_same_voice_ceiling": float(np.mean(sim_ceiling)) if sim_ceiling else math.nan,
        "sim_no_speech": sorted(no_speech),  # outputs the speaker encoder found no speech in (no SIM)
        "duration": {"n": len(ratios), "outside_0.5_2": int(sum(1 for r in ratios if not 0.5 <= r <= 2.0)),
                     "min": min(ratios, default=math.nan), "max": max(ratios, default=math.nan),
                     "median": float(np.median(ratios)) if ratios else math.nan},
        "per_voice": per_voice,
    }
    (out / "tts_eval.json").write_text(json.dumps(result, indent=2, default=float), encoding="utf-8")
    (out / "tts_eval.md").write_text(render(result), encoding="utf-8")
    print(render(result))
    return 0


def _durations_report(args, argv, pipe, picked, by_sentence, results, out: Path) -> int:
    """Output / reference duration for every pair, the robustness check of the LM issue, nothing else."""
    rows = [(f"{v}_{s}", results[f"{v}_{s}"].get("duration", math.nan) / by_sentence[s][v].duration) for s, v in picked]
    ratios = [r for _, r in rows if math.isfinite(r)]
    outside = sorted((k, round(r, 3)) for k, r in rows if not 0.5 <= r <= 2.0)
    result = {"command": "python eval/eval_tts.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "model": str(args.model), "split": args.split, "items": len(rows), "failed": len(rows) - len(ratios),
              "alignment_guard": repr(pipe.alignment_guard()), "outside_0.5_2": outside,
              "median": float(np.median(ratios)) if ratios else math.nan,
              "min": min(ratios, default=math.nan), "max": max(ratios, default=math.nan)}
    (out / "durations.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    text = "\n".join([
        f"# Output / reference duration over the {args.split} split", "", f"Command: `{result['command']}`  ",
        f"Alignment guard: {result['alignment_guard']}", "",
        f"{len(rows)} (sentence, voice) pairs, {result['failed']} failed; ratio median {result['median']:.2f}, "
        f"min {result['min']:.2f}, max {result['max']:.2f}; **{len(outside)} outside 0.5-2x**"
        + (": " + ", ".join(f"{k} ({r})" for k, r in outside) if outside else "."), ""])
    (out / "durations.md").write_text(text, encoding="utf-8")
    print(text)
    return 0


def _get(summary: dict, system: str, metric: str) -> float:
    e = summary.get(system, {}).get(metric)
    return math.nan if e is None or e.get("value") is None else float(e["value"])


def render(r: dict) -> str:
    s, d = r["summary"], r["duration"]
    f = lambda x, n=3: "–" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{n}f}"
    wer_ours, wer_engine, wer_codec = _get(s, "speechlm", "wer"), _get(s, "engine", "wer"), _get(s, "codec", "wer")
    lines = [
        f"# Text-to-speech on the embedded corpus's {r['split']} sentences", "",
        f"Command: `{r['command']}`  ", f"Model: {r['pipeline']}  ", f"Machine: {r['machine']}", "",
        f"Sampling: {', '.join(f'{k} {v}' for k, v in r['sampling'].items())}.  ",
        f"Alignment guard: {r.get('alignment_guard', 'None')}.  ",
        f"{r['items']} (sentence, voice) pairs; {len(r['failed'])} failed to synthesize. Synthesis took "
        f"{r['synthesis']['wall_s']:.0f} s for {r['synthesis']['audio_s']:.0f} s of audio "
        f"(RTF {f(r['synthesis']['rtf'])}).", "",
        "| system | WER % (pocketsphinx) | SIM to target voice | SIM to other voices | DNSMOS OVRL | duration ratio (median) | outside 0.5-2x |",
        "|---|---|---|---|---|---|---|",
        f"| speechlm | {f(100 * wer_ours, 1)} | {f(_get(s, 'speechlm', 'sim'))} | {f(r['sim_other_voices'])} | "
        f"{f(_get(s, 'speechlm', 'dnsmos_ovrl'), 2)} | {f(d['median'], 2)} | {d['outside_0.5_2']} of {d['n']} |",
        f"| engine recording | {f(100 * wer_engine, 1)} | {f(r['sim_same_voice_ceiling'])} (another sentence) | – | "
        f"{f(_get(s, 'engine', 'dnsmos_ovrl'), 2)} | 1 | – |",
        f"| engine recording through the codec | {f(100 * wer_codec, 1)} | {f(_get(s, 'codec', 'sim'))} | – | "
        f"{f(_get(s, 'codec', 'dnsmos_ovrl'), 2)} | 1 | – |", "",
        f"WER ratio ours / engine: {f(wer_ours / wer_engine if wer_engine else math.nan, 2)} (bar: at most 1.5); "
        f"codec resynthesis / engine: {f(wer_codec / wer_engine if wer_engine else math.nan, 2)} (the ceiling "
        "of an LM speaking through this codec).", "",
        *([f"No speech found in {len(r['sim_no_speech'])} output(s), left out of SIM to other voices: "
           + ", ".join(r["sim_no_speech"]), ""] if r.get("sim_no_speech") else []),
        "## Per voice", "", "| voice | n | WER % ours | WER % engine | WER % codec resynthesis | SIM to target |",
        "|---|---|---|---|---|---|",
    ]
    for v, p in r["per_voice"].items():
        lines.append(f"| {v} | {p['n']} | {f(100 * p['wer'], 1)} | {f(100 * p['engine_wer'], 1)} | "
                     f"{f(100 * p.get('codec_wer', math.nan), 1)} | {f(p['sim'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
