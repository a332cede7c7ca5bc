"""Tests for the embedded corpus: sentences and split, a real tiny build, resume, and engine errors."""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import stat
from collections import Counter
from pathlib import Path

import numpy as np
import pyloudnorm
import pytest
import soundfile as sf

from speechlm.corpus.build import CorpusConfig, build_corpus, corpus_sentences, plan_utterances, split_phonemes
from speechlm.corpus.sentences import generate_sentences, normalize_key, split_sentences, word_count
from speechlm.corpus.voices import VOICES, Voice, check_voices
from speechlm.errors import SpeechLMError

FINAL = ("metadata.csv", "sentences.tsv", "report.json", "report.md", "phoneme_coverage.json", "phoneme_coverage.md")


def _sentences(config: CorpusConfig):
    return split_sentences(generate_sentences(config.n_sentences, config.seed),
                           config.dev_fraction, config.test_fraction, config.seed)


def test_default_sentences_are_many_varied_and_test_is_held_out():
    config = CorpusConfig.default()
    sentences = _sentences(config)
    texts = [s.text for s in sentences]
    assert len({normalize_key(t) for t in texts}) == len(texts) >= 2000
    assert texts == [s.text for s in _sentences(CorpusConfig.default())]  # seeded
    assert texts[:24] == [s.text for s in _sentences(CorpusConfig.tiny())]  # tiny is a prefix
    assert all(t.isascii() and "|" not in t and 3 <= word_count(t) <= 25 for t in texts)
    lengths = Counter(min(word_count(t) // 5, 4) for t in texts)
    assert all(lengths[b] >= 20 for b in range(5)), lengths  # short ones through 20+ words
    assert sum(t.endswith("?") for t in texts) > 150 and sum(t.endswith("!") for t in texts) > 50
    assert sum(" dollars" in t or " euros" in t or " pounds" in t for t in texts) > 30
    assert sum(" o'clock" in t or "half past" in t or "quarter to" in t for t in texts) > 20

    by_split = {sp: {normalize_key(s.text) for s in sentences if s.split == sp} for sp in ("train", "dev", "test")}
    assert len(by_split["test"]) >= 100 and len(by_split["dev"]) >= 100
    assert len(by_split["train"]) >= 0.85 * len(texts)
    assert not by_split["test"] & by_split["train"] and not by_split["dev"] & by_split["train"]


def test_extra_train_sentences_keep_dev_and_test():
    base = corpus_sentences(CorpusConfig.default())
    assert [(s.id, s.split, s.text) for s in base] == [(s.id, s.split, s.text) for s in _sentences(CorpusConfig.default())]
    more = corpus_sentences(CorpusConfig(extra_train_sentences=3000))
    assert more[: len(base)] == base and len(more) == len(base) + 3000  # the held-out sentences as they were
    assert {s.split for s in more[len(base):]} == {"train"}
    held = {normalize_key(s.text) for s in base if s.split != "train"}
    assert not held & {normalize_key(s.text) for s in more[len(base):]}  # and never spoken in training


def test_default_plan_rotates_train_voices_and_gives_heldout_to_all():
    config = CorpusConfig.default()
    assert len(config.voices) >= 8 and len({VOICES[v].engine for v in config.voices}) == 3
    utts = plan_utterances(_sentences(config), config.voices, config.voices_per_sentence)
    speakers: dict[str, set[str]] = {}
    for u in utts:
        speakers.setdefault(u.sentence.id, set()).add(u.voice)
    train_share = Counter(u.voice for u in utts if u.sentence.split == "train")
    assert max(train_share.values()) - min(train_share.values()) <= 1
    for u in utts:
        expected = config.voices_per_sentence if u.sentence.split == "train" else len(config.voices)
        assert len(speakers[u.sentence.id]) == expected


def test_phoneme_splitting_and_yaml_config():
    assert split_phonemes("ðə tʃˈɜːtʃ, fˈaɪɚ!") == ["ð", "ə", "tʃ", "ɜː", "tʃ", "f", "aɪɚ"]
    assert split_phonemes("bˈʌʔn̩ ɡoʊ") == ["b", "ʌ", "ʔ", "n̩", "ɡ", "oʊ"]
    from jsonargparse import ArgumentParser

    parser = ArgumentParser()
    parser.add_class_arguments(CorpusConfig, "corpus")
    cfg = parser.parse_string("corpus:\n  n_sentences: 30\n  voices: [flite-rms, espeak-en-us-f3]\n  sample_rate: 16000\n")
    built = parser.instantiate(cfg).corpus
    assert isinstance(built, CorpusConfig) and built.voices == ["flite-rms", "espeak-en-us-f3"] and built.sample_rate == 16000


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("corpus") / "tiny"
    report = build_corpus(CorpusConfig.tiny(), out, workers=2, progress=False)
    assert report.synthesized == report.total_utterances > 0 and not report.already_complete
    return out


def _mtimes(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file()}


def _band_spectrum(path: Path) -> np.ndarray:
    """Mean log power in 32 bands: a crude timbre fingerprint of one recording."""
    x, _ = sf.read(path)
    frames = np.lib.stride_tricks.sliding_window_view(x, 1024)[::256] * np.hanning(1024)
    power = (np.abs(np.fft.rfft(frames, axis=1)) ** 2).mean(axis=0)[:512]
    return 10 * np.log10(power.reshape(32, 16).mean(axis=1) + 1e-12)


def test_tiny_build_layout_audio_and_reports(tiny: Path):
    config = CorpusConfig.tiny()
    for name in FINAL:
        assert (tiny / name).is_file(), name
    with open(tiny / "metadata.csv", encoding="utf-8") as f:
        rows = list(csv.reader(f, delimiter="|"))
    assert rows[0] == ["id", "speaker", "split", "text"]
    sentences = {line.split("\t")[0]: line.rstrip("\n").split("\t")[1:]
                 for line in (tiny / "sentences.tsv").read_text(encoding="utf-8").splitlines(keepends=True)}
    assert len(sentences) == config.n_sentences
    for utt_id, speaker, split, text in rows[1:]:
        voice, sid = utt_id.rsplit("_", 1)
        assert voice == speaker and speaker in config.voices and sentences[sid] == [split, text]
    assert {r[0] + ".flac" for r in rows[1:]} == {p.name for p in (tiny / "wavs").iterdir()}

    meter = pyloudnorm.Meter(config.sample_rate)
    limit = 10 ** (config.peak_dbfs / 20)
    for utt_id, *_ in rows[1:]:
        info = sf.info(tiny / "wavs" / f"{utt_id}.flac")
        assert (info.samplerate, info.channels, info.format, info.subtype) == (config.sample_rate, 1, "FLAC", "PCM_16")
        x, _ = sf.read(tiny / "wavs" / f"{utt_id}.flac")
        assert 0.5 < len(x) / config.sample_rate < 15
        peak = np.abs(x).max()
        assert 0.05 < peak <= limit + 1e-3
        loudness = meter.integrated_loudness(x)
        assert abs(loudness - config.target_lufs) < 0.5 or peak > limit - 1e-3, (utt_id, loudness)
        pad = int(config.pad_seconds * config.sample_rate)
        assert np.abs(x[: pad // 2]).max() < 0.01 and np.abs(x[-pad // 2:]).max() < 0.01  # trimmed, padded

    # Every voice sounds different from every other (flite silently falls back to one default voice
    # for unknown names, so identical timbres would mean a broken catalogue entry).
    test_ids = [sid for sid, (split, _) in sentences.items() if split == "test"]
    fingerprints = {v: np.mean([_band_spectrum(tiny / "wavs" / f"{v}_{sid}.flac") for sid in test_ids], axis=0)
                    for v in config.voices}
    for i, a in enumerate(config.voices):
        for b in config.voices[i + 1:]:
            assert np.abs(fingerprints[a] - fingerprints[b]).mean() > 1.0, (a, b)

    report = json.loads((tiny / "report.json").read_text(encoding="utf-8"))
    split_of = Counter(r[2] for r in rows[1:])
    assert report["utterances"] == {sp: split_of[sp] for sp in ("train", "dev", "test")}
    assert report["sentences"] == {"train": 16, "dev": 4, "test": 4}
    assert report["voices"] == config.voices and report["total_hours"] > 0.03
    assert abs(sum(report["hours"].values()) - report["total_hours"]) < 1e-3
    coverage = json.loads((tiny / "phoneme_coverage.json").read_text(encoding="utf-8"))
    counts = coverage["counts"]
    assert sum(counts["train"].values()) > 300 and counts["test"]
    assert coverage["test_covered_by_train"] == (set(counts["test"]) <= set(counts["train"]))
    assert all(0 < counts["train"][p] < coverage["rare_threshold"] for p in coverage["rare_in_train"])


def test_rerun_of_finished_build_does_nothing(tiny: Path, capsys):
    before = _mtimes(tiny)
    report = build_corpus(CorpusConfig.tiny(), tiny, workers=2, progress=False)
    assert report.already_complete and report.synthesized == 0 and report.skipped == report.total_utterances
    assert "nothing to do" in capsys.readouterr().out
    assert _mtimes(tiny) == before
    # a corpus recorded before a setting existed counts as built with its default
    cfg_file = tiny / "build_config.json"
    old = json.loads(cfg_file.read_text())
    cfg_file.write_text(json.dumps({k: v for k, v in old.items() if k != "extra_train_sentences"}))
    try:
        assert build_corpus(CorpusConfig.tiny(), tiny, workers=2, progress=False).already_complete
        with pytest.raises(SpeechLMError, match="extra_train_sentences"):
            build_corpus(CorpusConfig(**{**CorpusConfig.tiny().__dict__, "extra_train_sentences": 4}), tiny,
                         workers=1, progress=False)
    finally:
        cfg_file.write_text(json.dumps(old))


def test_partial_build_resumes_only_missing_files(tiny: Path, tmp_path: Path):
    out = tmp_path / "copy"
    shutil.copytree(tiny, out)
    wavs = sorted((out / "wavs").iterdir())
    deleted = wavs[::13]
    for p in deleted:
        p.unlink()
    (out / "report.json").unlink()  # interrupted before the reports were written
    (out / "wavs" / ".flite-rms_s00000.flac.x1y2.tmp.flac").write_bytes(b"half a file")
    before = _mtimes(out)
    report = build_corpus(CorpusConfig.tiny(), out, workers=1, progress=False)
    assert report.synthesized == len(deleted) and report.skipped == report.total_utterances - len(deleted)
    after = _mtimes(out)
    rewritten = {k for k in after if before.get(k) != after[k]}
    assert {f"wavs/{p.name}" for p in deleted} <= rewritten
    assert not {k for k in rewritten if k.startswith("wavs/")} - {f"wavs/{p.name}" for p in deleted}
    assert "wavs/.flite-rms_s00000.flac.x1y2.tmp.flac" not in after
    for p in deleted:  # the engines are deterministic, so a resumed file equals the original
        assert np.array_equal(sf.read(p)[0], sf.read(tiny / "wavs" / p.name)[0])
    assert (out / "report.json").is_file()


def test_missing_engine_names_the_debian_package(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    with pytest.raises(SpeechLMError) as err:
        build_corpus(CorpusConfig.tiny(), tmp_path / "out", progress=False)
    message = str(err.value)
    for package in ("apt-get install flite", "apt-get install festival", "apt-get install espeak-ng"):
        assert package in message
    assert "flite-rms" in message and not (tmp_path / "out" / "metadata.csv").exists()


def test_voice_names_the_engines_would_silently_replace_are_rejected():
    check_voices([VOICES[name] for name in CorpusConfig.default().voices])
    # flite falls back to its default voice for an unknown name, espeak-ng drops a variant that
    # follows a bare language name ("en-gb+m7" speaks plain en-gb): both must be caught up front.
    for wrong in (Voice("x", "flite", "nobody", "flite"), Voice("x", "espeak-ng", "en-gb+m7", "espeak-ng"),
                  Voice("x", "festival", "nobody_diphone", "festvox-nobody")):
        with pytest.raises(SpeechLMError, match=re.escape(f"voice x needs {wrong.engine} voice '{wrong.engine_voice}'")):
            check_voices([wrong])


def test_failed_item_is_reported_and_retried(tmp_path: Path, monkeypatch):
    config = CorpusConfig(n_sentences=12, dev_fraction=0.2, test_fraction=0.2, chunk_size=6,
                          voices=["flite-rms", "flite-kal16", "espeak-en-us-f3"])
    victim = next(s for s in _sentences(config) if s.split == "test")
    # A stand-in flite that fails on one sentence and runs the real program for everything else.
    fake = tmp_path / "bin" / "flite"
    fake.parent.mkdir()
    fake.write_text(f'#!/bin/sh\ncase "$*" in *"{victim.text}"*) echo "flite: simulated crash" >&2; exit 3;; esac\n'
                    f'exec {shutil.which("flite")} "$@"\n')
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    monkeypatch.setenv("PATH", f"{fake.parent}{os.pathsep}{os.environ['PATH']}")
    out = tmp_path / "out"
    with pytest.raises(SpeechLMError) as err:
        build_corpus(config, out, workers=2, progress=False)
    message = str(err.value)
    assert message.startswith("2 of ")  # both flite voices, one sentence
    assert f"voice flite-rms (flite 'rms'), sentence {victim.id}" in message and "simulated crash" in message
    assert victim.text in message and not (out / "report.json").exists()
    assert not (out / "wavs" / f"flite-rms_{victim.id}.flac").exists()
    assert (out / "wavs" / f"espeak-en-us-f3_{victim.id}.flac").exists()

    monkeypatch.undo()
    report = build_corpus(config, out, workers=1, progress=False)
    assert report.synthesized == 2 and (out / "wavs" / f"flite-rms_{victim.id}.flac").exists()
