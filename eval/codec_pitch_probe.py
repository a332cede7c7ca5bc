"""Do a codec's tokens carry pitch? A probe reads voicing and F0 back from them.

    python eval/codec_pitch_probe.py --codec default [--codec runs/codec_pitch/export ...] --out eval/reports/codec/pitch_probe

For each feature, the same small conv net (3 x conv k5, 256 channels) is trained to predict voicing and
log-F0 at 100 Hz (WORLD DIO + StoneMask targets, ``speechlm.codec.pitch.f0_frames``) and scored on
held-out utterances: voicing accuracy, the median F0 error in cents where both say voiced, and the share
of those frames off by more than 200 cents. The features:

* ``log-mel``: the codec's own input (the ceiling: what the encoder could have kept);
* each codec's quantized latent, from all its residual levels and from the first one alone (what the LM's
  first codebook can know), repeated to 100 Hz.

Utterances come from training manifests (``--manifest``, default LibriSpeech train-clean-100 sample + the
embedded corpus's train split), split 80/20 by utterance: a probe of information, not an evaluation of
speech, so the evaluation-only sets stay untouched. Writes ``pitch_probe.json`` and ``pitch_probe.md``.
"""

from __future__ import annotations

import argparse
import gzip
import json
import random
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MANIFESTS = ["exp/data/libri100/cuts.jsonl.gz", "exp/data/synth_default/cuts_train.jsonl.gz"]
MAX_SECONDS = 8.0


def load_items(manifests: list[Path], per_manifest: int, seed: int) -> list[str]:
    """Audio paths, ``per_manifest`` drawn from each manifest."""
    rng = random.Random(seed)
    items = []
    for m in manifests:
        if not m.exists():
            sys.exit(f"{m}: manifest not found (make codec-data builds the default ones)")
        with gzip.open(m, "rt", encoding="utf-8") as f:
            rows = [json.loads(line) for line in f]
        rng.shuffle(rows)
        items += [r["recording"]["sources"][0]["source"] for r in rows[:per_manifest]]
    return items


def probe_score(train: list, test: list, steps: int, seed: int) -> dict[str, float]:
    """Train the probe on (features [D, T], f0 [T]) pairs; score it on ``test``."""
    import torch
    from torch import nn

    from speechlm.codec.pitch import cents_error, pitch_loss

    torch.manual_seed(seed)
    rng = random.Random(seed)
    d = train[0][0].shape[0]
    probe = nn.Sequential(nn.Conv1d(d, 256, 5, padding=2), nn.GELU(), nn.Conv1d(256, 256, 5, padding=2), nn.GELU(),
                          nn.Conv1d(256, 256, 5, padding=2), nn.GELU(), nn.Conv1d(256, 2, 1))
    opt = torch.optim.Adam(probe.parameters(), 1e-3)
    for _ in range(steps):
        batch = rng.sample(train, min(8, len(train)))
        n = min(300, min(f.shape[-1] for _, f in batch))
        xs, fs = [], []
        for x, f in batch:
            s = rng.randint(0, f.shape[-1] - n)
            xs.append(x[:, s:s + n])
            fs.append(f[s:s + n])
        loss = pitch_loss(probe(torch.stack(xs)), torch.stack(fs))["loss"]
        opt.zero_grad()
        loss.backward()
        opt.step()
    cents, acc, frames = [], [], 0
    with torch.no_grad():
        for x, f in test:
            pred = probe(x[None])[0]
            said, voiced = pred[0] > 0, f > 0
            acc.append(float((said == voiced).float().sum()))
            frames += f.numel()
            both = said & voiced
            cents.append(cents_error(pred[1][both], f[both]))
    c = torch.cat(cents)
    return {"voicing_accuracy": sum(acc) / frames, "f0_error_cents_median": float(c.median()) if c.numel() else None,
            "f0_gross_errors": float((c > 200).float().mean()) if c.numel() else None, "scored_frames": int(c.numel())}


