"""Where the codec's input leaves its training domain: input level, and the band above 8 kHz.

    python eval/codec_domain.py --codec default [--per-set 12] [--out eval/reports/codec/domain]

The benchmark's losses sit on real speakers (LibriSpeech test-other, LJSpeech), not on the embedded
corpus. Two properties of the input differ between those sets and the training data, and this measures
what each does to the decoded audio, decoding without a voice reference:

- *level*: the active-speech level (frames within 40 dB of the loudest) of each set, and the tuning clips
  (LibriSpeech train-clean-100, training-side) re-coded at fixed levels (``--levels``, dBFS);
- *bandwidth*: the share of energy above 8 kHz of each set and of each embedded voice, and every clip
  coded as it is and low-passed at 8 kHz (through 16 kHz) before encoding, always scored against the
  original. The real speech the codec trained on (LibriSpeech at 16 kHz, FSDD at 8 kHz) has no energy
  there, so on real speech that has it the encoder sees a band it only ever saw on synthetic voices.

The evaluation-only sets are measured here for diagnosis only: nothing is tuned on them. Scores: PESQ-WB,
STOI, DNSMOS OVRL at 16 kHz. Writes ``domain.json`` and ``domain.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

import numpy as np

import bench_codec as bench

REPO = Path(__file__).resolve().parents[1]
SETS = ("librispeech_train_clean_100", "librispeech_test_other", "ljspeech_subset")


def active_level_db(wav: np.ndarray, frame: int = 400) -> float:
    """Mean power (dBFS) of the frames within 40 dB of the loudest one."""
    frames = wav[: len(wav) // frame * frame].reshape(-1, frame)
    energy = 10 * np.log10((frames ** 2).mean(1) + 1e-12)
    return float(10 * np.log10((frames[energy > energy.max() - 40] ** 2).mean() + 1e-12))


def high_band_db(wav: np.ndarray, sample_rate: int, cutoff: float = 8000.0) -> float:
    """Energy above ``cutoff`` relative to the total, in dB (about -80 for audio band-limited below it)."""
    power = np.abs(np.fft.rfft(wav)) ** 2
    freqs = np.fft.rfftfreq(len(wav), 1 / sample_rate)
    return float(10 * np.log10(power[freqs > cutoff].sum() / power.sum() + 1e-15))


def low_passed(wav: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    import librosa

    return librosa.resample(wav, orig_sr=sample_rate, target_sr=16000).astype(np.float32), 16000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", default="default")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--synth", type=Path, default=REPO / "data" / "synth_default")
    ap.add_argument("--per-set", type=int, default=12)
    ap.add_argument("--levels", default="-35,-30,-27,-24,-20,-16", help="dBFS levels for the level sweep")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "eval" / "reports" / "codec" / "domain")
    args = ap.parse_args(argv)

    import torch
    from tqdm import tqdm

    sys.path.insert(0, str(REPO))
    from speechlm.codec.registry import load_codec
    from speechlm.eval.dnsmos import get_dnsmos
    from speechlm.eval.fidelity import fidelity

    torch.set_num_threads(args.threads)
    codec, dnsmos = load_codec(args.codec), get_dnsmos()
    clips = bench.load_clips(args.data if args.data.exists() else None, None, args.per_set, folders=SETS)
    if args.synth.exists():  # the embedded corpus's dev split, as the tuning clips use it
        clips += bench.load_clips(None, args.synth, args.per_set, split="dev")
    if not clips:
        sys.exit(f"no clips under {args.data} or {args.synth}")

    def score(reference: np.ndarray, sr: int, wav: np.ndarray, wav_sr: int) -> dict:
        with torch.inference_mode():
            decoded = codec.decode(codec.encode(wav, sample_rate=wav_sr), round(len(reference) * codec.sample_rate / sr))
        decoded = decoded[0].numpy()
        f = fidelity(reference, sr, decoded, codec.sample_rate)
        return {"pesq_wb": f.pesq_wb, "stoi": f.stoi, "dnsmos_ovrl": dnsmos(decoded, codec.sample_rate).ovrl}

    rows, sweep = [], []
    levels = [float(x) for x in args.levels.split(",") if x.strip()]
    for c in tqdm(clips, desc="clips", unit="clip"):
        wav, sr = c["wav"], c["sr"]
        row = {"set": c["set"], "id": c["id"], "speaker": c["speaker"], "level_db": active_level_db(wav),
               "high_band_db": high_band_db(wav, sr)}
        row["as_is"] = score(wav, sr, wav, sr)
        row["low_passed_8k"] = score(wav, sr, *low_passed(wav, sr))
        rows.append(row)
        if c["set"] == "librispeech_train_clean_100":
            for level in levels:
                scaled = np.clip(wav * 10 ** ((level - row["level_db"]) / 20), -1, 1).astype(np.float32)
                sweep.append({"id": c["id"], "level_db": level, **score(scaled, sr, scaled, sr)})

    voices = {}
    if (args.synth / "metadata.csv").exists():  # the embedded corpus's voices, a sample of each
        import soundfile as sf

        with open(args.synth / "metadata.csv", encoding="utf-8") as f:
            meta = list(csv.DictReader(f, delimiter="|"))
        for r in meta[:: max(1, len(meta) // 200)]:
            wav, sr = sf.read(args.synth / "wavs" / f"{r['id']}.flac", dtype="float32")
            voices.setdefault(r["speaker"], []).append(high_band_db(wav, sr))
    report = {"command": "python eval/codec_domain.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "codec": args.codec, "rows": rows, "level_sweep": sweep,
              "voices_high_band_db": {v: float(np.mean(x)) for v, x in voices.items()}}
    bench.write_report(args.out, "domain", report, render(report))
    return 0


def render(r: dict) -> str:
    mean = lambda rows, k: float(np.nanmean([x[k] for x in rows]))  # noqa: E731
    keys = ("pesq_wb", "stoi", "dnsmos_ovrl")
    lines = ["# Codec input domain: level and the band above 8 kHz", "", f"Command: `{r['command']}`  ",
             f"Codec: `{r['codec']}`, decoded without a voice reference; scores at 16 kHz against the original.", "",
             "| set | clips | active level dBFS | energy above 8 kHz | as is: PESQ-WB / STOI / OVRL | "
             "low-passed at 8 kHz first: PESQ-WB / STOI / OVRL |", "|---|---|---|---|---|---|"]
    for s in dict.fromkeys(x["set"] for x in r["rows"]):
        mine = [x for x in r["rows"] if x["set"] == s]
        triple = lambda v: " / ".join(f"{mean([x[v] for x in mine], k):.3f}" for k in keys)  # noqa: E731
        lines.append(f"| {s} | {len(mine)} | {mean(mine, 'level_db'):.1f} | {mean(mine, 'high_band_db'):.1f} dB | "
                     f"{triple('as_is')} | {triple('low_passed_8k')} |")
    if r["voices_high_band_db"]:
        lines += ["", "Energy above 8 kHz of the embedded corpus's voices: " + ", ".join(
            f"{v} {x:.1f} dB" for v, x in sorted(r["voices_high_band_db"].items())) + "."]
    if r["level_sweep"]:
        lines += ["", "LibriSpeech train-clean-100 clips re-coded at fixed active levels:", "",
                  "| level dBFS | PESQ-WB | STOI | DNSMOS OVRL |", "|---|---|---|---|"]
        for level in dict.fromkeys(x["level_db"] for x in r["level_sweep"]):
            mine = [x for x in r["level_sweep"] if x["level_db"] == level]
            lines.append(f"| {level:.0f} | " + " | ".join(f"{mean(mine, k):.3f}" for k in keys) + " |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
