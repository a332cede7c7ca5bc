"""Where the codec loses to its reference, by voice pitch: scores grouped by each clip's median F0.

    python eval/codec_by_pitch.py --codec default [--sets librispeech_train_clean_100] [--per-set 30] \
        [--split-hz 165] [--against codec2:1200] [--out eval/reports/codec/by_pitch]

The benchmark's gaps to Codec2 1200 sit on real voices; this asks whether they depend on the pitch of the
voice. Each clip is coded by ``--codec`` (with the speaker's next utterance as voice reference where the set
has one, as ``eval/bench_codec.py`` does) and by ``--against``, scored at 16 kHz against the original
(PESQ-WB, STOI, DNSMOS OVRL), and put in the low or high group by the median F0 of its original's voiced
frames (pyworld DIO + StoneMask; ``--split-hz`` sits between typical male and female voices). The default
set is training-side (LibriSpeech train-clean-100); the evaluation-only sets may be named for diagnosis,
never for tuning. Writes ``by_pitch.json`` and ``by_pitch.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import bench_codec as bench
import codec_postfilter as tuning

REPO = Path(__file__).resolve().parents[1]


def group_means(rows: list[dict], split_hz: float) -> list[dict]:
    """Mean scores per (group, coder) over ``rows`` (each with ``f0``, ``decoder`` and the scores), the
    groups being F0 below ``split_hz``, at or above it, and all clips; unvoiced clips (F0 0) only in all."""
    groups = (("low", lambda f: 0 < f < split_hz), ("high", lambda f: f >= split_hz), ("all", lambda f: True))
    out = []
    for name, member in groups:
        for coder in dict.fromkeys(r["decoder"] for r in rows):
            mine = [r for r in rows if r["decoder"] == coder and member(r["f0"])]
            if mine:
                out.append({"group": name, "coder": coder, "clips": len(mine),
                            "f0": float(np.median([r["f0"] for r in mine]))}
                           | {k: float(np.nanmean([r[k] for r in mine])) for k in tuning.SCORES})
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", default="default", help="a saved codec folder or 'default'")
    ap.add_argument("--against", default="codec2:1200", help="the reference coder (eval/bench_codec.py's spec)")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--sets", default="librispeech_train_clean_100", help="folders under --data, comma-separated")
    ap.add_argument("--per-set", type=int, default=30)
    ap.add_argument("--split-hz", type=float, default=165.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "eval" / "reports" / "codec" / "by_pitch")
    args = ap.parse_args(argv)

    import torch

    sys.path.insert(0, str(REPO))
    from speechlm.codec.pitch import median_f0
    from speechlm.codec.registry import load_codec
    from speechlm.eval.dnsmos import get_dnsmos

    torch.set_num_threads(args.threads)
    sets = tuple(s for s in args.sets.split(",") if s)
    clips = bench.load_clips(args.data, None, args.per_set, folders=sets)
    if not clips:
        sys.exit(f"no clips of {', '.join(sets)} under {args.data}")
    dnsmos, codec = get_dnsmos(), load_codec(args.codec)
    rows = (tuning.score_decoders(codec, {args.codec: codec}, clips, dnsmos)
            + tuning.reference_rows(args.against, clips, dnsmos))
    f0 = {c["id"]: median_f0(c["wav"], c["sr"]) for c in clips}
    for r in rows:
        r["f0"] = f0[r["id"]]
    table = group_means(rows, args.split_hz)
    report = {"command": "python eval/codec_by_pitch.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "codec": args.codec, "against": args.against, "split_hz": args.split_hz,
              "clips": {s: sum(c["set"] == s for c in clips) for s in sets}, "table": table, "rows": rows}
    bench.write_report(args.out, "by_pitch", report, render(report))
    return 0


def render(r: dict) -> str:
    clips = ", ".join(f"{s} {n}" for s, n in r["clips"].items())
    lines = ["# Codec scores by voice pitch", "",
             f"Command: `{r['command']}`  ", f"Clips: {clips}; at 16 kHz against the original; groups by the "
             f"median F0 of each original's voiced frames (low: below {r['split_hz']:g} Hz, high: at or above).", "",
             "| group | coder | clips | median F0 Hz | PESQ-WB | STOI | DNSMOS OVRL |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {t['group']} | `{t['coder']}` | {t['clips']} | {t['f0']:.0f} | {t['pesq_wb']:.3f} | {t['stoi']:.3f} | "
              f"{t['dnsmos_ovrl']:.2f} |" for t in r["table"]]
    ours = {t["group"]: t for t in r["table"] if t["coder"] == r["codec"]}
    ref = {t["group"]: t for t in r["table"] if t["coder"] == r["against"]}
    lines += ["", f"`{r['codec']}` minus `{r['against']}`, PESQ-WB / STOI / DNSMOS OVRL:", ""]
    lines += [f"- {g}: {ours[g]['pesq_wb'] - ref[g]['pesq_wb']:+.3f} / {ours[g]['stoi'] - ref[g]['stoi']:+.3f} / "
              f"{ours[g]['dnsmos_ovrl'] - ref[g]['dnsmos_ovrl']:+.2f}" for g in ours if g in ref]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
