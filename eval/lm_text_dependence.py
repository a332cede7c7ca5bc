"""How much does the LM's speech depend on the text it is asked to say? A teacher-forced diagnostic.

    python eval/lm_text_dependence.py --model default --data exp/data/synth_default --out eval/reports/lm

For dev utterances (never trained on), the cross-entropy of the target audio tokens under the ``tts``
task, per codebook, with the same voice prompt (another dev utterance of the same voice) and:

* ``own text``: the utterance's own phonemes (what training optimizes);
* ``other text``: the phonemes of a different dev sentence (the next one in the list);
* ``no text``: an empty text span.

A model that reads its text scores ``own text`` well below the other two; if the three are about equal,
the audio it generates is conditioned on the voice prompt and its own past, not on the words, and
no amount of sampling tuning makes it intelligible.

The other direction: the LM's own ``asr`` task on the same utterances' audio tokens (greedy), scored by
symbol error rate against their phonemes (a model that reads its audio gets well below 100 %).

With the own text it also measures every attention head's alignment: the guided-attention loss
(``speechlm/lm/align.py``: ``-log`` of the head's attention mass near the even-pace diagonal over the
target text, 0 = all of it there) per layer and head, and plots the best-aligned head's attention for
the first utterance. That is how ``configs/lm/guided.yaml`` picked the heads it guides. Writes
``text_dependence.{json,md}`` and ``alignment.png``.
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
    from speechlm.lm.align import alignment_spans, guided_attention_loss
    from speechlm.synthesis.voice import generate_text
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
    n_layers, n_heads = lm.cfg.n_layers, lm.cfg.n_heads
    every_head = {layer: n_heads for layer in range(n_layers)}
    head_loss = torch.zeros(n_layers, n_heads, dtype=torch.float64)
    first_maps = None
    for n, utt in enumerate(tqdm(items, desc="teacher forcing", unit="utt")):
        same = by_voice[utt.speaker]
        prompt = same[(same.index(utt) + 1) % len(same)]
        other = items[(n + 1) % len(items)]
        for cond, text in zip(CONDITIONS, (utt.text, other.text, [])):
            seq, mask = builder.build("tts", dataclasses.replace(utt, text=text), prompt)
            own = cond == "own text"
            with torch.inference_mode():
                out = lm(seq[None, :, :-1], attn_probs=every_head if own else None)
            logits = out.logits
            if own:
                spans = alignment_spans(seq[None, :, :-1], pipe.layout)
                for layer, probs in enumerate(out.attn):
                    for h in range(n_heads):
                        head_loss[layer, h] += float(guided_attention_loss([probs[:, h: h + 1]], spans))
                if first_maps is None:
                    q0, q1, k0, k1 = spans[0].tolist()
                    first_maps = torch.stack([p[0, :, q0:q1, k0:k1] for p in out.attn])  # [L, H, frames, text]
            target, m = seq[:, 1:], mask[:, 1:]
            for i in range(k):
                ce = F.cross_entropy(logits[i][0].float(), target[i], reduction="none")
                sums[cond][i] += float(ce[m[i]].sum())
                if cond == "own text":
                    counts[i] += int(m[i].sum())
    import jiwer

    refs, hyps = [], []
    for utt in tqdm(items, desc="asr", unit="utt"):
        prompt = builder.asr_prompt(utt.codes, utt.language)
        ids = generate_text(lm, pipe.layout, prompt, max_tokens=2 * len(utt.text) + 8)
        refs.append(" ".join(pipe.tokenizer.decode(utt.text).replace(" ", "_")))
        hyps.append(" ".join(pipe.tokenizer.decode(ids).replace(" ", "_")) or "-")
    result = {"command": "python eval/lm_text_dependence.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "model": args.model, "pipeline": repr(pipe), "utterances": len(items),
              "ce_per_codebook": {c: (sums[c] / counts).tolist() for c in CONDITIONS},
              "ce_mean": {c: float(sums[c].sum() / counts.sum()) for c in CONDITIONS},
              "guided_attention": (pipe.lm_meta or {}).get("guided_attention"),
              "head_alignment_loss": (head_loss / len(items)).tolist(),
              "asr_symbol_error_rate": float(jiwer.wer(refs, hyps)), "asr_example": {"ref": refs[0], "hyp": hyps[0]}}
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
    lines += ["## The other direction: the LM's asr task", "",
              (f"Symbol error rate of the LM's greedy `asr` transcripts of the same {len(items)} utterances' tokens "
               f"against their phonemes: **{100 * result['asr_symbol_error_rate']:.1f} %**. First utterance:"), "",
              f"    reference: {refs[0]}", f"    LM asr:    {hyps[0]}", ""]
    align = head_loss / len(items)
    best = divmod(int(align.argmin()), n_heads)
    guided = result["guided_attention"]
    lines += ["## Alignment per attention head", "",
              ("Guided-attention loss with the own text (mean over the utterances; 0 = all attention near the "
               "even-pace diagonal of the target text, ~1 for a head that reads along it, higher for one that "
               f"looks elsewhere). This LM's guided heads: {guided or 'none (trained without guided attention)'}."), "",
              "| layer | " + " | ".join(f"head {h}" for h in range(n_heads)) + " |", "|---|" + "---|" * n_heads]
    lines += [f"| {layer} | " + " | ".join(f"{x:.2f}" for x in align[layer].tolist()) + " |" for layer in range(n_layers)]
    lines += ["", f"`alignment.png`: layer {best[0]} head {best[1]} (the best aligned) on the first utterance.", ""]
    _plot(first_maps[best[0], best[1]], f"layer {best[0]} head {best[1]}: {items[0].id}", out / "alignment.png")
    (out / "text_dependence.md").write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))
    return 0


def _plot(attn, title: str, path: Path) -> None:
    """Attention ``[frames, text tokens]`` as an image, the even-pace diagonal dashed."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames, text = attn.shape
    fig, ax = plt.subplots(figsize=(7, 4.5), constrained_layout=True)
    ax.imshow(attn.T.numpy(), origin="lower", aspect="auto", cmap="viridis", interpolation="nearest")
    ax.plot([-0.5, frames - 0.5], [-0.5, text - 0.5], "w--", lw=0.8)
    ax.set(xlabel="target audio frame (25 Hz)", ylabel="target text token", title=title)
    fig.savefig(path, dpi=110)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
