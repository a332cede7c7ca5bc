"""The bundled default pipeline (speechlm/pretrained/): it is there, small, consistent, and it speaks."""

from __future__ import annotations

import numpy as np
import pytest
import soundfile as sf

from speechlm.cli import main
from speechlm.inference import BUNDLED, Pipeline


def test_bundle_is_in_the_repository_and_small():
    assert (BUNDLED / "pipeline.json").exists(), f"{BUNDLED}: the bundled model is missing"
    total = sum(f.stat().st_size for f in BUNDLED.rglob("*") if f.is_file())
    assert total < 60e6, f"the bundled model is {total / 1e6:.1f} MB; the aim is at most 60 MB"
    assert not [f for f in BUNDLED.rglob("*") if f.suffix in (".ckpt", ".pt", ".pth", ".bin", ".pkl")]
    card = (BUNDLED / "MODEL_CARD.md").read_text(encoding="utf-8")
    for section in ("Training data", "Sizes", "Measured", "License"):
        assert section in card, f"MODEL_CARD.md lacks a '{section}' section"


@pytest.fixture(scope="module")
def tts() -> Pipeline:
    return Pipeline.from_pretrained("default")


def test_bundle_has_the_corpus_voices(tts):
    assert len(tts.voices) == 10 and tts.default_voice in tts.voices
    assert tts.sample_rate == 24000 and tts.codec.frame_rate <= 25 and tts.codec.bitrate <= 1000


def test_speaks_a_sentence(tts):
    text = "Please remember to water the plants."
    r = tts.synthesize(text, seed=0)
    assert r.sample_rate == 24000 and np.isfinite(r.audio).all() and np.abs(r.audio).max() <= 1.0
    # the length guard bounds it; a trained model should land well inside (about 2-3 s for this sentence)
    assert 0.8 < r.duration < 6.0, r.duration
    frames = r.audio[: len(r.audio) // 480 * 480].reshape(-1, 480)  # 20 ms frames
    loud = (np.sqrt((frames ** 2).mean(1)) > 0.01).mean()
    assert loud > 0.4, f"only {loud:.0%} of the output is above -40 dBFS: not speech"
    again = tts.synthesize(text, seed=0)
    assert np.array_equal(r.audio, again.audio)  # seeded: the same audio


def test_say_command_writes_a_wav(tmp_path):
    out = tmp_path / "hello.wav"
    assert main(["say", "Good morning.", "-o", str(out), "--speaker", "festival-ked"]) == 0
    wav, sr = sf.read(out)
    assert sr == 24000 and 0.3 < len(wav) / sr < 5.0
