"""Stage 2: split a prepared manifest into ``cuts_{train,dev,test}.jsonl.gz``.

Splits a corpus defines itself (the synthetic corpus's sentence split, LibriSpeech/LibriTTS subsets,
FSDD's official test set) are kept. Other utterances are assigned by a seeded hash of their
normalized text, so the same sentence said by several speakers always lands in one split and test
sentences never appear in training; ``by="speaker"`` holds out whole speakers instead. If the corpus
defines train/test but no dev set, dev is carved from train by utterance id.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from lhotse import MonoCut

from speechlm.data.manifest import iter_manifest, manifest_stats, write_manifest
from speechlm.data.stages import fingerprint, load_stamp, write_stamp
from speechlm.errors import SpeechLMError

SPLITS = ("train", "dev", "test")


def _unit(key: str, seed: int) -> float:
    """A stable number in [0, 1) for ``key``: the same on every machine and Python run."""
    return int.from_bytes(hashlib.sha1(f"{seed}:{key}".encode()).digest()[:8], "big") / 2**64


def _key(cut: MonoCut, by: str) -> str:
    sup = cut.supervisions[0]
    if by == "speaker":
        return sup.speaker or ""
    # Audio-only corpora have no text; fall back to the utterance id.
    return ((sup.custom or {}).get("normalized_text") or sup.text or cut.id).lower()


def split_manifest(manifest: str | Path, out: str | Path, dev_fraction: float = 0.05,
                   test_fraction: float = 0.05, by: str = "text", seed: int = 0, force: bool = False) -> dict:
    """Write the three split manifests to ``out``; return per-split statistics."""
    if by not in ("text", "speaker"):
        raise SpeechLMError(f"split by must be 'text' or 'speaker', got {by!r}")
    if not (0 <= dev_fraction < 1 and 0 <= test_fraction < 1 and dev_fraction + test_fraction < 1):
        raise SpeechLMError(f"bad split fractions dev={dev_fraction} test={test_fraction}")
    manifest, out = Path(manifest), Path(out)
    outputs = [out / f"cuts_{s}.jsonl.gz" for s in SPLITS]
    params = {"dev": dev_fraction, "test": test_fraction, "by": by, "seed": seed}
    fp = fingerprint(params, [manifest])
    if not force and (done := load_stamp(out, "split", fp, outputs)) is not None:
        return {**done, "skipped_as_done": True}

    cuts = list(iter_manifest(manifest))
    labelled = Counter((c.custom or {}).get("split") for c in cuts)
    has_dev = labelled.get("dev", 0) > 0
    parts: dict[str, list[MonoCut]] = {s: [] for s in SPLITS}
    for cut in cuts:
        split = (cut.custom or {}).get("split")
        if split not in SPLITS:
            u = _unit(_key(cut, by), seed)
            split = "test" if u < test_fraction else "dev" if u < test_fraction + dev_fraction else "train"
        elif split == "train" and not has_dev and _unit(cut.id, seed) < dev_fraction:
            # The corpus defines train/test only: carve dev out of train by utterance, not by text
            # (FSDD has ten distinct texts; hashing text would move whole digits out of train).
            split = "dev"
        cut.custom = {**(cut.custom or {}), "split": split}
        parts[split].append(cut)
    for split, path in zip(SPLITS, outputs):
        write_manifest(parts[split], path)
    stats = manifest_stats(cuts)
    write_stamp(out, "split", fp, stats)
    return stats
