"""MOS session design: Latin-square balance, rater order, answer validation, blinded loudness-matched stimuli."""

from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlm.errors import SpeechLMError
from speechlm.mos import design, stimuli
from speechlm.mos.session import CreateOptions, create_session, load_session
from tests.conftest import voiced

SYSTEMS = ("alphasysname", "betasysname", "gammasysname")


def make_systems(root: Path, names=SYSTEMS, n_utts: int = 5, seconds: float = 0.7, rates=(16000, 22050, 24000),
                 missing: dict[str, str] | None = None) -> list[str]:
    """Audio folders of fake systems (different levels and sample rates); returns ``NAME=DIR`` specs."""
    specs = []
    for s, name in enumerate(names):
        sr = rates[s % len(rates)]
        for i in range(n_utts):
            utt = f"uttid{i:02d}"
            if missing and missing.get(name) == utt:
                continue
            folder = root / name
            folder.mkdir(parents=True, exist_ok=True)
            # Levels differ by system (+/- 10 dB) so loudness matching has work to do.
            sf.write(folder / f"{utt}.wav", voiced(seconds, sr, seed=10 * s + i) * (0.3 + 0.6 * s), sr)
        specs.append(f"{name}={root / name}")
    return specs


def test_latin_square_balance():
    rng = np.random.default_rng(0)
    conds, utts = ["a", "b", "c"], [f"u{i}" for i in range(9)]
    rows = design.latin_square(conds, utts, None, rng)
    assert len(rows) == 3
    for row in rows:
        assert sorted(u for _, u in row) == sorted(utts)  # every sentence once: never twice for one rater
        assert Counter(c for c, _ in row) == {"a": 3, "b": 3, "c": 3}
    assert Counter(p for row in rows for p in row) == {(c, u): 1 for c in conds for u in utts}

    blocks = design.latin_square(conds, utts + ["u9", "u10"], 4, rng)  # 11 sentences in blocks of >= 4
    assert len(blocks) == 2 * 3
    assert Counter(p for row in blocks for p in row) == {(c, u): 1 for c in conds for u in utts + ["u9", "u10"]}
    for row in blocks:
        assert len({u for _, u in row}) == len(row) >= 4 and set(c for c, _ in row) == set(conds)

    with pytest.raises(SpeechLMError, match="at least 3 test utterances"):
        design.latin_square(conds, ["u0", "u1"], None, rng)


def test_rater_order_is_balanced_blinded_and_reproducible():
    rng = np.random.default_rng(1)
    plan = design.build_plan("cmos", ["ref", "x", "y"], [f"u{i}" for i in range(7)], "u6", reference="ref",
                             utts_per_list=None, rng=rng, spoken_trap=True)
    assert len(plan.lists) == 2 and len(plan.training) == 2 and len(plan.screening) == 2
    orders = [design.rater_order(plan, i, seed=5) for i in range(8)]
    assert [li for li, _ in orders] == [0, 1] * 4
    assert design.rater_order(plan, 3, seed=5) == orders[3]
    assert design.rater_order(plan, 3, seed=6) != orders[3]
    flips = Counter()
    for list_idx, order in orders:
        items = [e["item"] for e in order]
        assert items[:2] == plan.training  # practice first, then the rest
        assert set(items[2:]) == set(plan.lists[list_idx]) | set(plan.screening)
        test_utts = [plan.trials[i].utt for i in items if plan.trials[i].kind == "test"]
        assert len(test_utts) == len(set(test_utts)) == 6 and "u6" not in test_utts
        assert {plan.trials[i].condition for i in items if plan.trials[i].kind == "test"} == {"x", "y"}
        for e in order:
            trial = plan.trials[e["item"]]
            assert sorted(e["shown"]) == sorted(trial.stimuli)
            if trial.kind == "trap":
                assert e["shown"] == trial.stimuli  # its spoken instruction refers to positions
            elif trial.kind == "test":
                flips[e["shown"] == trial.stimuli] += 1
    assert flips[True] > 10 and flips[False] > 10  # A/B positions are not tied to the baseline
    for name in plan.stimuli:
        assert re.fullmatch(r"[0-9a-f]{16}\.wav", name)


