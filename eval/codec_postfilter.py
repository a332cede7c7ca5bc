"""Choose the vocoder's postfilters on tuning clips, never on the benchmark's.

    python eval/codec_postfilter.py --codec default --strength 0,0.2,0.4,0.6 --bins 5,9,17 \
        [--pitch 0.3,0.5,0.7] [--save runs/codec_postfilter]

Two decode-time postfilters (``speechlm.vocoder.postfilter``): ``sharpen`` moves each decoded frame's log
spectrum away from its envelope (``--strength`` x ``--bins``), ``pitch_comb`` raises the harmonics of
each periodic frame at its own pitch (``--pitch``, its strength). This sweeps each on its own (the
other filter off), beside both off. The clips are training-side audio, so the choice is not
made on the evaluation sets that ``eval/bench_codec.py`` reports: LibriSpeech train-clean-100 (real
read speech the vocoder trained on; one utterance per speaker, so decoded without a voice reference)
and the embedded corpus's dev split (unseen sentences; the speaker's next utterance as reference).
Every clip is encoded once and decoded at each setting; PESQ-WB, STOI and DNSMOS OVRL at 16 kHz
against the original, beside ``--against`` (default Codec2 1200, the codec bar's reference) on the same
clips. The chosen setting is the one whose worst margin over that reference, across the three scores,
is largest, to 0.01 with ties to the better PESQ-WB: the bar asks to beat it on every column, so a
filter that buys DNSMOS with a little PESQ is worth it exactly when it narrows the wider gap; with ``--against ''``, the best mean PESQ-WB whose
DNSMOS OVRL is not below the unfiltered decoder's. ``--save`` writes the codec with the chosen setting
(same weights and tokens).
Writes ``postfilter.json`` and ``postfilter.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

import bench_codec as bench

REPO = Path(__file__).resolve().parents[1]
TUNING_FOLDERS = ("librispeech_train_clean_100",)


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def tuning_clips(data: Path, synth: Path, per_set: int) -> list[dict]:
    """Training-side clips: LibriSpeech train-clean-100 (``data``) and the embedded corpus's dev split (``synth``)."""
    clips = bench.load_clips(data if data.exists() else None, synth, per_set, folders=TUNING_FOLDERS, split="dev")
    if not clips:
        sys.exit(f"no tuning clips: neither {data}/librispeech_train_clean_100 nor {synth} (dev split)")
    return clips


SCORES = ("pesq_wb", "stoi", "dnsmos_ovrl")


def score_decoders(base, decoders: dict, clips: list[dict], dnsmos) -> list[dict]:
    """Every clip encoded once by ``base`` and decoded by each of ``decoders`` (key -> codec with the same
    tokenizer); one row per clip and decoder with PESQ-WB, STOI and DNSMOS OVRL at 16 kHz."""
    import torch
    from tqdm import tqdm

    rows = []
    with torch.inference_mode():
        for c in tqdm(clips, desc="clips", unit="clip"):
            codes = base.encode(c["wav"], sample_rate=c["sr"])
            n = round(len(c["wav"]) * base.sample_rate / c["sr"])
            for key, codec in decoders.items():
                speaker = codec.speaker_embedding(*c["reference"]) if c["reference"] is not None else None
                dec = codec.decode(codes, n, speaker=speaker)[0].numpy()
                rows.append(score_row(c, key, dec, codec.sample_rate, dnsmos))
    return rows


def score_row(clip: dict, key, dec, sample_rate: int, dnsmos) -> dict:
    """One clip's decoded audio scored against its original: PESQ-WB, STOI and DNSMOS OVRL at 16 kHz."""
    from speechlm.eval.fidelity import fidelity

    f = fidelity(clip["wav"], clip["sr"], dec, sample_rate)
    return {"set": clip["set"], "id": clip["id"], "decoder": key, "pesq_wb": f.pesq_wb, "stoi": f.stoi,
            "dnsmos_ovrl": dnsmos(dec, sample_rate).ovrl}


def summarize(rows: list[dict], keys: list, sets: list[str]) -> dict:
    """decoder key -> mean scores over its clips, and per set (``by_set``)."""
    out = {}
    for key in keys:
        mine = [r for r in rows if r["decoder"] == key]
        out[key] = {k: float(np.nanmean([r[k] for r in mine])) for k in SCORES}
        out[key]["by_set"] = {s: {k: float(np.nanmean([r[k] for r in mine if r["set"] == s])) for k in SCORES}
                              for s in sets}
    return out


def best_keeping_dnsmos(table: list[dict], reference: dict) -> dict:
    """The tuning rule: best mean PESQ-WB among the rows whose DNSMOS OVRL is at least ``reference``'s."""
    return max((r for r in table if r["dnsmos_ovrl"] >= reference["dnsmos_ovrl"]), key=lambda r: r["pesq_wb"])


SETTING = ("strength", "bins", "pitch")  # with_postfilter's arguments, in order


def is_off(row: dict) -> bool:
    return row["strength"] == 0 and row["pitch"] == 0


def margin(row: dict, against: dict) -> float:
    """The worst of ``row``'s margins over ``against`` across PESQ-WB, STOI and DNSMOS OVRL (> 0: better on all)."""
    return min(row[k] - against[k] for k in SCORES)


