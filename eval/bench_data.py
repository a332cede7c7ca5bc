"""Data-pipeline throughput, each figure beside a reference measured in the same run.

    python eval/bench_data.py --out eval/reports [--audio-dir DIR] [--sentences 400]

1. Audio checking (prepare stage): ``check_audio_files`` on all cores vs a one-process
   ``soundfile.read`` loop over the same files (the least any check must do).
2. Text front-end: normalize + phonemize in batches vs one phonemizer call per sentence.
3. Corpus voices: x-real-time of each engine voice; festival in one batch process per chunk vs
   festival's own ``text2wave`` started once per sentence.
Writes ``bench_data.json`` and ``bench_data.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf


def _machine() -> dict:
    cpu = "unknown"
    try:
        cpu = next(line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version()}


def bench_audio_check(audio_dir: Path | None, tmp: Path) -> dict:
    from speechlm.data.audio import AudioCheck
    from speechlm.data.prepare import check_audio_files

    if audio_dir is None:  # generated: 400 clips of 3 s at 16 kHz
        audio_dir = tmp / "clips"
        audio_dir.mkdir()
        rng = np.random.default_rng(0)
        for i in range(400):
            sf.write(audio_dir / f"c{i}.flac", (0.1 * rng.standard_normal(48000)).astype(np.float32), 16000)
    files = sorted(p for p in audio_dir.rglob("*") if p.suffix in (".wav", ".flac"))
    t0 = time.perf_counter()
    for p in files:
        sf.read(p, dtype="float32")
    ref = time.perf_counter() - t0
    t0 = time.perf_counter()
    results = check_audio_files(files, AudioCheck(max_duration=3600), None, workers=os.cpu_count(), progress=False)
    ours = time.perf_counter() - t0
    cache = tmp / "cache.jsonl"
    check_audio_files(files, AudioCheck(max_duration=3600), cache, workers=os.cpu_count(), progress=False)
    t0 = time.perf_counter()
    check_audio_files(files, AudioCheck(max_duration=3600), cache, workers=os.cpu_count(), progress=False)
    cached = time.perf_counter() - t0
    assert len(results) == len(files)
    return {"files": len(files), "source": str(audio_dir), "reference_read_loop_files_per_s": len(files) / ref,
            "check_files_per_s": len(files) / ours, "check_vs_reference": ref / ours,
            "resumed_from_cache_files_per_s": len(files) / cached}


def bench_text(n: int) -> dict:
    from speechlm.corpus.sentences import generate_sentences
    from speechlm.text.frontend import TextFrontend

    sentences = generate_sentences(n, seed=1)
    fe = TextFrontend("en", "espeak")
    t0 = time.perf_counter()
    out = [o.phonemes for b in range(0, n, 256) for o in fe.process(sentences[b:b + 256])]
    batched = time.perf_counter() - t0
    t0 = time.perf_counter()
    single = [fe.phonemize([fe.normalize(s)])[0] for s in sentences]
    one_by_one = time.perf_counter() - t0
    assert out == single, "batched and one-by-one phonemization must agree"
    return {"sentences": n, "batched_sentences_per_s": n / batched, "one_call_each_sentences_per_s": n / one_by_one,
            "batched_vs_one_call_each": one_by_one / batched}


def bench_voices(n: int, tmp: Path) -> dict:
    from speechlm.corpus.build import DEFAULT_VOICES
    from speechlm.corpus.sentences import generate_sentences
    from speechlm.corpus.voices import get_voice, synthesize

    texts = generate_sentences(n, seed=2)
    rows = {}
    for name in DEFAULT_VOICES:
        t0 = time.perf_counter()
        outs = synthesize(get_voice(name), texts, tmp / name)
        wall = time.perf_counter() - t0
        seconds = sum(len(o.audio) / o.sample_rate for o in outs if o.audio is not None)
        rows[name] = {"audio_s": seconds, "wall_s": wall, "x_real_time": seconds / wall}
    festival = next((v for v in DEFAULT_VOICES if v.startswith("festival")), None)
    ref = None
    if festival:
        voice = get_voice(festival)
        t0 = time.perf_counter()
        for i, text in enumerate(texts):
            subprocess.run(["text2wave", "-eval", f"(voice_{voice.engine_voice})", "-o", str(tmp / f"ref{i}.wav")],
                           input=text, text=True, capture_output=True, check=True)
        per_process = time.perf_counter() - t0
        ref = {"voice": festival, "text2wave_per_sentence_wall_s": per_process,
               "batch_vs_per_process": per_process / rows[festival]["wall_s"]}
    return {"sentences_per_voice": n, "voices": rows, "festival_reference": ref}


def markdown(r: dict) -> str:
    a, t, v = r["audio_check"], r["text"], r["voices"]
    lines = [f"# Data-pipeline throughput ({r['machine']['cores']} cores, {r['machine']['cpu']})", "",
             f"Command: `{r['command']}`", "",
             "| what | ours | reference (same run) | ratio |", "|---|---|---|---|",
             f"| audio check, {a['files']} files | {a['check_files_per_s']:.0f} files/s (all cores) | "
             f"{a['reference_read_loop_files_per_s']:.0f} files/s (soundfile.read loop, 1 process) | "
             f"{a['check_vs_reference']:.2f}x |",
             f"| audio check resumed from cache | {a['resumed_from_cache_files_per_s']:.0f} files/s | – | – |",
             f"| normalize + phonemize, {t['sentences']} sentences | {t['batched_sentences_per_s']:.0f} sent/s "
             f"(batches of 256) | {t['one_call_each_sentences_per_s']:.0f} sent/s (one call each) | "
             f"{t['batched_vs_one_call_each']:.1f}x |"]
    ref = v["festival_reference"]
    if ref:
        lines.append(f"| festival ({ref['voice']}), {v['sentences_per_voice']} sentences | "
                     f"{v['voices'][ref['voice']]['wall_s']:.1f} s (one batch process) | "
                     f"{ref['text2wave_per_sentence_wall_s']:.1f} s (text2wave per sentence) | "
                     f"{ref['batch_vs_per_process']:.1f}x |")
    lines += ["", "| voice | audio (s) | wall (s) | x real time |", "|---|---|---|---|"]
    lines += [f"| {k} | {x['audio_s']:.1f} | {x['wall_s']:.2f} | {x['x_real_time']:.0f} |" for k, x in v["voices"].items()]
    return "\n".join(lines) + "\n"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", type=Path, default=Path("eval/reports"))
    ap.add_argument("--audio-dir", type=Path, default=None, help="audio to check (default: 400 generated clips)")
    ap.add_argument("--sentences", type=int, default=400)
    ap.add_argument("--voice-sentences", type=int, default=20)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        report = {"command": "python eval/bench_data.py " + " ".join(sys.argv[1:]), "machine": _machine(),
                  "audio_check": bench_audio_check(args.audio_dir, tmp), "text": bench_text(args.sentences),
                  "voices": bench_voices(args.voice_sentences, tmp)}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_data.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md = markdown(report)
    (args.out / "bench_data.md").write_text(md, encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
