"""Choose the vocoder's postfilter (spectral contrast enhancement) on tuning clips, never on the benchmark's.

    python eval/codec_postfilter.py --codec default --strength 0,0.2,0.4,0.6 --bins 5,9,17 \
        [--save runs/codec_postfilter]

``speechlm.vocoder.model.sharpen`` moves each decoded frame's log spectrum away from its envelope;
this sweeps its strength and envelope width. The clips are training-side audio, so the choice is not
made on the evaluation sets that ``eval/bench_codec.py`` reports: LibriSpeech train-clean-100 (real
read speech the vocoder trained on; one utterance per speaker, so decoded without a voice reference)
and the embedded corpus's dev split (unseen sentences; the speaker's next utterance as reference).
Every clip is encoded once and decoded at each setting; PESQ-WB, STOI and DNSMOS OVRL at 16 kHz
against the original. The chosen setting is the one with the best mean PESQ-WB whose DNSMOS OVRL is
not below the unfiltered decoder's; ``--save`` writes the codec with it (same weights and tokens).
Writes ``postfilter.json`` and ``postfilter.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TUNING_FOLDERS = ("librispeech_train_clean_100",)


def _bench():
    spec = importlib.util.spec_from_file_location("bench_codec", REPO / "eval" / "bench_codec.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x.strip()]


def tuning_clips(data: Path, synth: Path, per_set: int) -> list[dict]:
    """Training-side clips: LibriSpeech train-clean-100 (``data``) and the embedded corpus's dev split (``synth``)."""
    clips = _bench().load_clips(data if data.exists() else None, synth, per_set, folders=TUNING_FOLDERS, split="dev")
    if not clips:
        sys.exit(f"no tuning clips: neither {data}/librispeech_train_clean_100 nor {synth} (dev split)")
    return clips


SCORES = ("pesq_wb", "stoi", "dnsmos_ovrl")


def score_decoders(base, decoders: dict, clips: list[dict], dnsmos) -> list[dict]:
    """Every clip encoded once by ``base`` and decoded by each of ``decoders`` (key -> codec with the same
    tokenizer); one row per clip and decoder with PESQ-WB, STOI and DNSMOS OVRL at 16 kHz."""
    import torch
    from tqdm import tqdm

    from speechlm.eval.fidelity import fidelity

    rows = []
    with torch.inference_mode():
        for c in tqdm(clips, desc="clips", unit="clip"):
            codes = base.encode(c["wav"], sample_rate=c["sr"])
            n = round(len(c["wav"]) * base.sample_rate / c["sr"])
            for key, codec in decoders.items():
                speaker = codec.speaker_embedding(*c["reference"]) if c["reference"] is not None else None
                dec = codec.decode(codes, n, speaker=speaker)[0].numpy()
                f = fidelity(c["wav"], c["sr"], dec, codec.sample_rate)
                rows.append({"set": c["set"], "id": c["id"], "decoder": key, "pesq_wb": f.pesq_wb, "stoi": f.stoi,
                             "dnsmos_ovrl": dnsmos(dec, codec.sample_rate).ovrl})
    return rows


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


def choose(table: list[dict]) -> dict:
    """Best mean PESQ-WB among the settings whose DNSMOS OVRL is at least the unfiltered one's."""
    return best_keeping_dnsmos(table, next(r for r in table if r["strength"] == 0))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", default="default", help="a saved codec folder or 'default'")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--synth", type=Path, default=REPO / "data" / "synth_default")
    ap.add_argument("--per-set", type=int, default=16)
    ap.add_argument("--strength", type=_floats, default=[0.0, 0.2, 0.4, 0.6])
    ap.add_argument("--bins", type=lambda t: [int(x) for x in _floats(t)], default=[5, 9, 17])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--save", type=Path, default=None, help="write the codec with the chosen postfilter here")
    ap.add_argument("--out", type=Path, default=REPO / "eval" / "reports" / "codec" / "postfilter")
    args = ap.parse_args(argv)

    import torch

    sys.path.insert(0, str(REPO))
    from speechlm.codec.registry import load_codec
    from speechlm.eval.dnsmos import get_dnsmos

    torch.set_num_threads(args.threads)
    bench, dnsmos = _bench(), get_dnsmos()
    clips = tuning_clips(args.data, args.synth, args.per_set)
    base = load_codec(args.codec)
    settings = [(0.0, base.vocoder_config.postfilter_bins)] + [(s, b) for s in args.strength if s > 0
                                                              for b in args.bins]
    codecs = {st: base.with_postfilter(*st) for st in settings}
    rows = score_decoders(base, codecs, clips, dnsmos)
    sets = sorted({c["set"] for c in clips})
    table = [{"strength": strength, "bins": bins, **summary}
             for (strength, bins), summary in summarize(rows, settings, sets).items()]
    best = choose(table)
    report = {"command": "python eval/codec_postfilter.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "codec": args.codec, "clips": {s: sum(c["set"] == s for c in clips) for s in sets},
              "table": table, "chosen": {"strength": best["strength"], "bins": best["bins"]}, "rows": rows}
    bench.write_report(args.out, "postfilter", report, render(report, sets))
    if args.save is not None:
        base.with_postfilter(best["strength"], best["bins"]).save_pretrained(args.save)
        print(f"saved {args.codec} with postfilter {best['strength']} x {best['bins']} bins -> {args.save}")
    return 0


def render(r: dict, sets: list[str]) -> str:
    lines = ["# Vocoder postfilter, chosen on tuning clips", "",
             f"Command: `{r['command']}`  ", f"Codec: `{r['codec']}`; clips: "
             + ", ".join(f"{s} {n}" for s, n in r["clips"].items()) + "; at 16 kHz against the original.", "",
             "| strength | envelope bins | PESQ-WB | STOI | DNSMOS OVRL | " + " | ".join(
                 f"PESQ-WB / OVRL {s}" for s in sets) + " |",
             "|---|---|---|---|---|" + "---|" * len(sets)]
    for t in r["table"]:
        chosen = (t["strength"], t["bins"]) == (r["chosen"]["strength"], r["chosen"]["bins"])
        cells = [f"{t['strength']:g}" + (" (off)" if t["strength"] == 0 else ""),
                 str(t["bins"]) if t["strength"] else "–",
                 f"{t['pesq_wb']:.3f}", f"{t['stoi']:.3f}", f"{t['dnsmos_ovrl']:.2f}"]
        cells += [f"{t['by_set'][s]['pesq_wb']:.2f} / {t['by_set'][s]['dnsmos_ovrl']:.2f}" for s in sets]
        if chosen:
            cells = [f"**{c}**" for c in cells]
        lines.append("| " + " | ".join(cells) + " |")
    lines += ["", f"Chosen: strength {r['chosen']['strength']:g}, {r['chosen']['bins']} bins (best PESQ-WB with "
              "DNSMOS OVRL not below the unfiltered decoder's)."]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