def utterance_features(codecs: dict, wav: torch.Tensor) -> tuple[dict, torch.Tensor]:
    """The probe's inputs for one utterance ``wav [L]`` at the codecs' rate, all ``[D, T100]`` with T100 the
    number of F0 frames: the log-mel, and each codec's quantized latent (all levels, level 1) repeated to 100 Hz."""
    import torch

    from speechlm.codec.pitch import f0_frames

    cfg = next(iter(codecs.values())).codec_config
    frame, hop = cfg.samples_per_frame, cfg.hop_length
    wav = wav[: wav.numel() // frame * frame]  # whole codec frames, so every feature has the same length
    feats = {}
    with torch.no_grad():
        for spec, codec in codecs.items():
            tok = codec.tokenizer
            feats.setdefault("log-mel (codec input)", tok.mel(wav[None])[0])
            codes = tok.encode(wav[None])
            for k, name in ((codes.shape[1], "all levels"), (1, "level 1")):
                feats[f"{spec}: {name}"] = tok.embed(codes[:, :k])[0].repeat_interleave(frame // hop, -1)
    return feats, f0_frames(wav[None], cfg.sample_rate, hop)[0]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", action="append", required=True, help="a saved codec folder or 'default' (repeatable)")
    ap.add_argument("--manifest", action="append", type=Path, help="training manifests to draw utterances from")
    ap.add_argument("--per-manifest", type=int, default=200)
    ap.add_argument("--steps", type=int, default=1500, help="probe training steps per feature")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=REPO / "eval" / "reports" / "codec" / "pitch_probe")
    args = ap.parse_args(argv)

    import soundfile as sf
    import torch
    import torchaudio
    from tqdm import tqdm

    from speechlm.codec.neural import NeuralCodec
    from speechlm.codec.registry import load_codec

    torch.set_num_threads(args.threads)
    codecs = {}
    for spec in args.codec:
        codec = load_codec(spec)
        if not isinstance(codec, NeuralCodec):
            sys.exit(f"{spec}: not a speechlm codec (the probe reads its quantized latent)")
        codecs[spec] = codec
    first = next(iter(codecs.values()))
    sr = first.codec_config.sample_rate
    manifests = args.manifest or [REPO / m for m in DEFAULT_MANIFESTS]

    rows = []  # per utterance: ({feature name: [D, T100]}, f0 [T100])
    for path in tqdm(load_items(manifests, args.per_manifest, args.seed), desc="features", file=sys.stderr):
        wav, rate = sf.read(path, dtype="float32", always_2d=True)
        wav = torch.from_numpy(wav.mean(1))
        if rate != sr:
            wav = torchaudio.functional.resample(wav, rate, sr)
        if wav.numel() >= 8 * first.codec_config.samples_per_frame:
            rows.append(utterance_features(codecs, wav[: int(MAX_SECONDS * sr)]))
    if len(rows) < 5:
        sys.exit(f"only {len(rows)} usable utterances (need 5)")
    random.Random(args.seed).shuffle(rows)
    n_test = max(1, len(rows) // 5)
    results = {}
    for name in tqdm(list(rows[0][0]), desc="probes", file=sys.stderr):
        pairs = [(feats[name], f0) for feats, f0 in rows]
        results[name] = probe_score(pairs[n_test:], pairs[:n_test], args.steps, args.seed)
    report = {"utterances": len(rows), "held_out": n_test, "steps": args.steps,
              "manifests": [str(m) for m in manifests], "results": results}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "pitch_probe.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (args.out / "pitch_probe.md").write_text(render(report), encoding="utf-8")
    print(render(report))
    return 0


def render(r: dict) -> str:
    fmt = lambda v, f: "–" if v is None else f.format(v)
    lines = [f"# Pitch probe: {r['utterances']} utterances ({r['held_out']} held out), {r['steps']} probe steps", "",
             "| feature | voicing accuracy | F0 error, median (cents) | frames off > 200 cents |", "|---|---|---|---|"]
    for name, s in r["results"].items():
        lines.append(f"| {name} | {s['voicing_accuracy']:.3f} | {fmt(s['f0_error_cents_median'], '{:.0f}')} | "
                     f"{fmt(s['f0_gross_errors'], '{:.1%}')} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
