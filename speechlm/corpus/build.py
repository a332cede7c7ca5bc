"""Build the embedded corpus: speak the project's sentences with Debian voices, clean the audio, write manifests."""

from __future__ import annotations

import itertools
import json
import os
import re
import tempfile
import time
import unicodedata
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import librosa
import numpy as np
import pyloudnorm
import soundfile as sf
from tqdm import tqdm

from speechlm.corpus.sentences import SPLITS, Sentence, generate_sentences, split_sentences
from speechlm.corpus.voices import check_voices, get_voice, synthesize
from speechlm.errors import SpeechLMError
from speechlm.io import atomic_open, atomic_path, write_json, write_text

# Seven voices ASR follows well and three espeak-ng timbres.  flite-kal16 and festival-kal share one
# speaker's diphones, as flite-slt and festival-slt-hts share one speaker, so ten voices keep at
# least eight distinct speakers.
DEFAULT_VOICES = [
    "flite-rms", "flite-awb", "flite-slt", "flite-kal16",
    "festival-ked", "festival-kal", "festival-slt-hts",
    "espeak-en-us-f3", "espeak-en-us-m3", "espeak-en-gb-m7",
]
# Fields that only change how a build runs or is reported, not what audio it makes: a resumed build
# may change them, any other change would mix two corpora in one directory.
_RUN_ONLY_FIELDS = {"chunk_size", "rare_phoneme_threshold"}
_FINAL_FILES = ("sentences.tsv", "metadata.csv", "phoneme_coverage.json", "phoneme_coverage.md", "report.md", "report.json")


@dataclass
class CorpusConfig:
    """What to speak, by whom, and how the audio is cleaned; ``tiny()`` and ``default()`` are the presets."""

    n_sentences: int = 2400
    seed: int = 0
    dev_fraction: float = 0.05
    test_fraction: float = 0.05
    # More sentences for training only: the grammar's next ones after the first n_sentences, so the dev
    # and test sentences (drawn from the first n_sentences) stay exactly those of the smaller corpus.
    extra_train_sentences: int = 0
    voices: list[str] = field(default_factory=lambda: list(DEFAULT_VOICES))
    # Each train sentence is said by this many voices in rotation (equal shares per voice); dev and
    # test sentences are said by every voice so evaluation can compare against each engine.
    voices_per_sentence: int = 2
    sample_rate: int = 24000
    target_lufs: float = -23.0
    peak_dbfs: float = -1.0  # loudness gain never pushes a peak above this
    trim_top_db: float = 40.0  # below the loudest frame by this much counts as silence
    pad_seconds: float = 0.15  # silence kept before and after the speech
    chunk_size: int = 50  # utterances per work item; large enough to amortize festival's start-up
    rare_phoneme_threshold: int = 20

    @classmethod
    def tiny(cls) -> CorpusConfig:
        """A few seconds to build: 24 sentences, four fast voices from all three engines."""
        return cls(n_sentences=24, dev_fraction=1 / 6, test_fraction=1 / 6, chunk_size=8,
                   voices=["flite-rms", "flite-kal16", "festival-ked", "espeak-en-us-f3"])

    @classmethod
    def default(cls) -> CorpusConfig:
        """The corpus the default models train on: 2,400 sentences, ten voices, about seven hours."""
        return cls()


@dataclass(frozen=True)
class Utterance:
    id: str  # "<voice>_<sentence_id>"
    voice: str
    sentence: Sentence


@dataclass
class CorpusReport:
    out_dir: str
    sample_rate: int
    voices: list[str]
    sentences: dict[str, int]  # per split
    utterances: dict[str, int]  # per split
    hours: dict[str, float]  # per split
    hours_per_voice: dict[str, float]
    total_utterances: int
    total_hours: float
    disk_mb: float
    synthesized: int  # utterances made by this call
    skipped: int  # utterances already on disk
    build_seconds: float  # wall time of this call
    already_complete: bool = False


def plan_utterances(sentences: list[Sentence], voices: list[str], voices_per_sentence: int) -> list[Utterance]:
    """Who says what: train sentences rotate through the voices, dev and test go to every voice."""
    utts, k = [], 0
    for s in sentences:
        if s.split == "train":
            chosen = {voices[(k + j) % len(voices)] for j in range(voices_per_sentence)}
            k += voices_per_sentence
        else:
            chosen = set(voices)
        utts.extend(Utterance(f"{v}_{s.id}", v, s) for v in voices if v in chosen)
    return utts


