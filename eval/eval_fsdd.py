"""Digit accuracy of an LM trained on FSDD (real voices, spoken digits), on FSDD's test split.

    python eval/eval_fsdd.py --model exp/pipelines/fsdd --data exp/data/fsdd --out eval/reports/fsdd

The pipeline is the one data_recipes/train_fsdd.sh builds: the bundled codec, an LM trained by the
default recipe on FSDD's train split (configs/lm/fsdd.yaml), and one voice preset per FSDD speaker
(a train-split clip). FSDD's test split is the same six speakers saying each digit five times (takes
0-4, never in training). Three systems are scored, each on all 300 test items:

* ``recording``: the test recording itself (the scorers' own ceiling);
* ``codec``: that recording through the bundled codec (encode + decode, 1 kbit/s), the ceiling of
  anything the LM can say through this codec;
* ``tts``: the LM speaking the item's digit word in the item's speaker's voice.

Two scorers, each a ten-way decision:

* pocketsphinx restricted to the ten digit words (a JSGF grammar: it must pick one of them, or
  nothing), independent of everything we trained;
* the LM's own ``asr`` task (greedy phonemes), mapped to the digit whose phonemes are nearest by
  edit distance; the exact-match rate is reported beside it.

Writes ``fsdd_eval.{json,md}``, ``confusion.png`` (pocketsphinx's decisions, recording vs tts) and the TTS WAVs.
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import time
from collections import Counter
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]
DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
SYSTEMS = ("recording", "codec", "tts")


def nearest(phonemes: str, references: dict[str, str]) -> str:
    """The digit whose reference phoneme string is closest to ``phonemes`` (character edit distance)."""
    import jiwer

    if not phonemes:
        return ""
    return min(references, key=lambda d: (jiwer.cer(references[d], phonemes), d))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default=str(REPO / "exp/pipelines/fsdd"), help="a pipeline folder trained on FSDD")
    ap.add_argument("--data", default=str(REPO / "exp/data/fsdd"), help="the FSDD recipe's output (cuts_test.jsonl.gz)")
    ap.add_argument("--out", default=str(REPO / "eval/reports/fsdd"))
    ap.add_argument("--per-speaker", type=int, default=None, help="test items per speaker (default: all 50)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)

    import torch
    from tqdm import tqdm

    from speechlm.data.audio import load_audio
    from speechlm.data.manifest import iter_manifest
    from speechlm.eval.asr import PocketSphinxASR
    from speechlm.inference import Pipeline
    from speechlm.synthesis.results import Request

    if args.threads:
        torch.set_num_threads(args.threads)
    test = Path(args.data) / "cuts_test.jsonl.gz"
    if not test.exists():
        raise SystemExit(f"{test}: not found (make codec-data builds FSDD's splits)")
    out = Path(args.out).resolve()
    (out / "wavs").mkdir(parents=True, exist_ok=True)
    pipe = Pipeline.from_pretrained(args.model, quantize=None)
    items, taken = [], Counter()
    for cut in iter_manifest(test):
        sup = cut.supervisions[0]
        if sup.text not in DIGITS:
            raise SystemExit(f"{test}: {cut.id} has text {sup.text!r}, not a digit word")
        if sup.speaker not in pipe.voices:
            raise SystemExit(f"the pipeline has no voice preset for FSDD speaker {sup.speaker!r}; it has "
                             f"{sorted(pipe.voices)}")
        if args.per_speaker is None or taken[sup.speaker] < args.per_speaker:
            taken[sup.speaker] += 1
            items.append({"id": cut.id, "digit": sup.text, "speaker": sup.speaker,
                          "audio": cut.recording.sources[0].source, "duration": cut.duration})

    # ---- the three systems' audio
    audio: dict[str, dict[str, tuple[np.ndarray, int]]] = {s: {} for s in SYSTEMS}
    for it in tqdm(items, desc="recordings + codec", unit="utt"):
        wav, sr = load_audio(it["audio"], pipe.codec.sample_rate)
        audio["recording"][it["id"]] = (wav, sr)
        with torch.inference_mode():
            codes = pipe.codec.encode(wav, sr)
            speaker = pipe.voice_embedding(pipe.voices.get(it["speaker"]))  # the speaker's preset, as the TTS hears it
            audio["codec"][it["id"]] = (pipe.codec.decode(codes, speaker=speaker)[0].float().cpu().numpy().reshape(-1), sr)
    requests = [Request(it["digit"], it["speaker"], seed=args.seed, id=it["id"]) for it in items]
    t0, audio_s, failed = time.perf_counter(), 0.0, {}
    for start in tqdm(range(0, len(requests), args.batch_size), desc="tts", unit="batch"):
        chunk = requests[start: start + args.batch_size]
        for req, res in zip(chunk, pipe.synthesize_batch(chunk, args.batch_size)):
            if isinstance(res, Exception):
                failed[req.id] = str(res)
                continue
            audio["tts"][req.id] = (res.audio, res.sample_rate)
            audio_s += res.duration
            sf.write(out / "wavs" / f"{req.id}.wav", res.audio, res.sample_rate, subtype="PCM_16")
    synth_s = time.perf_counter() - t0

    # ---- score
    asr = PocketSphinxASR(words=DIGITS)
    references = {d: pipe.frontend.process([d])[0].phonemes for d in DIGITS}
    rows = []
    for it in tqdm(items, desc="scoring", unit="utt"):
        for system in SYSTEMS:
            if it["id"] not in audio[system]:
                continue
            wav, sr = audio[system][it["id"]]
            own = pipe.transcribe(wav, sr)
            rows.append({"id": it["id"], "system": system, "digit": it["digit"], "speaker": it["speaker"],
                         "pocketsphinx": asr.transcribe(wav, sr), "lm_asr": own, "lm_asr_digit": nearest(own, references),
                         "lm_asr_exact": own == references[it["digit"]], "duration": len(wav) / sr,
                         "duration_ratio": len(wav) / sr / it["duration"]})

    def rate(rs, right) -> float:
        return float(np.mean([right(r) for r in rs])) if rs else math.nan

    def heard(key):
        return lambda r: r[key] == r["digit"]

    summary = {}
    for system in SYSTEMS:
        rs = [r for r in rows if r["system"] == system]
        summary[system] = {"n": len(rs), "pocketsphinx_accuracy": rate(rs, heard("pocketsphinx")),
                           "lm_asr_accuracy": rate(rs, heard("lm_asr_digit")),
                           "lm_asr_exact": rate(rs, lambda r: r["lm_asr_exact"]),
                           "duration_ratio_median": float(np.median([r["duration_ratio"] for r in rs])) if rs else math.nan,
                           "per_speaker": {s: rate([r for r in rs if r["speaker"] == s], heard("pocketsphinx"))
                                           for s in sorted(taken)}}
    summary["tts"]["outside_0.5_2"] = sum(1 for r in rows if r["system"] == "tts" and not 0.5 <= r["duration_ratio"] <= 2)
    result = {
        "command": "python eval/eval_fsdd.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "machine": f"{platform.machine()}, {torch.get_num_threads()} threads",
        "model": str(args.model), "pipeline": repr(pipe), "items": len(items), "failed": failed,
        "sampling": {k: getattr(pipe.defaults, k) for k in ("temperature", "top_k", "top_p")},
        "synthesis": {"wall_s": synth_s, "audio_s": audio_s, "rtf": synth_s / audio_s if audio_s else math.nan},
        "digit_phonemes": references, "summary": summary,
    }
    (out / "fsdd_eval.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    (out / "utterances.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    (out / "fsdd_eval.md").write_text(render(result), encoding="utf-8")
    plot_confusion(rows, out / "confusion.png")
    print(render(result))
    return 0


def plot_confusion(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = DIGITS + [""]
    fig, axes = plt.subplots(1, 2, figsize=(11, 5))
    for ax, system in zip(axes, ("recording", "tts")):
        m = np.zeros((len(DIGITS), len(labels)))
        for r in rows:
            if r["system"] == system:
                m[DIGITS.index(r["digit"]), labels.index(r["pocketsphinx"])] += 1
        ax.imshow(m, cmap="Blues")
        for i in range(m.shape[0]):
            for j in range(m.shape[1]):
                if m[i, j]:
                    ax.text(j, i, int(m[i, j]), ha="center", va="center", fontsize=7,
                            color="white" if m[i, j] > m.max() / 2 else "black")
        ax.set_xticks(range(len(labels)), [*DIGITS, "none"], rotation=60)
        ax.set_yticks(range(len(DIGITS)), DIGITS)
        acc = np.trace(m[:, :len(DIGITS)]) / max(m.sum(), 1)
        ax.set(title=f"{system}: pocketsphinx digit accuracy {acc:.0%}", xlabel="recognized", ylabel="asked for")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def render(r: dict) -> str:
    s = r["summary"]
    names = {"recording": "FSDD test recording", "codec": "recording through the bundled codec (1 kbit/s)",
             "tts": "our TTS (FSDD-trained LM, the item's speaker's voice preset)"}
    lines = ["# FSDD: digit accuracy of the default LM recipe trained on real voices", "",
             f"Command: `{r['command']}`  ", f"Model: {r['pipeline']}  ", f"Machine: {r['machine']}", "",
             (f"{r['items']} test items (6 speakers x 10 digits x takes 0-4, never trained on); "
             f"{len(r['failed'])} failed to synthesize. Sampling: temperature {r['sampling']['temperature']}, "
             f"top_k {r['sampling']['top_k']}, top_p {r['sampling']['top_p']}. TTS took "
             f"{r['synthesis']['wall_s']:.0f} s for {r['synthesis']['audio_s']:.0f} s of audio."), "",
             "| system | n | pocketsphinx digit accuracy | LM `asr` digit accuracy (nearest) | LM `asr` exact phonemes | duration ratio (median) |",
             "|---|---|---|---|---|---|"]
    for k in SYSTEMS:
        x = s[k]
        lines.append(f"| {names[k]} | {x['n']} | {x['pocketsphinx_accuracy']:.1%} | {x['lm_asr_accuracy']:.1%} | "
                     f"{x['lm_asr_exact']:.1%} | {x['duration_ratio_median']:.2f} |")
    lines += ["", f"TTS outputs outside 0.5-2x the recording's duration: {s['tts']['outside_0.5_2']} of {s['tts']['n']}.",
              "", ("Chance is 10 %. pocketsphinx is restricted to the ten digit words (JSGF grammar); \"nearest\" maps "
              "the LM's phonemes to the digit at the smallest edit distance."), "",
              "## pocketsphinx digit accuracy per speaker", "",
              "| speaker | " + " | ".join(SYSTEMS) + " |", "|---|" + "---|" * len(SYSTEMS)]
    for spk in s["tts"]["per_speaker"]:
        lines.append(f"| {spk} | " + " | ".join(f"{s[k]['per_speaker'][spk]:.0%}" for k in SYSTEMS) + " |")
    lines += ["", "![confusion](confusion.png)", ""]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
