"""How much of what is said can be read off a codec's tokens? A CTC phoneme probe on frozen tokens.

    python eval/token_phoneme_probe.py --data exp/data/synth_default --codec speechlm-codec-2-4cb

A small probe (code embeddings summed over the codebooks used, two convolutions of 5 frames, a linear
layer: ~0.5M parameters) is trained with CTC to read the phonemes from the token shards of the train
split, then scored on the dev split (sentences never seen) by phoneme error rate, greedy decoding.
Stress marks, word boundaries and punctuation are dropped: they are no sound of their own.
Run once with codebook 0 alone and once with all codebooks: if the probe reads the phonemes well and
the LM still does not, the LM is what fails; if it reads them badly from codebook 0, the codec's
coarsest level carries little of the content (then the fix is in the codec: semantic distillation
into the first level, as SpeechTokenizer and Mimi do). Writes ``token_probe.{json,md}``.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
NOT_SEGMENTS = frozenset(" !,.?;:-ˈˌː")  # symbols that are no sound of their own


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default=str(REPO / "exp/data/synth_default"), help="recipe output (text/, tokens/)")
    ap.add_argument("--codec", default="speechlm-codec-2-4cb", help="token folder name under DATA/tokens/")
    ap.add_argument("--steps", type=int, default=1500)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--n-dev", type=int, default=200)
    ap.add_argument("--out", default=str(REPO / "eval/reports/codec"))
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    if args.steps < 20:
        ap.error("--steps must be at least 20 (the one-cycle schedule warms up over the first 10 %)")

    import jiwer
    import torch
    import torch.nn.functional as F
    from torch import nn
    from tqdm import tqdm

    from speechlm.codec.tokens import read_token_info
    from speechlm.lm.data import load_utterances
    from speechlm.text.tokenizer import (
        PAD_ID as BLANK,  # CTC's blank: <pad> is never a phoneme
    )
    from speechlm.text.tokenizer import SYMBOL_OFFSET, TextTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    text, tokens = Path(args.data) / "text", Path(args.data) / "tokens" / args.codec
    tok = TextTokenizer.load(text / "tokenizer.json")
    segments = {i for i, s in enumerate(tok.symbols, SYMBOL_OFFSET) if s not in NOT_SEGMENTS}

    def load(split: str):
        utts = load_utterances(text / f"cuts_{split}.jsonl.gz", tokens, split, tok)
        out = []
        for u in utts:
            ids = [i for i in u.text if i in segments]
            if ids and len(ids) <= u.codes.shape[-1]:
                out.append((u.codes, ids))
        return out

    train, dev = load("train"), load("dev")
    dev = random.Random(args.seed).sample(dev, min(args.n_dev, len(dev)))
    info = read_token_info(next(tokens.glob("train-*.safetensors")))
    k_all, size = info.n_codebooks, info.codebook_size

    class Probe(nn.Module):
        def __init__(self, k: int):
            super().__init__()
            self.k = k
            self.embed = nn.ModuleList(nn.Embedding(size, 128) for _ in range(k))
            self.convs = nn.Sequential(nn.Conv1d(128, 256, 5, padding=2), nn.GELU(), nn.Conv1d(256, 256, 5, padding=2),
                                       nn.GELU())
            self.out = nn.Linear(256, tok.vocab_size)

        def forward(self, codes):  # [B, K, T] -> log-probs [B, T, V]
            x = sum(self.embed[i](codes[:, i]) for i in range(self.k))
            return self.out(self.convs(x.transpose(1, 2)).transpose(1, 2)).log_softmax(-1)

    def batch(items, k):
        t = max(c.shape[-1] for c, _ in items)
        codes = torch.zeros(len(items), k, t, dtype=torch.long)
        for b, (c, _) in enumerate(items):
            codes[b, :, : c.shape[-1]] = c[:k]
        return (codes, torch.tensor([c.shape[-1] for c, _ in items]), torch.tensor([i for _, ids in items for i in ids]),
                torch.tensor([len(ids) for _, ids in items]))

    results = {}
    for k in sorted({1, k_all}):
        probe = Probe(k)
        opt = torch.optim.AdamW(probe.parameters(), lr=2e-3)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=2e-3, total_steps=args.steps, pct_start=0.1)
        rng, t0 = random.Random(args.seed), time.perf_counter()
        for _ in tqdm(range(args.steps), desc=f"probe, {k} codebook(s)", unit="step"):
            codes, lengths, targets, target_lengths = batch(rng.sample(train, args.batch_size), k)
            loss = F.ctc_loss(probe(codes).transpose(0, 1), targets, lengths, target_lengths, blank=BLANK,
                              zero_infinity=True)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        refs, hyps = [], []
        with torch.inference_mode():
            for codes, ids in dev:
                best = probe(codes[None, :k])[0].argmax(-1).tolist()
                hyp = [t for j, t in enumerate(best) if t != BLANK and (j == 0 or best[j - 1] != t)]
                refs.append(" ".join(map(str, ids)))
                hyps.append(" ".join(map(str, hyp)) or "-")
        results[k] = {"per": float(jiwer.wer(refs, hyps)), "final_train_ctc": float(loss),
                      "train_seconds": time.perf_counter() - t0}
    report = {"command": "python eval/token_phoneme_probe.py " + " ".join(sys.argv[1:] if argv is None else argv),
              "tokens": str(tokens), "train_utterances": len(train), "dev_utterances": len(dev),
              "steps": args.steps, "results": {f"{k} codebook(s)": r for k, r in results.items()}}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "token_probe.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    lines = ["# Phonemes read off frozen codec tokens (CTC probe)", "", f"Command: `{report['command']}`  ",
             (f"Tokens: `{tokens}`; probe trained {args.steps} steps x {args.batch_size} on {len(train)} train "
              f"utterances, scored on {len(dev)} dev utterances (unseen sentences)."), "",
             "| codebooks read | phoneme error rate (dev) | final train CTC | train time |", "|---|---|---|---|"]
    for k, r in results.items():
        lines.append(f"| {'0' if k == 1 else f'0-{k - 1}'} | {100 * r['per']:.1f} % | {r['final_train_ctc']:.2f} | "
                     f"{r['train_seconds']:.0f} s |")
    (out / "token_probe.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
