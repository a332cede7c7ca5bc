"""What DNSMOS hears in a codec's output: its sub-scores, the pauses, the high band, the buzz.

    python eval/codec_dnsmos.py --codec default --codec runs/vocoder_v3/export --out eval/reports/codec/dnsmos

DNSMOS OVRL is a blend of two P.835 ratings: SIG (the speech itself: distortion, buzz, muffling) and
BAK (the background: noise and hiss, heard most in the pauses). For real read speech (LJSpeech subset,
LibriSpeech test-other; evaluation-only, never trained on) this scores each codec's resynthesis and
the original, and measures what could move them:

* **pause floor**: level of the quietest 20 % of 20 ms frames relative to the loudest 20 % (dB); a
  vocoder that hisses or hums in the pauses raises it;
* **high band**: share of energy above 4 kHz (dB), decoded minus original; dull or harsh output shows;
* **periodicity**: cepstral peak prominence (dB) of the voiced frames (the original's loudest half),
  how strongly harmonic the speech is; buzz raises it, breathiness lowers it;
* **pauses spliced**: DNSMOS of the decoded audio with its pause frames (those quiet in the original)
  replaced by the original's. If BAK and OVRL come back, the pauses cost the score; if not, the speech does;
* **4 kHz low-pass**: DNSMOS of the original and of the decoded audio with everything above 4 kHz removed
  (Codec2's band: it codes 8 kHz audio). If the decoded audio gains where the original does not, its
  high band costs the score;
* **magnitude / phase swaps**: DNSMOS of the decoded STFT magnitudes with the original's phase, and of
  the original magnitudes with the decoded phase (STFT 640 / hop 160 at 16 kHz, ``eval/codec_diagnosis.py``'s
  swaps). Whichever swap recovers SIG says which half DNSMOS hears as distortion.

A voice-conditioned codec decodes with the embedding of the speaker's next utterance (as
``eval/bench_codec.py`` does). Writes ``dnsmos.json`` and ``dnsmos.md``.
"""

from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import numpy as np

import bench_codec as bench
import codec_diagnosis

REPO = Path(__file__).resolve().parents[1]
SR = 16000  # DNSMOS's rate: everything is measured there
FRAME = 320  # 20 ms
QUIET = 0.2  # the quietest / loudest share of frames
LOWPASS_HZ = 4000.0


def frame_db(x: np.ndarray) -> np.ndarray:
    """Level (dB) of each whole 20 ms frame of ``x``."""
    n = len(x) // FRAME
    frames = x[: n * FRAME].reshape(n, FRAME).astype(np.float64)
    return 10 * np.log10((frames**2).mean(-1) + 1e-10)


def pause_floor(x: np.ndarray) -> float:
    """Quietest ``QUIET`` of the frames relative to the loudest ``QUIET`` (dB; lower is cleaner pauses)."""
    db = np.sort(frame_db(x))
    k = max(1, int(QUIET * len(db)))
    return float(db[:k].mean() - db[-k:].mean())


def high_band_db(x: np.ndarray) -> float:
    """Energy above 4 kHz relative to all of it (dB)."""
    spec = np.abs(np.fft.rfft(x.astype(np.float64))) ** 2
    freqs = np.fft.rfftfreq(len(x), 1 / SR)
    return float(10 * np.log10(spec[freqs >= 4000].sum() / (spec.sum() + 1e-20) + 1e-20))


def cpp_db(x: np.ndarray, voiced: np.ndarray) -> float:
    """Mean cepstral peak prominence (dB) over the ``voiced`` 20 ms frames, quefrency 2.5-16.7 ms (60-400 Hz).

    Frames are 40 ms Hann windows centred on the 20 ms grid; the cepstrum is in dB (``20 log10`` of the
    magnitude of the inverse transform of the log spectrum), and the prominence is its peak's height above
    the regression line through it in that range (Hillenbrand's CPP).
    """
    win, out = 2 * FRAME, []
    lo, hi = int(SR / 400), int(SR / 60)
    q = np.arange(lo, hi)
    for i in np.flatnonzero(voiced):
        start = i * FRAME - FRAME // 2
        seg = x[max(0, start): start + win]
        if len(seg) < win:
            continue
        log_mag = np.log(np.abs(np.fft.rfft(seg * np.hanning(win))) + 1e-9)
        ceps = 20 * np.log10(np.abs(np.fft.irfft(log_mag))[lo:hi] + 1e-12)
        slope, icpt = np.polyfit(q, ceps, 1)
        p = int(np.argmax(ceps))
        out.append(ceps[p] - (slope * q[p] + icpt))
    return float(np.mean(out)) if out else math.nan


def lowpass(x: np.ndarray, hz: float = LOWPASS_HZ) -> np.ndarray:
    """``x`` with the spectrum above ``hz`` zeroed (one FFT over the whole clip: no filter ripple)."""
    spec = np.fft.rfft(x.astype(np.float64))
    spec[np.fft.rfftfreq(len(x), 1 / SR) > hz] = 0
    return np.fft.irfft(spec, len(x)).astype(np.float32)


def splice_pauses(orig: np.ndarray, dec: np.ndarray) -> np.ndarray:
    """``dec`` with the frames that are pauses in ``orig`` (its quietest ``QUIET``) taken from ``orig``."""
    db = frame_db(orig)
    pauses = db <= np.quantile(db, QUIET)
    out = dec.copy()
    for i in np.flatnonzero(pauses):
        out[i * FRAME: (i + 1) * FRAME] = orig[i * FRAME: (i + 1) * FRAME]
    return out


