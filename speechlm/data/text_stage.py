"""Stage 3: phonemize the split manifests and build the text tokenizer from the train split only.

Reads ``<dir>/cuts_{train,dev,test}.jsonl.gz`` (stage 2), writes ``<dir>/text/cuts_{split}.jsonl.gz``
with ``supervisions[0].custom["phonemes"]`` filled in, and ``<dir>/text/tokenizer.json``. The
vocabulary comes from train alone so that symbols missing from it are visible as unknowns in dev and
test (reported), exactly as they would be at inference time.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from tqdm import tqdm

from speechlm.data.manifest import iter_manifest, write_manifest
from speechlm.data.split import SPLITS
from speechlm.data.stages import fingerprint, load_stamp, write_stamp
from speechlm.errors import SpeechLMError
from speechlm.text.frontend import TextFrontend
from speechlm.text.tokenizer import TextTokenizer

# Texts per phonemizer call. Batching is only ~1.1x faster than one call per text (eval/bench_data.py:
# the espeak backend is built once either way); batches keep the progress bar moving and memory flat.
BATCH = 256


@dataclass
class TextStageReport:
    tokenizer: str
    kind: str
    vocab_size: int
    utterances: dict[str, int]
    unknown_symbols: dict[str, dict[str, int]] = field(default_factory=dict)  # split -> symbol -> count
    seconds: float = 0.0
    skipped_as_done: bool = False

    def summary(self) -> str:
        if self.skipped_as_done:
            return f"[text] already done ({self.tokenizer}); nothing to do (use --force to redo)"
        counts = ", ".join(f"{s} {n}" for s, n in self.utterances.items())
        unk = "; ".join(f"{s}: {dict(c)}" for s, c in self.unknown_symbols.items() if c) or "none"
        return (f"[text] {self.kind} vocabulary of {self.vocab_size} ids -> {self.tokenizer}\n"
                f"[text] phonemized {counts} ({self.seconds:.1f} s); symbols unseen in train: {unk}")


def run_text_stage(data_dir: str | Path, language: str = "en", backend: str = "auto", force: bool = False,
                   progress: bool = True) -> TextStageReport:
    data_dir = Path(data_dir)
    inputs = [data_dir / f"cuts_{s}.jsonl.gz" for s in SPLITS]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise SpeechLMError(f"{missing[0]}: not found; run the split stage (speechlm data split) first")
    out = data_dir / "text"
    outputs = [out / f"cuts_{s}.jsonl.gz" for s in SPLITS] + [out / "tokenizer.json"]
    fp = fingerprint({"language": language, "backend": backend}, inputs)
    if not force and (done := load_stamp(out, "text", fp, outputs)) is not None:
        return TextStageReport(**{**done, "skipped_as_done": True})

    t0 = time.time()
    frontends: dict[str, TextFrontend] = {}  # one per language found in the data
    splits = {s: list(iter_manifest(p)) for s, p in zip(SPLITS, inputs)}
    total = sum(len(c) for c in splits.values())
    with tqdm(total=total, desc="phonemizing", unit="utt", disable=not progress) as bar:
        for cuts in splits.values():
            for start in range(0, len(cuts), BATCH):
                chunk = cuts[start:start + BATCH]
                by_lang: dict[str, list] = {}
                for cut in chunk:
                    by_lang.setdefault(cut.supervisions[0].language or language, []).append(cut)
                for lang, group in by_lang.items():
                    if lang not in frontends:
                        frontends[lang] = TextFrontend(lang, backend)
                    texts = [(c.supervisions[0].custom or {}).get("normalized_text", "") for c in group]
                    # Audio-only utterances (empty text) keep empty phonemes rather than failing.
                    phonemes = frontends[lang].phonemize([t for t in texts if t]) if any(texts) else []
                    it = iter(phonemes)
                    for cut, text in zip(group, texts):
                        sup = cut.supervisions[0]
                        sup.custom = {**(sup.custom or {}), "phonemes": next(it) if text else ""}
                bar.update(len(chunk))

    train_symbols = [c.supervisions[0].custom["phonemes"] for c in splits["train"]]
    if not any(train_symbols):
        raise SpeechLMError(f"{inputs[0]}: the train split has no transcripts; a tokenizer needs text")
    kind = frontends[language].symbol_kind if language in frontends else next(iter(frontends.values())).symbol_kind
    tokenizer = TextTokenizer.build([t for t in train_symbols if t], kind=kind, language=language)
    unknown = {s: dict(tokenizer.unknown_symbols(c.supervisions[0].custom["phonemes"] for c in splits[s]))
               for s in ("dev", "test")}
    for split, path in zip(SPLITS, outputs):
        write_manifest(splits[split], path)
    tokenizer.save(out / "tokenizer.json")
    report = TextStageReport(tokenizer=str(out / "tokenizer.json"), kind=kind, vocab_size=tokenizer.vocab_size,
                             utterances={s: len(c) for s, c in splits.items()}, unknown_symbols=unknown,
                             seconds=time.time() - t0)
    write_stamp(out, "text", fp, asdict(report))
    return report