def test_mushra_plan_and_reference_rules():
    plan = design.build_plan("mushra", ["ref", "x"], ["u0", "u1", "u2", "u3"], "u0", reference="ref",
                             utts_per_list=2, rng=np.random.default_rng(0), spoken_trap=False)
    assert len(plan.lists) == 1  # 3 test sentences in blocks of >= 2: one block
    trial = plan.trials[plan.lists[0][0]]
    conds = sorted(plan.stimuli[n].condition for n in trial.stimuli)
    assert conds == ["anchor_3.5k", "anchor_7k", "hidden_reference", "x"]
    assert plan.stimuli[trial.reference].condition == "reference" and trial.reference not in trial.stimuli
    with pytest.raises(SpeechLMError, match="needs --reference"):
        design.build_plan("ab", ["a", "b"], ["u0", "u1"], "u0", reference=None, utts_per_list=None,
                          rng=np.random.default_rng(0), spoken_trap=True)
    with pytest.raises(SpeechLMError, match="not among the systems"):
        design.build_plan("acr", ["a", "b"], ["u0", "u1", "u2"], "u0", reference="zz", utts_per_list=None,
                          rng=np.random.default_rng(0), spoken_trap=True)
    with pytest.raises(SpeechLMError, match="unknown test type"):
        design.normalize_test_type("dcr")
    assert design.normalize_test_type("CCR") == "cmos"


def test_canonical_value_validates_and_flips():
    t = design.Trial("i", "test", ["base", "sys"])
    assert design.canonical_value("acr", design.Trial("i", "test", ["s"]), ["s"], 4) == 4
    assert design.canonical_value("cmos", t, ["base", "sys"], 2) == 2
    assert design.canonical_value("cmos", t, ["sys", "base"], 2) == -2  # B=base better than A=sys
    assert design.canonical_value("ab", t, ["sys", "base"], "A") == 1
    assert design.canonical_value("ab", t, ["base", "sys"], "A") == 0
    assert design.canonical_value("mushra", t, ["base", "sys"], {"base": 100, "sys": 42.5}) == {"base": 100.0,
                                                                                               "sys": 42.5}
    bad = [("acr", 0), ("acr", 6), ("acr", 4.0), ("acr", True), ("acr", "5"), ("acr", None), ("cmos", 4),
           ("ab", "C"), ("ab", 1), ("mushra", {"base": 100}), ("mushra", {"base": 101, "sys": 0}),
           ("mushra", {"base": float("nan"), "sys": 0}), ("mushra", [100, 0])]
    for test_type, value in bad:
        with pytest.raises(ValueError):
            design.canonical_value(test_type, t if test_type != "acr" else design.Trial("i", "test", ["s"]),
                                   ["base", "sys"] if test_type != "acr" else ["s"], value)


def test_stimulus_processing():
    sr = 16000
    x = voiced(1.0, sr)
    for target in (-26.0, -30.0):
        y, limited = stimuli.match_loudness(x, sr, target)
        assert not limited and abs(stimuli.integrated_loudness(y, sr) - target) < 0.1
    y, limited = stimuli.match_loudness(x, sr, -3.0)  # would clip: scaled to the peak limit instead
    assert limited and np.abs(y).max() <= stimuli.PEAK_LIMIT + 1e-6
    with pytest.raises(ValueError, match="silent"):
        stimuli.match_loudness(np.zeros(sr, dtype=np.float32), sr, -26.0)
    noise = np.random.default_rng(0).standard_normal(sr).astype(np.float32)
    spec = lambda w: np.abs(np.fft.rfft(w)) ** 2  # noqa: E731
    freqs = np.fft.rfftfreq(sr, 1 / sr)
    low = spec(stimuli.lowpass(noise, sr, 3500))
    assert low[freqs > 4500].sum() / low[freqs < 3000].sum() < 1e-4
    with pytest.raises(ValueError, match="cannot low-pass"):
        stimuli.lowpass(noise, 8000, 7000)
    bad = stimuli.degrade(x, sr)
    err = bad / np.sqrt(np.mean(bad ** 2)) - x / np.sqrt(np.mean(x ** 2))
    assert np.mean(err ** 2) > 0.3  # far from the clean clip
    hp = stimuli.headphone_clip(quiet=1, antiphase=2, sr=sr)
    assert hp.shape[1] == 2
    seg = [hp[int(i * sr): int((i + 0.5) * sr)] for i in (0.0, 0.85, 1.7)]
    assert np.abs(seg[1]).max() == pytest.approx(0.5 * np.abs(seg[0]).max(), rel=0.01)
    assert np.allclose(seg[2][:, 0], -seg[2][:, 1]) and np.allclose(seg[0][:, 0], seg[0][:, 1])


