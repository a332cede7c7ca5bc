"""Batch synthesis: an input file of texts -> a folder of WAVs + ``manifest.jsonl``; resumable and failure-tolerant.

Input: ``.txt`` (one text per line; the id is the line number; blank lines are skipped) or ``.jsonl``
(one object per line: ``text``, and optionally ``id``, ``voice`` (preset name, or reference audio,
relative to the input file's folder), ``voice_text``, ``seed``). Texts are batched by length; texts
with different seeds never share a batch, so a line with its own seed is generated alone and comes
out the same whatever else is in the file (at the cost of batching). A bad line (invalid JSON, no text,
a duplicate id) is reported with its ``file:line`` and recorded as an error; the rest still run.

Output: ``wavs/<id>.wav`` and ``manifest.jsonl``, one record per input item: id, text, path,
duration, seed, voice, timings, status ``ok`` | ``error`` and the error. WAVs are written atomically;
while running, each process appends its records to ``.parts/rank<N>.jsonl`` with flush + fsync, and
at the end the parts are merged into ``manifest.jsonl`` (rewritten atomically, in input order). A
re-run first merges what an interrupted run left, then skips ids whose status is ``ok`` and whose
WAV exists, and does the rest.

Several processes (``devices > 1``) run through Lightning's predict loop with ``ddp_spawn``: the
items are sorted by length, cut into batches, and the batches dealt round-robin to the ranks
(:class:`ShardedBatches`: no padding, no repeats), so every item is synthesized exactly once.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import sys
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from speechlm.errors import SpeechLMError
from speechlm.io import atomic_open, atomic_path
from speechlm.synthesis.results import Request

MANIFEST, PARTS, WAVS = "manifest.jsonl", ".parts", "wavs"


@dataclass
class Item:
    id: str
    text: str
    line: int
    voice: str | None = None
    voice_text: str | None = None
    seed: int | None = 0
    problem: str | None = None  # an input problem, "file:line: what"


# ------------------------------------------------------------------------------------------ input

def read_items(path: str | Path, voice: str | None = None, seed: int | None = 0) -> list[Item]:
    """Items of a ``.txt`` or ``.jsonl`` file; lines with problems come back with ``problem`` set."""
    path = Path(path)
    if not path.is_file():
        raise SpeechLMError(f"{path}: input file not found")
    jsonl = path.suffix.lower() in (".jsonl", ".json", ".ndjson")
    items, seen = [], {}
    for n, raw in enumerate(path.read_bytes().splitlines(), start=1):
        where = f"{path}:{n}"
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            items.append(Item(f"line{n}", "", n, problem=f"{where}: not UTF-8 (byte {e.start})"))
            continue
        if not line.strip():
            continue
        item = _parse_jsonl(line, n, where, voice, seed, path.parent) if jsonl else Item(str(n), line.strip(), n,
                                                                                         voice, None, seed)
        if item.problem is None and item.id in seen:
            item = Item(f"{item.id}@line{n}", item.text, n,
                        problem=f"{where}: duplicate id {item.id!r} (first on line {seen[item.id]})")
        seen.setdefault(item.id, n)
        items.append(item)
    if not items:
        raise SpeechLMError(f"{path}: no texts in the file")
    return items


def _parse_jsonl(line: str, n: int, where: str, voice: str | None, seed: int | None, base: Path) -> Item:
    try:
        obj = json.loads(line)
    except json.JSONDecodeError as e:
        return Item(f"line{n}", "", n, problem=f"{where}: invalid JSON ({e.msg}, column {e.colno})")
    if not isinstance(obj, dict):
        return Item(f"line{n}", "", n, problem=f"{where}: expected a JSON object, got {type(obj).__name__}")
    uid = str(obj.get("id", n))
    text = obj.get("text")
    if not isinstance(text, str) or not text.strip():
        return Item(uid, "", n, problem=f"{where}: field 'text' is missing or empty")
    item_seed = obj.get("seed", seed)
    if item_seed is not None and not isinstance(item_seed, int):
        return Item(uid, text, n, problem=f"{where}: field 'seed' must be an integer")
    v = obj.get("voice", voice)
    if isinstance(v, str) and not Path(v).is_absolute() and (base / v).exists():
        v = str(base / v)  # reference audio relative to the input file
    return Item(uid, text, n, v, obj.get("voice_text"), item_seed)


def wav_name(uid: str) -> str:
    """A file name for ``uid``; ids that are not plain file names get a hash so two never collide."""
    safe = re.sub(r"[^\w.-]", "_", uid)[:100]
    if safe != uid or safe.startswith("."):
        safe = f"{safe}-{hashlib.sha1(uid.encode()).hexdigest()[:8]}"
    return f"{safe}.wav"


# ------------------------------------------------------------------------------------------ manifest

def check_writable(out_dir: Path) -> None:
    """Fail before any work when ``out_dir`` cannot be created or written."""
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        with atomic_open(out_dir / ".write-test") as f:
            f.write("ok")
        (out_dir / ".write-test").unlink()
    except OSError as e:
        raise SpeechLMError(f"{out_dir}: output folder is not writable ({e.strerror or e})") from None


def _read_records(path: Path) -> Iterator[dict]:
    if not path.exists():
        return
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line cut short by a crash mid-append: its item is simply redone
        if isinstance(rec, dict) and "id" in rec:
            yield rec


def merge_manifest(out_dir: Path, order: list[str] | None = None) -> tuple[dict[str, dict], int]:
    """Fold the per-process parts into ``manifest.jsonl`` (atomically) and remove them.

    Returns the records by id, and how many records in the parts repeat an id already in another
    part (an item synthesized twice: never expected, reported so it would be noticed).
    """
    records = {r["id"]: r for r in _read_records(out_dir / MANIFEST)}
    parts_dir = out_dir / PARTS
    parts = sorted(parts_dir.glob("*.jsonl")) if parts_dir.is_dir() else []
    from_parts: dict[str, int] = {}
    for part in parts:
        for r in _read_records(part):
            records[r["id"]] = r
            from_parts[r["id"]] = from_parts.get(r["id"], 0) + 1
    if order is not None:
        rank = {uid: i for i, uid in enumerate(order)}
        records = dict(sorted(records.items(), key=lambda kv: rank.get(kv[0], len(rank))))
    if parts or order is not None:
        with atomic_open(out_dir / MANIFEST) as f:
            for rec in records.values():
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        for part in parts:
            part.unlink()
    if parts_dir.is_dir() and not any(parts_dir.iterdir()):
        parts_dir.rmdir()
    return records, sum(n - 1 for n in from_parts.values())


class RecordWriter:
    """Appends manifest records to this process's part file, each flushed and fsynced."""

    def __init__(self, out_dir: Path, rank: int):
        (out_dir / PARTS).mkdir(parents=True, exist_ok=True)
        self.path = out_dir / PARTS / f"rank{rank}-{os.getpid()}.jsonl"

    def write(self, record: dict) -> None:
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")
            f.flush()
            os.fsync(f.fileno())