def speech_bounds(audio: np.ndarray, sr: int, top_db: float) -> tuple[int, int]:
    """First and last sample of the frames within ``top_db`` of the loudest 20 ms frame.

    Plain numpy rather than ``librosa.effects.trim``: that one JIT-compiles on first use, which
    costs seconds in every fresh worker process.
    """
    hop = max(1, sr // 200)
    frame = 4 * hop
    padded = np.pad(audio, (0, max(0, frame - len(audio))))
    power = np.lib.stride_tricks.sliding_window_view(padded, frame)[::hop].astype(np.float64)
    power = (power**2).mean(axis=1)
    loud = np.flatnonzero(power > power.max() * 10 ** (-top_db / 10))
    return int(loud[0] * hop), int(min(len(audio), loud[-1] * hop + frame))


def postprocess(audio: np.ndarray, sr: int, config: CorpusConfig) -> np.ndarray:
    """Trim silence to a fixed pad, resample to ``config.sample_rate`` and normalize loudness."""
    if audio.size == 0 or np.max(np.abs(audio)) < 1e-4:
        raise ValueError("the engine produced silence")
    start, end = speech_bounds(audio, sr, config.trim_top_db)
    # Keep the engine's own samples around the speech (quiet onsets and releases sit under the
    # threshold), then zero-pad so every file has the same lead-in and tail whatever the engine did.
    pad = int(round(config.pad_seconds * sr))
    lo, hi = max(0, start - pad), min(len(audio), end + pad)
    audio = np.pad(audio[lo:hi], (pad - (start - lo), pad - (hi - end)))
    audio = librosa.resample(audio, orig_sr=sr, target_sr=config.sample_rate, res_type="soxr_hq")
    meter = pyloudnorm.Meter(config.sample_rate)
    # BS.1770 needs one 400 ms block; zeros fall under the absolute gate, so padding does not bias it.
    measured = np.pad(audio, (0, max(0, int(0.41 * config.sample_rate) - len(audio))))
    loudness = meter.integrated_loudness(measured.astype(np.float64))
    if not np.isfinite(loudness):
        raise ValueError("the audio has no measurable loudness")
    audio = audio * 10 ** ((config.target_lufs - loudness) / 20)
    peak, limit = np.max(np.abs(audio)), 10 ** (config.peak_dbfs / 20)
    if peak > limit:  # a plain gain, not a limiter: it keeps the waveform's shape
        audio = audio * (limit / peak)
    return np.clip(audio, -1.0, 1.0).astype(np.float32)


@dataclass
class _Chunk:
    voice: str
    items: list[tuple[str, str, str]]  # (utt_id, sentence_id, text)
    wav_dir: str
    config: CorpusConfig


def _run_chunk(chunk: _Chunk) -> tuple[int, list[str]]:
    """Speak one voice's batch and write its files; returns (files written, failure descriptions)."""
    voice = get_voice(chunk.voice)
    failures = []
    written = 0
    with tempfile.TemporaryDirectory(prefix=f"speechlm-{voice.name}-") as tmp:
        results = synthesize(voice, [text for _, _, text in chunk.items], tmp)
        for (utt_id, sid, text), res in zip(chunk.items, results):
            problem = res.error
            if res.audio is not None:
                try:
                    audio = postprocess(res.audio, res.sample_rate, chunk.config)
                except ValueError as e:
                    problem = str(e)
                else:
                    with atomic_path(Path(chunk.wav_dir) / f"{utt_id}.flac") as path:
                        sf.write(path, audio, chunk.config.sample_rate, format="FLAC", subtype="PCM_16")
                    written += 1
                    continue
            stderr = "\n      ".join(problem.splitlines()[-8:])
            failures.append(f"voice {voice.name} ({voice.engine} '{voice.engine_voice}'), sentence {sid} {text!r}:\n      {stderr}")
    return written, failures


def _check_config(out: Path, config: CorpusConfig) -> None:
    """Refuse to resume into a directory built with different audio settings, and record ours."""
    wanted = {f.name: getattr(config, f.name) for f in fields(config) if f.name not in _RUN_ONLY_FIELDS}
    path = out / "build_config.json"
    if path.exists():
        # a setting added after that corpus was built has its default there
        found = {**{f.name: getattr(CorpusConfig(), f.name) for f in fields(CorpusConfig)},
                 **json.loads(path.read_text(encoding="utf-8"))}
        changed = sorted(k for k in wanted if found.get(k) != wanted[k])
        if changed:
            raise SpeechLMError(
                f"{out} holds a corpus built with different settings ({', '.join(changed)}); "
                "build into a new directory or delete this one"
            )
    else:
        write_json(path, wanted)


def corpus_sentences(config: CorpusConfig) -> list[Sentence]:
    """The corpus's sentences with their splits; ``extra_train_sentences`` leave dev and test as they were."""
    texts = generate_sentences(config.n_sentences + config.extra_train_sentences, config.seed)
    held = split_sentences(texts[: config.n_sentences], config.dev_fraction, config.test_fraction, config.seed)
    extra = [Sentence(f"s{i:05d}", "train", t) for i, t in enumerate(texts[config.n_sentences:], config.n_sentences)]
    return held + extra


def _validate(config: CorpusConfig) -> None:
    for name in config.voices:
        get_voice(name)
    if not config.voices or len(set(config.voices)) != len(config.voices):
        raise SpeechLMError(f"config.voices must be a non-empty list of distinct voices, got {config.voices}")
    if not 1 <= config.voices_per_sentence <= len(config.voices):
        raise SpeechLMError(f"voices_per_sentence must be between 1 and {len(config.voices)}, got {config.voices_per_sentence}")


def _synthesize_missing(missing: list[Utterance], wav_dir: Path, config: CorpusConfig,
                        workers: int | None, progress: bool) -> None:
    per_voice = []
    for v in config.voices:
        mine = [(u.id, u.sentence.id, u.sentence.text) for u in missing if u.voice == v]
        per_voice.append([_Chunk(v, mine[i:i + config.chunk_size], str(wav_dir), config)
                          for i in range(0, len(mine), config.chunk_size)])
    # Interleave voices so slow engines (festival HTS) are spread over the whole run.
    chunks = [c for group in itertools.zip_longest(*per_voice) for c in group if c is not None]
    workers = max(1, min(workers or os.cpu_count() or 1, len(chunks)))
    failures: list[str] = []
    with tqdm(total=len(missing), unit="utt", desc="synthesizing", disable=not progress) as bar:
        if workers == 1:
            results = (_run_chunk(c) for c in chunks)
        else:
            pool = ProcessPoolExecutor(max_workers=workers)
            results = (f.result() for f in as_completed([pool.submit(_run_chunk, c) for c in chunks]))
        try:
            for written, failed in results:
                failures.extend(failed)
                bar.update(written + len(failed))
        finally:
            if workers > 1:
                pool.shutdown(cancel_futures=True)
    if failures:
        listed = "\n  - ".join(failures[:20])
        more = f"\n  ... and {len(failures) - 20} more" if len(failures) > 20 else ""
        raise SpeechLMError(
            f"{len(failures)} of {len(missing)} utterance(s) could not be synthesized (the others are kept, "
            f"so a rerun only retries these):\n  - {listed}{more}"
        )


def _write_manifests(out: Path, sentences: list[Sentence], utts: list[Utterance]) -> None:
    with atomic_open(out / "sentences.tsv") as f:
        f.writelines(f"{s.id}\t{s.split}\t{s.text}\n" for s in sentences)
    # Plain '|'-joined lines, no quoting, as LJSpeech-style readers expect; a text holding the
    # separator would shift its columns, so it is refused rather than escaped.
    bad = [s.id for s in sentences if "|" in s.text or "\n" in s.text]
    if bad:
        raise SpeechLMError(f"sentence(s) {', '.join(bad)} contain '|' or a newline, which metadata.csv cannot hold")
    with atomic_open(out / "metadata.csv") as f:
        f.write("id|speaker|split|text\n")
        f.writelines(f"{u.id}|{u.voice}|{u.sentence.split}|{u.sentence.text}\n" for u in utts)


def _summarize(out: Path, config: CorpusConfig, sentences: list[Sentence], utts: list[Utterance],
               synthesized: int, seconds: float) -> CorpusReport:
    hours = dict.fromkeys(SPLITS, 0.0)
    per_voice = dict.fromkeys(config.voices, 0.0)
    disk = 0
    for u in utts:
        path = out / "wavs" / f"{u.id}.flac"
        info = sf.info(path)
        h = info.frames / info.samplerate / 3600
        hours[u.sentence.split] += h
        per_voice[u.voice] += h
        disk += path.stat().st_size
    return CorpusReport(
        out_dir=str(out), sample_rate=config.sample_rate, voices=list(config.voices),
        sentences={sp: sum(s.split == sp for s in sentences) for sp in SPLITS},
        utterances={sp: sum(u.sentence.split == sp for u in utts) for sp in SPLITS},
        hours={k: round(v, 4) for k, v in hours.items()},
        hours_per_voice={k: round(v, 4) for k, v in per_voice.items()},
        total_utterances=len(utts), total_hours=round(sum(hours.values()), 4), disk_mb=round(disk / 2**20, 2),
        synthesized=synthesized, skipped=len(utts) - synthesized, build_seconds=round(seconds, 2),
    )


# espeak-ng's en-us phone set as phonemizer separates it.  An unseparated IPA string is split against
# it greedily, longest symbol first, so "aɪɚ" and "tʃ" count as one phoneme as espeak-ng meant them.
EN_PHONEMES = (
    "p", "b", "t", "d", "k", "ɡ", "f", "v", "θ", "ð", "s", "z", "ʃ", "ʒ", "h", "tʃ", "dʒ", "m", "n", "ŋ",
    "l", "ɹ", "j", "w", "ɾ", "ʔ", "n̩", "əl", "i", "iː", "ɪ", "eɪ", "ɛ", "æ", "aɪ", "aʊ", "ɑː", "ɔ",
    "ɔː", "ɔɪ", "oʊ", "oː", "ʊ", "uː", "ʌ", "ə", "ɚ", "ɜː", "ɐ", "ᵻ", "iə", "ɪɹ", "ɛɹ", "ʊɹ", "ɑːɹ",
    "ɔːɹ", "oːɹ", "aɪɚ", "aɪə",
)
_LONGEST = max(map(len, EN_PHONEMES))


def split_phonemes(ipa: str) -> list[str]:
    """Phonemes of an IPA string, stress marks, punctuation and word breaks dropped."""
    phones: list[str] = []
    for word in re.split(r"[\s|_]+", ipa.replace("g", "ɡ")):
        word = "".join(ch for ch in word if ch not in "ˈˌ" and not unicodedata.category(ch).startswith("P"))
        mine: list[str] = []
        i = 0
        while i < len(word):
            for size in range(_LONGEST, 0, -1):
                if word[i:i + size] in EN_PHONEMES:
                    mine.append(word[i:i + size])
                    i += size
                    break
            else:  # outside the inventory: a diacritic or length mark belongs to the phone before it
                ch = word[i]
                if mine and (unicodedata.combining(ch) or ch in "ːˑʰʲʷ"):
                    mine[-1] += ch
                else:
                    mine.append(ch)
                i += 1
        phones.extend(mine)
    return phones


def phoneme_coverage(sentences: list[Sentence], rare_threshold: int) -> dict:
    """Phoneme counts per split over the sentence texts (each sentence once, however many voices say it)."""
    from speechlm.text.phonemize import Phonemizer  # heavy (espeak-ng backend): loaded only when needed

    ipa = Phonemizer.for_language("en").phonemize([s.text for s in sentences])
    counts = {sp: Counter() for sp in SPLITS}
    for s, phones in zip(sentences, ipa):
        counts[s.split].update(split_phonemes(phones))
    train = counts["train"]
    missing_in_train = sorted(set(counts["test"]) - set(train))
    return {
        "counted_over": "sentence texts, each sentence once",
        "rare_threshold": rare_threshold,
        "inventory": list(EN_PHONEMES),
        "counts": {sp: dict(c.most_common()) for sp, c in counts.items()},
        "rare_in_train": sorted((p for p in EN_PHONEMES if 0 < train[p] < rare_threshold), key=train.get),
        "inventory_unseen_in_train": [p for p in EN_PHONEMES if train[p] == 0],
        "outside_inventory": sorted(set().union(*counts.values()) - set(EN_PHONEMES)),
        "test_missing_from_train": missing_in_train,
        "test_covered_by_train": not missing_in_train,
    }


def coverage_markdown(cov: dict) -> str:
    c = cov["counts"]
    symbols = sorted(set().union(*c.values()), key=lambda p: -c["train"].get(p, 0))
    verdict = ("every phoneme in test also occurs in train" if cov["test_covered_by_train"]
               else f"test phonemes never seen in train: {' '.join(cov['test_missing_from_train'])}")
    lines = [
        "# Phoneme coverage", "",
        f"Counted over {cov['counted_over']}; {verdict}.", "",
        f"- rare in train (< {cov['rare_threshold']}): {' '.join(cov['rare_in_train']) or 'none'}",
        f"- inventory phonemes never seen in train: {' '.join(cov['inventory_unseen_in_train']) or 'none'}",
        f"- symbols outside the inventory: {' '.join(cov['outside_inventory']) or 'none'}", "",
        "| phoneme | " + " | ".join(SPLITS) + " |", "|---|" + "---:|" * len(SPLITS),
        *(f"| {p} | " + " | ".join(str(c[sp].get(p, 0)) for sp in SPLITS) + " |" for p in symbols),
    ]
    return "\n".join(lines) + "\n"


def report_markdown(r: CorpusReport) -> str:
    lines = [
        "# Synthetic corpus", "",
        f"{r.total_hours:.2f} hours, {r.total_utterances} utterances, {len(r.voices)} voices, "
        f"{r.sample_rate} Hz 16-bit FLAC, {r.disk_mb:.1f} MB; last build call took {r.build_seconds:.1f} s "
        f"({r.synthesized} synthesized, {r.skipped} already present).", "",
        "| split | sentences | utterances | hours |", "|---|---:|---:|---:|",
        *(f"| {sp} | {r.sentences[sp]} | {r.utterances[sp]} | {r.hours[sp]:.3f} |" for sp in SPLITS),
        "", "| voice | hours |", "|---|---:|",
        *(f"| {v} | {h:.3f} |" for v, h in r.hours_per_voice.items()),
    ]
    return "\n".join(lines) + "\n"


def _print_summary(r: CorpusReport) -> None:
    splits = ", ".join(f"{sp} {r.sentences[sp]} sentences / {r.utterances[sp]} utts / {r.hours[sp]:.2f} h" for sp in SPLITS)
    print(f"corpus {r.out_dir}: {r.total_hours:.2f} h, {len(r.voices)} voices, {r.total_utterances} utterances "
          f"({splits}); {r.synthesized} synthesized, {r.skipped} already present; {r.build_seconds:.1f} s; {r.disk_mb:.1f} MB")


def build_corpus(config: CorpusConfig, out_dir: str | os.PathLike, workers: int | None = None,
                 progress: bool = True) -> CorpusReport:
    """Build (or finish building) the corpus in ``out_dir``; files already there are kept and skipped.

    ``workers`` defaults to the number of CPUs; 1 runs everything in this process.
    """
    start = time.perf_counter()
    _validate(config)
    out = Path(out_dir)
    wav_dir = out / "wavs"
    wav_dir.mkdir(parents=True, exist_ok=True)
    _check_config(out, config)
    sentences = corpus_sentences(config)
    utts = plan_utterances(sentences, config.voices, config.voices_per_sentence)
    # Temp files of an interrupted run are never renamed into place; clear them out.
    for stale in wav_dir.glob(".*.tmp*"):
        stale.unlink(missing_ok=True)
    missing = [u for u in utts if not (wav_dir / f"{u.id}.flac").exists()]

    if not missing and all((out / name).exists() for name in _FINAL_FILES):
        stored = json.loads((out / "report.json").read_text(encoding="utf-8"))
        report = CorpusReport(**{**stored, "synthesized": 0, "skipped": len(utts), "already_complete": True,
                                 "build_seconds": round(time.perf_counter() - start, 2)})
        print(f"corpus {out} is already complete ({report.total_utterances} utterances, "
              f"{report.total_hours:.2f} h): nothing to do")
        return report

    if missing:
        check_voices([get_voice(v) for v in sorted({u.voice for u in missing})])
        _synthesize_missing(missing, wav_dir, config, workers, progress)
    _write_manifests(out, sentences, utts)
    coverage = phoneme_coverage(sentences, config.rare_phoneme_threshold)
    write_json(out / "phoneme_coverage.json", coverage)
    write_text(out / "phoneme_coverage.md", coverage_markdown(coverage))
    report = _summarize(out, config, sentences, utts, len(missing), time.perf_counter() - start)
    write_text(out / "report.md", report_markdown(report))
    write_json(out / "report.json", asdict(report))  # last: its presence marks a finished build
    _print_summary(report)
    return report
