"""How much does the LM's speech depend on the text it is asked to say? A teacher-forced diagnostic.

    python eval/lm_text_dependence.py --model default --data exp/data/synth_default --out eval/reports/lm

For dev utterances (never trained on), the cross-entropy of the target audio tokens under the ``tts``
task, per codebook, with the same voice prompt (another dev utterance of the same voice) and:

* ``own text``: the utterance's own phonemes (what training optimizes);
* ``other text``: the phonemes of a different dev sentence (the next one in the list);
* ``no text``: an empty text span.

A model that reads its text scores ``own text`` well below the other two; if the three are about equal,
the audio it generates is conditioned on the voice prompt and its own past, not on the words, and
no amount of sampling tuning makes it intelligible. Writes ``text_dependence.{json,md}``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONDITIONS = ("own text", "other text", "no text")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", default="default", help="'default' (bundled) or a pipeline folder")
    ap.add_argument("--data", default=str(REPO / "exp/data/synth_default"), help="recipe output (text/, tokens/)")
    ap.add_argument("--token-dir", default=None, help="default: DATA/tokens/<the pipeline's codec>")
    ap.add_argument("--n", type=int, default=200, help="dev utterances")
    ap.add_argument("--out", default=str(REPO / "eval/reports/lm"))
    ap.add_argument("--threads", type=int, default=None)
    args = ap.parse_args(argv)

    import torch
    import torch.nn.functional as F
    from tqdm import tqdm

    from speechlm.data.tokenize_stage import token_dir
    from speechlm.inference import Pipeline
    from speechlm.lm.data import SequenceBuilder, load_utterances

    if args.threads:
        torch.set_num_threads(args.threads)
    pipe = Pipeline.from_pretrained(args.model, quantize=None)
    tokens = args.token_dir or token_dir(args.data, pipe.codec.info)
    dev = load_utterances(Path(args.data) / "text" / "cuts_dev.jsonl.gz", tokens, "dev", pipe.tokenizer)
    dev = sorted(dev, key=lambda u: u.id)
    by_voice: dict[str, list] = {}
    for u in dev:
        by_voice.setdefault(u.speaker, []).append(u)
    items = [us[i] for i in range(max(map(len, by_voice.values()))) for us in by_voice.values()
             if i < len(us)][: args.n]  # round-robin over voices
    builder, k = SequenceBuilder(pipe.layout), pipe.layout.n_codebooks
    sums = {c: torch.zeros(k, dtype=torch.float64) for c in CONDITIONS}
    counts = torch.zeros(k, dtype=torch.float64)
    lm = pipe.lm.eval()
    for n, utt in enumerate(tqdm(items, desc="teacher forcing", unit="utt")):
        same = by_voice[utt.speaker]
        prompt = same[(same.index(utt) + 1) % len(same)]
        other = items[(n + 1) % len(items)]
        for cond, text in zip(CONDITIONS, (utt.text, other.text, [])):
            seq, mask = builder.build("tts", dataclasses.replace(utt, text=text), prompt)
            with torch.inference_mode():
                logits = lm(seq[None, :, :-1]).logits
            target, m = seq[:, 1:], mask[:, 1:]
            for i in range(k):
                ce = F.cross_entropy(logits[i][0].float(), target[i], reduction="none")
                sums[cond][i] += float(ce[m[i]].sum())
                if cond == "own text":
                    counts[i] += int(m[i].sum())
    result = {"command": "python eval/lm_text_dependence.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "model": args.model, "pipeline": repr(pipe), "utterances": len(items),
              "ce_per_codebook": {c: (sums[c] / counts).tolist() for c in CONDITIONS},
              "ce_mean": {c: float(sums[c].sum() / counts.sum()) for c in CONDITIONS}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "text_dependence.json").write_text(json.dumps(result, indent=2), encoding="utf-8")
    lines = ["# Does the LM read its text? Teacher-forced TTS cross-entropy on dev utterances", "",
             f"Command: `{result['command']}`  ", f"Model: {result['pipeline']}", "",
             (f"{len(items)} dev utterances, each with another dev utterance of its voice as the voice prompt. "
             "Cross-entropy (nats) of the target audio tokens, lower is better:"), "",
             "| text given | " + " | ".join(f"codebook {i}" for i in range(k)) + " | mean |",
             "|---|" + "---|" * (k + 1)]
    for c in CONDITIONS:
        per = result["ce_per_codebook"][c]
        lines.append(f"| {c} | " + " | ".join(f"{x:.3f}" for x in per) + f" | {result['ce_mean'][c]:.3f} |")
    own, other = result["ce_per_codebook"]["own text"][0], result["ce_per_codebook"]["other text"][0]
    lines += ["", (f"Codebook 0 (the coarsest, which carries most of what is said): own text {own:.3f} vs "
              f"other text {other:.3f} nats, a gap of {other - own:.3f}."), ""]
    (out / "text_dependence.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
