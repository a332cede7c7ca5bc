"""Stage 4: encode every utterance of the split manifests into token shards for LM training.

Reads ``<dir>/text/cuts_{split}.jsonl.gz`` (or ``<dir>/cuts_{split}.jsonl.gz`` before the text
stage) and writes ``<dir>/tokens/<codec>/<split>-<n>.safetensors``, ``shard_size`` utterances each
(see ``speechlm.codec.tokens``). Shards are independent work items spread over processes; each is
written atomically, so an interrupted run resumes by skipping the shards that exist.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

from tqdm import tqdm

from speechlm.data.manifest import iter_manifest
from speechlm.data.split import SPLITS
from speechlm.data.stages import fingerprint, load_stamp, write_stamp
from speechlm.errors import SpeechLMError

_codec = None  # one codec per worker process, loaded by _init_worker


def _init_worker(spec: str, threads: int) -> None:
    import torch

    from speechlm.codec.registry import load_codec

    global _codec
    torch.set_num_threads(threads)
    _codec = load_codec(spec)


def _encode_shard(job: tuple[str, list[tuple[str, str, float, float]]]) -> int:
    """Encode one shard's utterances ``(id, path, start, duration)`` and write it; returns its size."""
    import soundfile as sf

    from speechlm.codec.tokens import save_tokens

    out, items = job
    ids, codes, lengths = [], [], []
    for utt_id, path, start, duration in items:
        info = sf.info(path)
        a = int(round(start * info.samplerate))
        wav, sr = sf.read(path, start=a, frames=int(round(duration * info.samplerate)), dtype="float32",
                          always_2d=True)
        c = _codec.encode(wav.T[None], sample_rate=sr)
        ids.append(utt_id)
        codes.append(c[0])
        lengths.append(round(wav.shape[0] * _codec.sample_rate / sr))
    save_tokens(out, _codec.info, ids, codes, lengths)
    return len(items)


@dataclass
class TokenizeReport:
    out_dir: str
    codec: dict
    shards: int
    utterances: dict[str, int]
    seconds: float
    skipped_shards: int = 0
    skipped_as_done: bool = False

    def summary(self) -> str:
        if self.skipped_as_done:
            return f"[tokenize] already done ({self.out_dir}); nothing to do (use --force to redo)"
        return (f"[tokenize] {sum(self.utterances.values())} utterances in {self.shards} shards -> {self.out_dir} "
                f"({self.seconds:.1f} s, {self.skipped_shards} shards already there)")


def token_dir(data_dir: str | Path, info) -> Path:
    """Where the tokenize stage writes ``data_dir``'s token shards for the codec described by ``info`` (CodecInfo)."""
    return Path(data_dir) / "tokens" / f"{info.name}-{info.version}-{info.n_codebooks}cb"


def run_tokenize_stage(data_dir: str | Path, codec: str = "default", shard_size: int = 500,
                       workers: int | None = None, force: bool = False, progress: bool = True) -> TokenizeReport:
    from speechlm.codec.registry import load_codec

    data_dir = Path(data_dir)
    src = data_dir / "text" if (data_dir / "text" / "cuts_train.jsonl.gz").exists() else data_dir
    inputs = [src / f"cuts_{s}.jsonl.gz" for s in SPLITS]
    missing = [str(p) for p in inputs if not p.exists()]
    if missing:
        raise SpeechLMError(f"{missing[0]}: not found; run the split stage first")
    info = load_codec(codec).info  # fails early, in this process, on a bad --codec
    out = token_dir(data_dir, info)
    t0 = time.time()
    shards, counts = [], {}
    for split, manifest in zip(SPLITS, inputs):
        items = [(c.id, c.recording.sources[0].source, c.start, c.duration) for c in iter_manifest(manifest)]
        counts[split] = len(items)
        shards += [(out / f"{split}-{k:05d}.safetensors", items[lo: lo + shard_size])
                   for k, lo in enumerate(range(0, len(items), shard_size))]
    fp = fingerprint({"codec": info.to_dict(), "shard_size": shard_size}, inputs)
    if not force and (done := load_stamp(out, "tokenize", fp, [p for p, _ in shards])) is not None:
        return TokenizeReport(**{**done, "skipped_as_done": True})
    jobs = [(str(p), items) for p, items in shards if force or not p.exists()]
    skipped = len(shards) - len(jobs)
    out.mkdir(parents=True, exist_ok=True)
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs) or 1))
    threads = max(1, (os.cpu_count() or 1) // workers)
    with tqdm(total=sum(len(j[1]) for j in jobs), desc="tokenizing", unit="utt", disable=not progress) as bar:
        if workers == 1:
            _init_worker(codec, threads)
            for job in jobs:
                bar.update(_encode_shard(job))
        else:
            with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(codec, threads)) as pool:
                for n in pool.map(_encode_shard, jobs):
                    bar.update(n)
    report = TokenizeReport(str(out), info.to_dict(), len(shards), counts, time.time() - t0, skipped)
    write_stamp(out, "tokenize", fp, asdict(report))
    return report
