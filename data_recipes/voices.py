"""Voice presets for a pipeline: one train-split utterance per speaker, for `speechlm pipeline build --voices`.

    python data_recipes/voices.py exp/data/synth_default/cuts_train.jsonl.gz OUT.jsonl [--seconds 4]

Picks, for every speaker, the utterance whose duration is closest to ``--seconds`` (a voice prompt is
paid for at every generated step, so a few seconds is the usual trade-off). Writes
``{name, audio, text, speaker}`` lines, audio as absolute paths; the preset name is the speaker name.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("manifest")
    ap.add_argument("out")
    ap.add_argument("--seconds", type=float, default=4.0)
    args = ap.parse_args(argv)
    from speechlm.data.manifest import iter_manifest

    best: dict[str, tuple[float, dict]] = {}
    for cut in iter_manifest(args.manifest):
        sup = cut.supervisions[0]
        gap = abs(cut.duration - args.seconds)
        if sup.speaker and (sup.speaker not in best or gap < best[sup.speaker][0]):
            audio = str(Path(cut.recording.sources[0].source).resolve())
            best[sup.speaker] = (gap, {"name": sup.speaker, "audio": audio, "text": sup.text, "speaker": sup.speaker})
    if not best:
        raise SystemExit(f"{args.manifest}: no utterance with a speaker")
    Path(args.out).write_text("".join(json.dumps(v) + "\n" for _, v in sorted(best.values(), key=lambda x: x[1]["name"])),
                              encoding="utf-8")
    print(f"{args.out}: {len(best)} voice presets")
    return 0


if __name__ == "__main__":
    sys.exit(main())