def measure(orig16: np.ndarray, dec16: np.ndarray, dnsmos) -> dict[str, float]:
    n = min(len(orig16), len(dec16))
    orig16, dec16 = orig16[:n], dec16[:n]
    swapped = codec_diagnosis.swaps(orig16, dec16, n_fft=640, hop=160)
    db = frame_db(orig16)
    voiced = db >= np.median(db)  # the original's loudest half: where speech is, in both
    row = {}
    for name, x in (("original", orig16), ("decoded", dec16), ("spliced", splice_pauses(orig16, dec16)),
                    ("original_lowpass", lowpass(orig16)), ("decoded_lowpass", lowpass(dec16)),
                    ("magnitude", swapped["decoded_magnitude+original_phase"]),
                    ("phase", swapped["original_magnitude+decoded_phase"])):
        s = dnsmos(x, SR)
        row.update({f"{name}_{k}": v for k, v in s.to_dict().items()})
    for name, x in (("original", orig16), ("decoded", dec16)):
        row[f"{name}_pause_floor_db"] = pause_floor(x)
        row[f"{name}_high_band_db"] = high_band_db(x)
        row[f"{name}_cpp_db"] = cpp_db(x, voiced)
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", action="append", required=True,
                    help="a saved codec folder or 'default' (DIR@f0[:BITS]: a harmonic one with the "
                         "original's F0), codec2:MODE or opus:KBPS (repeatable)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--per-set", type=int, default=24)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "eval" / "reports" / "codec" / "dnsmos")
    args = ap.parse_args(argv)

    import librosa
    import torch

    sys.path.insert(0, str(REPO))
    from speechlm.eval.dnsmos import get_dnsmos

    torch.set_num_threads(args.threads)
    dnsmos = get_dnsmos()
    clips = bench.real_speech_clips(args.data, args.per_set)

    def score(c: dict, dec: np.ndarray, sr: int) -> dict[str, float]:
        orig16 = librosa.resample(c["wav"], orig_sr=c["sr"], target_sr=SR)
        return measure(orig16, librosa.resample(dec, orig_sr=sr, target_sr=SR), dnsmos)

    report = {"command": "python eval/codec_dnsmos.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "clips": len(clips), "codecs": bench.per_codec_rows(args.codec, clips, score)}
    bench.write_report(args.out, "dnsmos", report, render(report))
    return 0


def render(r: dict) -> str:
    f = lambda x, n=2: "–" if x is None or math.isnan(x) else f"{x:.{n}f}"  # noqa: E731
    first = next(iter(r["codecs"].values()))["mean"]
    lines = ["# What DNSMOS hears in the codecs' output", "", f"Command: `{r['command']}`  ",
             f"{r['clips']} clips (LJSpeech subset + LibriSpeech test-other), means over clips, at 16 kHz.", "",
             "| audio | OVRL | SIG | BAK | P.808 | pause floor dB | high band dB | CPP dB (voiced) |",
             "|---|---|---|---|---|---|---|---|",
             f"| original | {f(first['original_ovrl'])} | {f(first['original_sig'])} | {f(first['original_bak'])} | "
             f"{f(first['original_p808'])} | {f(first['original_pause_floor_db'], 1)} | "
             f"{f(first['original_high_band_db'], 1)} | {f(first['original_cpp_db'], 1)} |",
             f"| original, low-passed at 4 kHz | {f(first['original_lowpass_ovrl'])} | {f(first['original_lowpass_sig'])} | "
             f"{f(first['original_lowpass_bak'])} | {f(first['original_lowpass_p808'])} | | | |"]
    for spec, res in r["codecs"].items():
        m = res["mean"]
        lines.append(f"| {spec} | {f(m['decoded_ovrl'])} | {f(m['decoded_sig'])} | {f(m['decoded_bak'])} | "
                     f"{f(m['decoded_p808'])} | {f(m['decoded_pause_floor_db'], 1)} | "
                     f"{f(m['decoded_high_band_db'], 1)} | {f(m['decoded_cpp_db'], 1)} |")
        lines.append(f"| {spec}, pauses spliced from the original | {f(m['spliced_ovrl'])} | {f(m['spliced_sig'])} | "
                     f"{f(m['spliced_bak'])} | {f(m['spliced_p808'])} | | | |")
        for key, what in (("decoded_lowpass", "low-passed at 4 kHz"), ("magnitude", "decoded magnitude + original phase"),
                          ("phase", "original magnitude + decoded phase")):
            lines.append(f"| {spec}, {what} | {f(m[key + '_ovrl'])} | {f(m[key + '_sig'])} | {f(m[key + '_bak'])} | "
                         f"{f(m[key + '_p808'])} | | | |")
    lines += ["", "Per set (OVRL / SIG / BAK, decoded):", ""]
    for spec, res in r["codecs"].items():
        for s, m in res["by_set"].items():
            lines.append(f"- {spec}, {s}: {f(m['decoded_ovrl'])} / {f(m['decoded_sig'])} / {f(m['decoded_bak'])} "
                         f"(original {f(m['original_ovrl'])} / {f(m['original_sig'])} / {f(m['original_bak'])})")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.exit(main())
