"""The codec's pitch target (speechlm.codec.pitch): F0 tracks, the head's shapes and the loss's scores."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from speechlm.codec.pitch import PitchHead, f0_frames, pitch_loss
from tests.conftest import voiced


def test_f0_frames_track_a_harmonic_tone_and_leave_silence_unvoiced():
    sr, hop = 24000, 240
    tone = torch.from_numpy(voiced(1.0, sr, f0=180.0))
    silence = torch.zeros(sr)
    f0 = f0_frames(torch.stack([tone, silence]), sr, hop)
    assert f0.shape == (2, sr // hop)
    loud = f0[0, 20:80]  # away from the envelope's quiet ends
    voiced_frames = loud[loud > 0]
    assert voiced_frames.numel() > 0.8 * loud.numel()
    assert torch.allclose(voiced_frames.median(), torch.tensor(180.0), rtol=0.03)
    assert not f0[1].any()


def test_pitch_head_upsamples_to_the_analysis_rate():
    head = PitchHead(latent_dim=8, upsample=4, dim=16)
    assert head(torch.randn(3, 8, 25)).shape == (3, 2, 100)


def test_pitch_loss_scores():
    f0 = torch.tensor([[0.0, 0.0, 100.0, 200.0, 400.0]])
    logit = torch.tensor([[-20.0, -20.0, 20.0, 20.0, 20.0]])
    exact = torch.stack([logit, torch.log2(f0.clamp(min=1) / 100)], 1)
    r = pitch_loss(exact, f0)
    assert r["voicing_acc"] == 1.0 and float(r["cents"]) == pytest.approx(0.0, abs=1e-3)
    assert float(r["loss"]) < 1e-6

    octave_up = exact.clone()
    octave_up[:, 1] += 1
    r = pitch_loss(octave_up, f0)
    assert float(r["cents"]) == pytest.approx(1200.0, abs=1e-2)
    assert float(r["loss"]) == pytest.approx(1.0, abs=1e-4)  # L1 of one octave on every voiced frame

    unvoiced = pitch_loss(exact, torch.zeros_like(f0))  # no voiced target frame: no F0 term, no score
    assert math.isnan(float(unvoiced["cents"])) and unvoiced["voicing_acc"] == pytest.approx(0.4)
    assert np.isfinite(float(unvoiced["loss"]))


def test_pitch_probe_script_reports_every_feature(layouts, tmp_path):
    """eval/codec_pitch_probe.py end to end on a tiny codec and a small corpus (few probe steps)."""
    import json

    from speechlm.codec.model import CodecConfig
    from speechlm.codec.neural import NeuralCodec
    from speechlm.data.prepare import prepare
    from speechlm.vocoder.model import VocoderConfig
    from tests.conftest import eval_script

    root = layouts.generic_table(lines=[f"u{i}|s|Sentence {i}." for i in range(6)])
    prepare("generic", root, tmp_path / "data", progress=False)
    torch.manual_seed(0)
    NeuralCodec(CodecConfig.tiny(), VocoderConfig.tiny()).save_pretrained(tmp_path / "codec")
    probe = eval_script("codec_pitch_probe")
    out = tmp_path / "report"
    assert probe.main(["--codec", str(tmp_path / "codec"), "--manifest", str(tmp_path / "data" / "cuts.jsonl.gz"),
                       "--steps", "3", "--out", str(out)]) == 0
    report = json.loads((out / "pitch_probe.json").read_text())
    assert report["utterances"] == 6 and report["held_out"] == 1
    names = list(report["results"])
    assert names == ["log-mel (codec input)", f"{tmp_path / 'codec'}: all levels", f"{tmp_path / 'codec'}: level 1"]
    assert all(0 <= r["voicing_accuracy"] <= 1 for r in report["results"].values())
    assert "| log-mel (codec input) |" in (out / "pitch_probe.md").read_text()
    with pytest.raises(SystemExit, match="not found"):
        probe.main(["--codec", str(tmp_path / "codec"), "--manifest", str(tmp_path / "missing.jsonl.gz")])

    codec = NeuralCodec.from_pretrained(tmp_path / "codec")
    feats, f0 = probe.utterance_features({"c": codec}, torch.from_numpy(voiced(0.77, 24000)))  # 19.25 frames
    assert f0.shape == (76,) and {name: x.shape[-1] for name, x in feats.items()} == \
        {"log-mel (codec input)": 76, "c: all levels": 76, "c: level 1": 76}
