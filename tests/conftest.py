"""Shared fixtures: generated corpora in every supported layout, and the optional ../shared/data folder."""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from types import ModuleType

import numpy as np
import pytest
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


def eval_script(name: str) -> ModuleType:
    """``eval/<name>.py`` as a module. The scripts there are run by path, not installed, and import each other
    by name (``import bench_codec``): a script's own folder is on ``sys.path`` when it runs, so it is here too."""
    if str(REPO / "eval") not in sys.path:
        sys.path.insert(0, str(REPO / "eval"))
    return importlib.import_module(name)


def shared_data_dir() -> Path:
    """``$SPEECHLM_SHARED_DATA`` or ``../shared/data`` next to the repository."""
    return Path(os.environ.get("SPEECHLM_SHARED_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    root = shared_data_dir()
    if not (root / "README.md").exists():
        pytest.skip(f"shared data not found at {root} (set SPEECHLM_SHARED_DATA)")
    return root


def voiced(seconds: float = 0.6, sr: int = 16000, f0: float = 140.0, seed: int = 0) -> np.ndarray:
    """A speech-like test signal: a harmonic tone with a syllable-rate envelope, plus a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sr)) / sr
    tone = sum(np.sin(2 * np.pi * f0 * k * t) / k for k in range(1, 6))
    env = 0.5 * (1 - np.cos(2 * np.pi * 4 * t))
    return (0.2 * tone * env + 0.003 * rng.standard_normal(t.size)).astype(np.float32)


def write_wav(path: Path, seconds: float = 0.6, sr: int = 16000, seed: int = 0, fmt: str | None = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(path, voiced(seconds, sr, seed=seed), sr, format=fmt)
    return path


class Layouts:
    """Writers for each corpus layout the preparers read; each returns the corpus root."""

    def __init__(self, base: Path):
        self.base = base

    def ljspeech(self, n: int = 4) -> Path:
        root = self.base / "LJSpeech-1.1"
        lines = []
        for i in range(n):
            uid = f"LJ001-{i:04d}"
            write_wav(root / "wavs" / f"{uid}.wav", sr=22050, seed=i)
            lines.append(f"{uid}|Chapter {i + 1}, printed in 1{i}98.|Chapter {i + 1}, printed in eighteen ninety-eight.")
        (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return root

    def librispeech(self) -> Path:
        root = self.base / "LibriSpeech"
        for subset, spk, chap in (("train-clean-100", "19", "198"), ("dev-clean", "84", "121123")):
            folder = root / subset / spk / chap
            lines = []
            for i in range(3):
                uid = f"{spk}-{chap}-{i:04d}"
                write_wav(folder / f"{uid}.flac", seed=i, fmt="FLAC")
                lines.append(f"{uid} THE QUICK BROWN FOX NUMBER {i}")
            (folder / f"{spk}-{chap}.trans.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return root

    def libritts(self) -> Path:
        root = self.base / "LibriTTS"
        for subset, spk, chap in (("train-clean-100", "103", "1241"), ("test-clean", "1089", "134686")):
            folder = root / subset / spk / chap
            for i in range(2):
                uid = f"{spk}_{chap}_{i:06d}_{i:06d}"
                write_wav(folder / f"{uid}.wav", sr=24000, seed=i)
                (folder / f"{uid}.original.txt").write_text(f"Mr. Smith paid ${i + 2}.", encoding="utf-8")
                (folder / f"{uid}.normalized.txt").write_text(f"Mister Smith paid {i + 2} dollars.",
                                                              encoding="utf-8")
        return root

    def vctk(self) -> Path:
        root = self.base / "VCTK-Corpus-0.92"
        (root / "speaker-info.txt").parent.mkdir(parents=True, exist_ok=True)
        (root / "speaker-info.txt").write_text("ID  AGE  GENDER  ACCENTS  REGION\np225  23  F  English  Southern\n"
                                               "p226  22  M  English  Surrey\n", encoding="utf-8")
        for spk in ("p225", "p226"):
            for i in (1, 2):
                uid = f"{spk}_{i:03d}"
                write_wav(root / "wav48_silence_trimmed" / spk / f"{uid}_mic1.flac", sr=48000, seed=i, fmt="FLAC")
                write_wav(root / "wav48_silence_trimmed" / spk / f"{uid}_mic2.flac", sr=48000, seed=i, fmt="FLAC")
                (root / "txt" / spk).mkdir(parents=True, exist_ok=True)
                (root / "txt" / spk / f"{uid}.txt").write_text("Please call Stella.\n", encoding="utf-8")
        return root

    def fsdd(self) -> Path:
        root = self.base / "fsdd"
        for digit in (0, 7):
            for spk in ("jackson", "theo"):
                for idx in (0, 5, 6):
                    write_wav(root / "recordings" / f"{digit}_{spk}_{idx}.wav", seconds=0.4, sr=8000, seed=idx)
        return root

    def generic_table(self, lines: list[str] | None = None, n: int = 4) -> Path:
        """``wavs/`` + a header-less ``metadata.csv`` of ``id|speaker|text`` (the shared-data layout)."""
        root = self.base / "generic"
        if lines is None:
            lines = [f"utt{i}|spk{i % 2}|Sentence number {i}." for i in range(n)]
        for line in lines:
            uid = line.split("|")[0]
            if uid and not (root / "wavs" / f"{uid}.wav").exists():
                write_wav(root / "wavs" / f"{uid}.wav", seed=len(uid))
        (root / "metadata.csv").parent.mkdir(parents=True, exist_ok=True)
        (root / "metadata.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
        return root

    def generic_sidecar(self) -> Path:
        root = self.base / "sidecar"
        for spk in ("alice", "bob"):
            for i in range(2):
                write_wav(root / spk / f"{spk}_{i}.wav", seed=i)
                (root / spk / f"{spk}_{i}.txt").write_text(f"Hello from {spk}, take {i + 1}.", encoding="utf-8")
        return root


@pytest.fixture
def layouts(tmp_path: Path) -> Layouts:
    return Layouts(tmp_path / "corpora")


@pytest.fixture(scope="module")
def one_torch_thread():
    """Run a test module on one torch thread.

    resemblyzer's small LSTM gains nothing from a second thread, and on a busy 2-core CI machine the
    two OpenMP threads mostly wait for each other (measured: 12 s vs 5 s for the SIM test under load).
    """
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)
