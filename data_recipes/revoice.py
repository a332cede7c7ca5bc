"""Re-make a pipeline folder's voice embeddings with its codec's reference encoder, after the vocoder changed.

    python data_recipes/revoice.py [--pipeline speechlm/pretrained] [--corpus data/synth_default]

A voice-conditioned vocoder trains its reference encoder too, so a pipeline given a newly trained codec still
holds the embeddings the old encoder made, and loading it is refused (``speechlm.synthesis.bundle.load_voices``).
The presets' codes need no change as long as the tokenizer is the same. This finds each preset's prompt
recording in the embedded corpus (same speaker and text; ``make data`` rebuilds the corpus bit for bit),
checks that the codec still encodes it to the stored codes (if not, the tokenizer changed: rebuild the
pipeline with ``speechlm pipeline build``), and stores the new embeddings with the encoder's sha256.
"""

from __future__ import annotations

import argparse
import csv
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--pipeline", type=Path, default=REPO / "speechlm" / "pretrained")
    ap.add_argument("--corpus", type=Path, default=REPO / "data" / "synth_default",
                    help="the embedded corpus (metadata.csv + wavs/) the presets were cut from")
    args = ap.parse_args(argv)

    import soundfile as sf
    import torch

    sys.path.insert(0, str(REPO))
    from speechlm.codec.neural import NeuralCodec
    from speechlm.synthesis.bundle import VOICES_WEIGHTS, load_voices, save_voices

    codec = NeuralCodec.from_pretrained(args.pipeline / "codec")
    if not codec.voice_conditioned:
        sys.exit(f"{args.pipeline / 'codec'}: not voice-conditioned, its voices carry no embeddings")
    voices = load_voices(args.pipeline, codec.info)  # no encoder check: the embeddings are what is remade
    meta = args.corpus / "metadata.csv"
    if not meta.exists():
        sys.exit(f"{meta}: not found (make data builds the embedded corpus)")
    with open(meta, encoding="utf-8") as f:
        by_line = {(r["speaker"], r["text"]): r["id"] for r in csv.DictReader(f, delimiter="|")}
    with torch.inference_mode():
        for name, voice in voices.items():
            uid = by_line.get((voice.speaker, voice.text))
            if uid is None:
                sys.exit(f"voice {name!r}: no utterance of {voice.speaker!r} saying {voice.text!r} in {meta}")
            wav, sr = sf.read(args.corpus / "wavs" / f"{uid}.flac", dtype="float32")
            if not torch.equal(codec.encode(wav, sample_rate=sr)[0], voice.codes):
                sys.exit(f"voice {name!r}: {uid} no longer encodes to the stored codes: the tokenizer changed, so "
                         "rebuild the pipeline (speechlm pipeline build --voices ...) instead")
            voice.embedding = codec.speaker_embedding(torch.from_numpy(wav)[None], sr).cpu()
    save_voices(args.pipeline, voices, codec.voice_encoder_hash)
    print(f"{args.pipeline / VOICES_WEIGHTS}: {len(voices)} voice embeddings remade with encoder "
          f"{codec.voice_encoder_hash[:19]}...")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
