"""Choose among vocoder exports of one tokenizer on tuning clips, never on the benchmark's.

    python eval/codec_select.py --codec default --codec runs/vocoder_more/export \
        --codec runs/vocoder_phase/export [--per-set 16] [--out eval/reports/codec/select]

Vocoder stages train on frozen tokens, so their exports differ only in the decoder; this decodes the same
tokens with each (the tokenizers must be identical, weight for weight) on the training-side clips of
``eval/codec_postfilter.py`` (LibriSpeech train-clean-100 and the embedded corpus's dev split) and scores
PESQ-WB, STOI and DNSMOS OVRL at 16 kHz against the original, beside ``--against`` (default Codec2 1200, the
codec bar's reference) on the same clips. The chosen export is the one whose worst margin over that reference,
across the three scores, is largest (to 0.01, ties to the better PESQ-WB): ``eval/codec_postfilter.py``'s rule,
since the bar asks to beat it on every column. With ``--against ''``: the best mean PESQ-WB whose DNSMOS OVRL
is not below the first ``--codec``'s (the rule before 2026-12-07). Either way the benchmark's evaluation sets
(``eval/bench_codec.py``) only ever measure a choice made elsewhere.
Writes ``select.json`` and ``select.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import bench_codec as bench
import codec_postfilter as tuning

REPO = Path(__file__).resolve().parents[1]


def same_tokenizer(a, b) -> bool:
    """True when two codecs make the same tokens: same name, version and tokenizer weights."""
    import torch

    if a.info.name != b.info.name or a.info.version != b.info.version:
        return False
    sa, sb = a.tokenizer.state_dict(), b.tokenizer.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def choose(table: list[dict], against: dict | None = None) -> dict:
    """With ``against`` (a reference codec's scores): the largest worst margin over it (``codec_postfilter.choose``).
    Without: the best mean PESQ-WB among the exports whose DNSMOS OVRL is at least the first row's."""
    if against is not None:
        return tuning.choose(table, against)
    return tuning.best_keeping_dnsmos(table, table[0])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", action="append", required=True,
                    help="a saved codec folder or 'default'; repeat; the first is the reference")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--synth", type=Path, default=REPO / "data" / "synth_default")
    ap.add_argument("--per-set", type=int, default=16)
    ap.add_argument("--against", default="codec2:1200",
                    help="the reference the choice must beat on every score ('' = the PESQ-first rule)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "eval" / "reports" / "codec" / "select")
    args = ap.parse_args(argv)
    if len(args.codec) < 2:
        ap.error("give at least two --codec to choose between")

    import torch

    sys.path.insert(0, str(REPO))
    from speechlm.codec.registry import load_codec
    from speechlm.eval.dnsmos import get_dnsmos

    torch.set_num_threads(args.threads)
    codecs = {spec: load_codec(spec) for spec in args.codec}
    reference = codecs[args.codec[0]]
    for spec, codec in codecs.items():
        if not same_tokenizer(reference, codec):
            sys.exit(f"{spec}: its tokenizer differs from {args.codec[0]}'s, so their tokens differ: this tool "
                     "compares decoders of one tokenizer (eval/bench_codec.py compares codecs)")
    clips = tuning.tuning_clips(args.data, args.synth, args.per_set)
    rows = tuning.score_decoders(reference, codecs, clips, get_dnsmos())
    sets = sorted({c["set"] for c in clips})
    table = [{"codec": spec, **summary} for spec, summary in tuning.summarize(rows, args.codec, sets).items()]
    against = tuning.score_reference(args.against, clips, get_dnsmos()) if args.against else None
    best = choose(table, against)
    report = {"command": "python eval/codec_select.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "clips": {s: sum(c["set"] == s for c in clips) for s in sets}, "table": table,
              "against": args.against or None, "against_scores": against, "chosen": best["codec"], "rows": rows}
    bench.write_report(args.out, "select", report, render(report, sets))
    print(f"chosen: {best['codec']}")
    return 0


def render(r: dict, sets: list[str]) -> str:
    lines = ["# Vocoder exports compared on tuning clips", "",
             f"Command: `{r['command']}`  ", "Clips: " + ", ".join(f"{s} {n}" for s, n in r["clips"].items())
             + "; the same tokens decoded by each; at 16 kHz against the original.", "",
             "| codec | PESQ-WB | STOI | DNSMOS OVRL | " + " | ".join(f"PESQ-WB / OVRL {s}" for s in sets)
             + " | worst margin |", "|---|---|---|---|" + "---|" * len(sets) + "---|"]
    against = r.get("against_scores")
    rows = r["table"] + ([{"codec": r["against"], "is_reference": True, **against}] if against else [])
    for i, t in enumerate(rows):
        name = f"{t['codec']} (the bar's reference)" if t.get("is_reference") else f"`{t['codec']}`" + (
            " (first)" if i == 0 else "")
        cells = [name, f"{t['pesq_wb']:.3f}", f"{t['stoi']:.3f}", f"{t['dnsmos_ovrl']:.2f}"]
        cells += [f"{t['by_set'][s]['pesq_wb']:.2f} / {t['by_set'][s]['dnsmos_ovrl']:.2f}" for s in sets]
        cells.append(f"{tuning.margin(t, against):+.3f}" if against and not t.get("is_reference") else "–")
        if t["codec"] == r["chosen"] and not t.get("is_reference"):
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    rule = (f"the largest worst margin over {r['against']} across PESQ-WB, STOI and DNSMOS OVRL" if against
            else "best PESQ-WB with DNSMOS OVRL not below the first's")
    lines += ["", f"Chosen: `{r['chosen']}` ({rule})."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