def error_record(item: Item, error: str) -> dict:
    return {"id": item.id, "text": item.text, "line": item.line, "path": None, "duration": None, "seed": item.seed,
            "voice": item.voice, "timings": None, "status": "error", "error": error}


# ------------------------------------------------------------------------------------------ Lightning

class ItemDataset(Dataset):
    def __init__(self, items: list[Item]):
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> Item:
        return self.items[i]


class ShardedBatches(Sampler[list[int]]):
    """Batches of similar-length items, dealt round-robin to ranks: no padding, no repeats.

    Unlike ``DistributedSampler`` (which repeats items so every rank gets as many), each item lands in
    exactly one batch of exactly one rank; ranks may get one batch more or less, which prediction allows.
    """

    def __init__(self, lengths: list[int], batch_size: int, rank: int = 0, world_size: int = 1):
        order = sorted(range(len(lengths)), key=lambda i: (lengths[i], i))
        batches = [order[i: i + batch_size] for i in range(0, len(order), batch_size)]
        self.batches = batches[rank::world_size]

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class SynthesisData(L.LightningDataModule):
    def __init__(self, items: list[Item], batch_size: int):
        super().__init__()
        self.items, self.batch_size = items, batch_size

    def predict_dataloader(self) -> DataLoader:
        sampler = ShardedBatches([len(i.text) for i in self.items], self.batch_size, self.trainer.global_rank,
                                 self.trainer.world_size)
        return DataLoader(ItemDataset(self.items), batch_sampler=sampler, collate_fn=list)