def choose(table: list[dict], against: dict | None = None) -> dict:
    """With a reference: the setting with the largest worst margin over it, to 0.01 (the scores' own
    precision; ties go to the better PESQ-WB).
    Without: the best mean PESQ-WB among the settings whose DNSMOS OVRL is at least the unfiltered one's."""
    if against is not None:
        return max(table, key=lambda r: (round(margin(r, against), 2), r["pesq_wb"]))
    return best_keeping_dnsmos(table, next(r for r in table if is_off(r)))


def reference_rows(spec: str, clips: list[dict], dnsmos) -> list[dict]:
    """``score_row`` of each clip coded by a reference codec (``eval/bench_codec.py``'s ``roundtrip_of`` spec,
    e.g. ``codec2:1200``)."""
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        run = bench.roundtrip_of(spec, Path(tmp))
        return [score_row(c, spec, *run(c), dnsmos) for c in clips]


def score_reference(spec: str, clips: list[dict], dnsmos) -> dict:
    """Mean PESQ-WB, STOI and DNSMOS OVRL of a reference codec on the clips, and per set."""
    return summarize(reference_rows(spec, clips, dnsmos), [spec], sorted({c["set"] for c in clips}))[spec]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", default="default", help="a saved codec folder or 'default'")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--synth", type=Path, default=REPO / "data" / "synth_default")
    ap.add_argument("--per-set", type=int, default=16)
    ap.add_argument("--strength", type=_floats, default=[0.0, 0.2, 0.4, 0.6])
    ap.add_argument("--bins", type=lambda t: [int(x) for x in _floats(t)], default=[5, 9, 17])
    ap.add_argument("--pitch", type=_floats, default=[], help="pitch comb strengths (each <= 1)")
    ap.add_argument("--against", default="codec2:1200",
                    help="the reference the choice must beat on every score ('' = the PESQ-first rule)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", type=Path, default=None, help="write the codec with the chosen postfilter here")
    ap.add_argument("--out", type=Path, default=REPO / "eval" / "reports" / "codec" / "postfilter")
    args = ap.parse_args(argv)

    import torch

    sys.path.insert(0, str(REPO))
    from speechlm.codec.registry import load_codec
    from speechlm.eval.dnsmos import get_dnsmos

    torch.set_num_threads(args.threads)
    dnsmos = get_dnsmos()
    clips = tuning_clips(args.data, args.synth, args.per_set)
    base = load_codec(args.codec)
    vc = base.vocoder_config
    settings = ([(0.0, vc.postfilter_bins, 0.0)] + [(s, b, 0.0) for s in args.strength if s > 0 for b in args.bins]
                + [(0.0, vc.postfilter_bins, p) for p in args.pitch if p > 0])
    codecs = {st: base.with_postfilter(*st) for st in settings}
    rows = score_decoders(base, codecs, clips, dnsmos)
    sets = sorted({c["set"] for c in clips})
    table = [dict(zip(SETTING, setting)) | summary for setting, summary in summarize(rows, settings, sets).items()]
    against = score_reference(args.against, clips, dnsmos) if args.against else None
    best = choose(table, against)
    report = {"command": "python eval/codec_postfilter.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "codec": args.codec, "clips": {s: sum(c["set"] == s for c in clips) for s in sets},
              "table": table, "against": args.against or None, "against_scores": against,
              "chosen": {k: best[k] for k in SETTING}, "rows": rows}
    bench.write_report(args.out, "postfilter", report, render(report, sets))
    if args.save is not None:
        base.with_postfilter(*(best[k] for k in SETTING)).save_pretrained(args.save)
        print(f"saved {args.codec} with postfilter {describe(best)} -> {args.save}")
    return 0


def describe(setting: dict) -> str:
    parts = []
    if setting["strength"]:
        parts.append(f"contrast {setting['strength']:g} x {setting['bins']} bins")
    if setting["pitch"]:
        parts.append(f"pitch comb {setting['pitch']:g}")
    return ", ".join(parts) or "off"


def render(r: dict, sets: list[str]) -> str:
    lines = ["# Vocoder postfilter, chosen on tuning clips", "",
             f"Command: `{r['command']}`  ", f"Codec: `{r['codec']}`; clips: "
             + ", ".join(f"{s} {n}" for s, n in r["clips"].items()) + "; at 16 kHz against the original.", "",
             "| postfilter | PESQ-WB | STOI | DNSMOS OVRL | " + " | ".join(f"PESQ-WB / OVRL {s}" for s in sets)
             + " | worst margin |", "|---|---|---|---|" + "---|" * len(sets) + "---|"]
    against = r.get("against_scores")
    rows = r["table"] + ([{"against": r["against"], **against}] if against else [])
    for t in rows:
        name = f"{t['against']} (reference)" if "against" in t else describe(t)
        cells = [name, f"{t['pesq_wb']:.3f}", f"{t['stoi']:.3f}", f"{t['dnsmos_ovrl']:.2f}"]
        cells += [f"{t['by_set'][s]['pesq_wb']:.2f} / {t['by_set'][s]['dnsmos_ovrl']:.2f}" for s in sets]
        cells.append(f"{margin(t, against):+.3f}" if against and "against" not in t else "–")
        if "against" not in t and all(t[k] == r["chosen"][k] for k in SETTING):
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    rule = (f"the largest worst margin over {r['against']} across PESQ-WB, STOI and DNSMOS OVRL" if against
            else "best PESQ-WB with DNSMOS OVRL not below the unfiltered decoder's")
    lines += ["", f"Chosen: {describe(r['chosen'])} ({rule})."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