@pytest.fixture(scope="module")
def acr_session(tmp_path_factory):
    root = tmp_path_factory.mktemp("mos_design")
    specs = make_systems(root / "in", missing={"gammasysname": "uttid04"}, n_utts=6)
    return create_session(specs, root / "session", CreateOptions(reference="alphasysname", raters=4, seed=3))


def test_created_session_is_blinded_and_loudness_matched(acr_session):
    session, tokens = acr_session
    assert len(tokens) == 4 and len(set(tokens)) == 4
    assert session.sample_rate == 24000  # the highest input rate
    assert any("uttid04" in n and "gammasysname" in n for n in session.notes)  # reported, not silently dropped
    assert "uttid04" not in session.utts and len(session.utts) == 5
    files = sorted(session.stimuli_dir.iterdir())
    assert len(files) == len(session.plan.stimuli) + len(session.checks)
    secrets_ = [s.encode() for s in SYSTEMS] + [f"uttid{i:02d}".encode() for i in range(6)]
    for f in files:
        assert re.fullmatch(r"[0-9a-f]{16}\.wav", f.name)
        raw = f.read_bytes()
        assert not any(s in raw for s in secrets_)
        assert b"LIST" not in raw and b"INFO" not in raw  # no metadata chunks survive the re-encode
        info = sf.info(str(f))
        assert (info.samplerate, info.subtype) == (24000, "PCM_16")
    for stim in session.plan.stimuli.values():
        if stim.process == "clean":
            wav, sr = sf.read(str(session.stimuli_dir / stim.name))
            assert abs(stimuli.integrated_loudness(wav, sr) + 26.0) < 0.3, stim
    # The map from blinded names to systems is in session.json, and right: decoded audio matches the source.
    loaded = load_session(session.directory)
    assert loaded.plan.stimuli.keys() == session.plan.stimuli.keys()
    test = [s for s in loaded.plan.stimuli.values() if s.condition in SYSTEMS]
    for stim in test[:4]:
        wav, _ = sf.read(str(session.stimuli_dir / stim.name))
        src, _ = stimuli.load_audio(Path(session.directory).parent / "in" / stim.source / f"{stim.utt}.wav", 24000)
        assert abs(np.corrcoef(wav, src)[0, 1]) > 0.99
    kinds = Counter(loaded.plan.trials[i].kind for i in loaded.plan.screening)
    assert kinds == {"gold": 2, "trap": 1}
    trap = next(loaded.plan.trials[i] for i in loaded.plan.screening if loaded.plan.trials[i].kind == "trap")
    assert trap.expected == [5]
    assert loaded.plan.stimuli[trap.stimuli[0]].duration > 2.0  # the spoken instruction is in it
    assert json.loads((session.directory / "session.json").read_text())["format_version"] == 1


def test_create_refuses_bad_input(tmp_path):
    specs = make_systems(tmp_path / "in", n_utts=3)
    with pytest.raises(SpeechLMError, match="not a folder"):
        create_session(specs + [f"x={tmp_path / 'nope'}"], tmp_path / "s1")
    with pytest.raises(SpeechLMError, match="at least 3 test utterances"):
        create_session(specs, tmp_path / "s2")  # 3 sentences, one held out, 3 systems
    with pytest.raises(SpeechLMError, match="given twice"):
        create_session([str(tmp_path / "in" / "alphasysname")] * 2, tmp_path / "s3")
    (tmp_path / "s4").mkdir()
    (tmp_path / "s4" / "keep.txt").write_text("x")
    with pytest.raises(SpeechLMError, match="not empty"):
        create_session(specs, tmp_path / "s4")
    specs = make_systems(tmp_path / "in5", n_utts=4)
    sf.write(tmp_path / "in5" / "betasysname" / "uttid01.wav", np.zeros(8000, dtype=np.float32), 16000)
    with pytest.raises(SpeechLMError, match=r"uttid01\.wav: clip is silent"):
        create_session(specs, tmp_path / "s5")
    assert not (tmp_path / "s5").exists() and not list(tmp_path.glob(".s5.creating-*"))  # nothing half-made