class SynthesisModule(L.LightningModule):
    """Wraps a :class:`~speechlm.inference.Pipeline` (loaded on each rank in ``setup``) for ``predict``."""

    def __init__(self, model: str, out_dir: str, options: dict | None = None, quantize: str | None = "auto",
                 threads: int | None = None):
        super().__init__()
        self.model_spec, self.out_dir, self.options = model, Path(out_dir), dict(options or {})
        self.quantize, self.threads = quantize, threads
        self.pipeline = None
        self.writer: RecordWriter | None = None

    def setup(self, stage: str) -> None:
        from speechlm.inference import Pipeline

        if self.threads:
            torch.set_num_threads(self.threads)  # each rank gets its share of the cores
        # ShardedBatches returns every index by construction; Lightning cannot know that and warns
        warnings.filterwarnings("ignore", message="You are using a custom batch sampler")
        device = str(self.trainer.strategy.root_device) if self._trainer is not None else "cpu"
        self.pipeline = Pipeline.from_pretrained(self.model_spec, device=device, quantize=self.quantize)
        self.writer = RecordWriter(self.out_dir, self.global_rank)

    def predict_step(self, batch: list[Item], batch_idx: int) -> int:
        t0 = time.perf_counter()
        requests = [Request(i.text, i.voice, i.voice_text, i.seed, i.id, self.options) for i in batch]
        try:
            results = self.pipeline.synthesize_batch(requests, batch_size=len(requests))
        except Exception:  # noqa: BLE001 - an unforeseen failure costs this batch one retry per item, not the run
            results = []
            for r in requests:
                try:
                    results += self.pipeline.synthesize_batch([r], batch_size=1)
                except Exception as e:  # noqa: BLE001
                    results.append(e)
        for item, res in zip(batch, results):
            self.writer.write({**self._record(item, res, time.perf_counter() - t0), "rank": self.global_rank})
        return len(batch)

    def _record(self, item: Item, res, batch_s: float) -> dict:
        if isinstance(res, Exception):
            msg = str(res) if isinstance(res, SpeechLMError) else f"{type(res).__name__}: {res}"
            return error_record(item, msg)
        path = self.out_dir / WAVS / wav_name(item.id)
        try:
            write_wav(path, res.audio, res.sample_rate)
        except OSError as e:
            return error_record(item, f"{path}: cannot write ({e.strerror or e})")
        return {"id": item.id, "text": item.text, "line": item.line, "path": f"{WAVS}/{path.name}",
                "duration": round(res.duration, 4), "seed": item.seed, "voice": item.voice,
                "timings": {**res.timings.to_dict(), "batch_s": batch_s}, "status": "ok", "error": None,
                "segments": len(res.segments),
                "skipped_segments": sum(s.status != "ok" for s in res.segments),
                "hit_max_frames": sum(s.hit_max_frames for s in res.segments)}


def write_wav(path: Path, audio, sample_rate: int) -> None:
    import soundfile as sf

    with atomic_path(path) as tmp:
        sf.write(str(tmp), audio, sample_rate, format="WAV", subtype="PCM_16")


# ------------------------------------------------------------------------------------------ run

@dataclass
class BatchSummary:
    total: int
    done_before: int  # skipped: status ok and WAV present from an earlier run
    ok: int
    failed: int
    repeated: int  # records for an item written more than once in this run (0 unless something is wrong)
    seconds: float
    manifest: Path

    def __str__(self) -> str:
        return (f"{self.total} item(s): {self.ok} ok, {self.failed} failed, {self.done_before} already done "
                f"({self.seconds:.1f} s) -> {self.manifest}")


def run_batch(model: str, input_path: str | Path, out_dir: str | Path, *, voice: str | None = None,
              seed: int | None = 0, batch_size: int = 8, devices: int = 1, accelerator: str = "cpu",
              options: dict | None = None, quantize: str | None = "auto", threads: int | None = None,
              progress: bool = True) -> BatchSummary:
    t0 = time.perf_counter()
    out = Path(out_dir)
    check_writable(out)
    items = read_items(input_path, voice, seed)
    for item in items:
        if item.problem:
            print(f"bad input: {item.problem}", file=sys.stderr)
    records, _ = merge_manifest(out)  # what an interrupted run left in its parts
    done = {uid for uid, r in records.items() if r.get("status") == "ok" and r.get("path") and (out / r["path"]).exists()}
    todo = [i for i in items if i.problem is None and i.id not in done]
    bad = [i for i in items if i.problem is not None]
    if bad:
        writer = RecordWriter(out, 0)
        for item in bad:
            writer.write(error_record(item, item.problem))
    if todo:
        trainer = L.Trainer(accelerator=accelerator, devices=devices,
                            strategy="ddp_spawn" if devices > 1 else "auto", logger=False,
                            enable_checkpointing=False, enable_model_summary=False, use_distributed_sampler=False,
                            enable_progress_bar=progress)
        module = SynthesisModule(model, str(out), options, quantize, threads)
        trainer.predict(module, datamodule=SynthesisData(todo, batch_size), return_predictions=False)
    records, repeated = merge_manifest(out, [i.id for i in items])
    if repeated:
        print(f"warning: {repeated} item(s) were synthesized more than once", file=sys.stderr)
    ids = {i.id for i in items}
    ok = sum(1 for uid, r in records.items() if uid in ids and r.get("status") == "ok")
    return BatchSummary(len(items), len(done & ids), ok - len(done & ids), len(items) - ok, repeated,
                        time.perf_counter() - t0, out / MANIFEST)
