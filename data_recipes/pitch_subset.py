"""Keep the cuts of a manifest whose voice is high (or low): a training manifest for the voices a codec does worst on.

    python data_recipes/pitch_subset.py exp/data/libri100/cuts.jsonl.gz exp/data/libri100_high [--min-hz 165]
    python data_recipes/pitch_subset.py IN OUT --max-hz 165      # the low voices instead

The codec falls behind Codec2 1200 on high voices only (``eval/codec_by_pitch.py``); a vocoder stage can draw
them at a larger share by listing this manifest beside the full one with its own ``data.train_weights``.
Each cut's median F0 over its voiced frames (``speechlm.codec.pitch.median_f0``) decides; unvoiced cuts go
nowhere. Writes ``OUT/cuts.jsonl.gz`` and ``OUT/f0.csv`` (every cut's id, speaker, median F0, kept or not).
Never run it on the evaluation-only folders' manifests.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifest", type=Path, help="a lhotse cuts manifest (.jsonl.gz)")
    ap.add_argument("out", type=Path, help="the folder for cuts.jsonl.gz and f0.csv")
    bound = ap.add_mutually_exclusive_group()
    bound.add_argument("--min-hz", type=float, default=None, help="keep cuts whose median F0 is at least this (165)")
    bound.add_argument("--max-hz", type=float, default=None, help="keep cuts whose median F0 is below this")
    args = ap.parse_args(argv)
    if args.min_hz is None and args.max_hz is None:
        args.min_hz = 165.0
    if not args.manifest.exists():
        sys.exit(f"{args.manifest}: not found")

    from lhotse import CutSet
    from tqdm import tqdm

    sys.path.insert(0, str(REPO))
    from speechlm.codec.pitch import median_f0

    cuts = CutSet.from_file(args.manifest)
    keep, table = [], []
    for cut in tqdm(cuts, desc="median F0", unit="cut"):
        f0 = median_f0(cut.load_audio()[0], cut.sampling_rate)
        kept = f0 > 0 and (f0 >= args.min_hz if args.min_hz is not None else f0 < args.max_hz)
        speaker = cut.supervisions[0].speaker if cut.supervisions else ""
        table.append((cut.id, speaker, f"{f0:.1f}", int(kept)))
        if kept:
            keep.append(cut)
    if not keep:
        sys.exit(f"{args.manifest}: no cut passes the F0 threshold")
    args.out.mkdir(parents=True, exist_ok=True)
    CutSet.from_cuts(keep).to_file(args.out / "cuts.jsonl.gz")
    with open(args.out / "f0.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["id", "speaker", "median_f0_hz", "kept"])
        w.writerows(table)
    seconds = sum(c.duration for c in keep)
    print(f"kept {len(keep)} of {len(table)} cuts ({seconds / 3600:.2f} h) -> {args.out / 'cuts.jsonl.gz'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
