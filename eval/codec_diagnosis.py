"""Where a codec's PESQ goes: magnitude or phase, and is the decoded speech still periodic?

    python eval/codec_diagnosis.py --codec runs/vocoder_voice/export [--codec default ...] --out eval/reports/codec/diagnosis

For real read speech (LJSpeech subset and LibriSpeech test-other from ``--data``, evaluation-only,
never trained on), each codec's resynthesis is scored at 16 kHz against the original:

* PESQ-WB of the resynthesis, and of two swaps at 24 kHz (STFT 1024 / hop 240): the decoded magnitudes
  with the original's phase, and the original magnitudes with the decoded phase. Whichever swap
  recovers PESQ says which half the codec gets wrong. As a ceiling, the original magnitudes with
  Griffin-Lim phase (32 iterations);
* periodicity: the share of frames WORLD's DIO + StoneMask calls voiced (10 ms hop, the F0 tracker of the
  codec's pitch objective, ``speechlm.codec.pitch.f0_frames``), in the original and in the resynthesis,
  their voiced/unvoiced agreement, and the F0 error (cents) where both are voiced. Reports written
  before 2026-12-04 used librosa's pyin (60-400 Hz), whose numba gufunc crashed the test run on one CI
  machine.

A voice-conditioned codec decodes with the embedding of the speaker's next utterance (as in
``eval/bench_codec.py``). Writes ``diagnosis.json`` and ``diagnosis.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

import bench_codec as bench

REPO = Path(__file__).resolve().parents[1]
N_FFT, HOP = 1024, 240


def swap_scores(ref24: np.ndarray, dec24: np.ndarray, pesq) -> dict[str, float]:
    """PESQ-WB of the magnitude/phase swaps and of Griffin-Lim on the original magnitudes (24 kHz in)."""
    import librosa

    n = min(len(ref24), len(dec24))
    ref24, dec24 = ref24[:n], dec24[:n]
    gl = librosa.griffinlim(np.abs(librosa.stft(ref24, n_fft=N_FFT, hop_length=HOP)), n_iter=32, hop_length=HOP,
                            length=n, random_state=0)
    return {"decoded": pesq(ref24, dec24),
            **{name: pesq(ref24, x) for name, x in swaps(ref24, dec24).items()},
            "original_magnitude+griffin_lim": pesq(ref24, gl)}


def swaps(ref: np.ndarray, dec: np.ndarray, n_fft: int = N_FFT, hop: int = HOP) -> dict[str, np.ndarray]:
    """The decoded STFT magnitudes with the original's phase, and the original magnitudes with the decoded
    phase, as waveforms the length of the shorter input."""
    import librosa

    n = min(len(ref), len(dec))
    r, d = (librosa.stft(x[:n], n_fft=n_fft, hop_length=hop) for x in (ref, dec))
    inv = lambda S: librosa.istft(S, hop_length=hop, length=n)  # noqa: E731
    return {"decoded_magnitude+original_phase": inv(np.abs(d) * np.exp(1j * np.angle(r))),
            "original_magnitude+decoded_phase": inv(np.abs(r) * np.exp(1j * np.angle(d)))}


def periodicity(ref16: np.ndarray, dec16: np.ndarray) -> dict[str, float]:
    import torch

    from speechlm.codec.pitch import f0_frames

    n = min(len(ref16), len(dec16))
    f1, f2 = f0_frames(torch.from_numpy(np.stack([ref16[:n], dec16[:n]]).astype(np.float32)), 16000, 160).numpy()
    v1, v2 = f1 > 0, f2 > 0
    both = v1 & v2
    cents = 1200 * np.abs(np.log2(f2[both] / f1[both])) if both.any() else np.zeros(0)
    return {"voiced_original": float(v1.mean()), "voiced_decoded": float(v2.mean()),
            "vuv_agreement": float((v1 == v2).mean()),
            "f0_error_cents_median": float(np.median(cents)) if cents.size else math.nan,
            "f0_gross_errors": float(np.mean(cents > 200)) if cents.size else math.nan}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", action="append", required=True,
                    help="a saved codec folder or 'default' (DIR@f0[:BITS]: a harmonic one with the "
                         "original's F0), codec2:MODE or opus:KBPS (repeatable)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--per-set", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "eval" / "reports" / "codec" / "diagnosis")
    args = ap.parse_args(argv)

    import librosa
    import torch

    sys.path.insert(0, str(REPO))
    from speechlm.eval.fidelity import fidelity

    torch.set_num_threads(args.threads)
    clips = bench.real_speech_clips(args.data, args.per_set)

    def score(c: dict, dec: np.ndarray, sr: int) -> dict[str, float]:
        ref24 = librosa.resample(c["wav"], orig_sr=c["sr"], target_sr=sr)
        pesq = lambda ref, deg: fidelity(ref, sr, deg, sr).pesq_wb  # noqa: E731
        return {**swap_scores(ref24, dec, pesq),
                **periodicity(librosa.resample(c["wav"], orig_sr=c["sr"], target_sr=16000),
                              librosa.resample(dec, orig_sr=sr, target_sr=16000))}

    report = {"command": "python eval/codec_diagnosis.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "clips": len(clips), "codecs": bench.per_codec_rows(args.codec, clips, score)}
    bench.write_report(args.out, "diagnosis", report, render(report))
    return 0


def render(r: dict) -> str:
    f = lambda x, n=2: "–" if x is None or math.isnan(x) else f"{x:.{n}f}"  # noqa: E731
    lines = ["# Where the PESQ goes: magnitude, phase, periodicity", "", f"Command: `{r['command']}`  ",
             f"{r['clips']} clips (LJSpeech subset + LibriSpeech test-other), means over clips.", "",
             "| codec | PESQ-WB decoded | decoded magnitude + original phase | original magnitude + decoded phase "
             "| original magnitude + Griffin-Lim | voiced frames (WORLD DIO) original / decoded | V/UV agreement "
             "| F0 error median (cents) | F0 gross errors |",
             "|---|---|---|---|---|---|---|---|---|"]
    for spec, res in r["codecs"].items():
        m = res["mean"]
        lines.append(f"| {spec} | {f(m['decoded'])} | {f(m['decoded_magnitude+original_phase'])} | "
                     f"{f(m['original_magnitude+decoded_phase'])} | {f(m['original_magnitude+griffin_lim'])} | "
                     f"{f(m['voiced_original'])} / {f(m['voiced_decoded'])} | {f(m['vuv_agreement'])} | "
                     f"{f(m['f0_error_cents_median'], 0)} | {f(m['f0_gross_errors'])} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
