"""Codec/vocoder training crops: the per-manifest sampling shares and their errors."""

from __future__ import annotations

import pytest
import torch

from speechlm.data.audio_dataset import AudioCropDataset, AudioDataModule
from speechlm.data.prepare import prepare
from speechlm.errors import SpeechLMError
from tests.conftest import write_wav


@pytest.fixture
def two_manifests(layouts, tmp_path):
    root = layouts.base / "generic"
    for i, seconds in enumerate((0.5, 1.0, 2.0)):  # durations 1 : 2 : 4
        write_wav(root / "wavs" / f"long{i}.wav", seconds=seconds, seed=i)
    layouts.generic_table(lines=[f"long{i}|s|Sentence {i}." for i in range(3)])
    prepare("generic", root, tmp_path / "a", progress=False)
    prepare("fsdd", layouts.fsdd(), tmp_path / "b", progress=False)
    return [str(tmp_path / "a" / "cuts.jsonl.gz"), str(tmp_path / "b" / "cuts.jsonl.gz")]


def test_weights_give_each_manifest_its_share_and_each_second_the_same_chance(two_manifests):
    ds = AudioCropDataset(two_manifests, sample_rate=16000, segment_seconds=0.25)
    (lo_a, hi_a), (lo_b, hi_b) = ds.manifest_of
    assert hi_a - lo_a == 3 and hi_b - lo_b > 3
    w = ds.sampling_weights([3.0, 1.0])
    assert w[lo_a:hi_a].sum().item() == pytest.approx(0.75) and w[lo_b:hi_b].sum().item() == pytest.approx(0.25)
    assert (w[lo_a:hi_a] / w[lo_a]).tolist() == pytest.approx([1.0, 2.0, 4.0], rel=1e-3)  # by duration
    assert ds.sampling_weights([1.0, 0.0])[lo_b:hi_b].sum() == 0


def test_weighted_loader_draws_the_shares(two_manifests):
    dm = AudioDataModule(two_manifests, two_manifests, sample_rate=16000, segment_seconds=0.25, batch_size=2,
                         num_workers=0, train_weights=[1.0, 0.0])
    dm.setup("fit")
    torch.manual_seed(0)
    drawn = list(dm.train_dataloader().sampler)
    assert len(drawn) == len(dm.train_set) and max(drawn) < 3  # only the first manifest's utterances
    batch = next(iter(dm.train_dataloader()))
    assert batch.shape == (2, 4000)


@pytest.mark.parametrize("weights, problem", [([1.0], "2 train_manifests"), ([0.0, 0.0], "positive sum"),
                                              ([1.0, -1.0], "non-negative")])
def test_bad_weights_are_named(two_manifests, weights, problem):
    ds = AudioCropDataset(two_manifests, sample_rate=16000)
    with pytest.raises(SpeechLMError, match=problem):
        ds.sampling_weights(weights)


def test_an_empty_manifest_is_named(two_manifests, tmp_path):
    import gzip

    empty = tmp_path / "empty.jsonl.gz"
    with gzip.open(empty, "wt"):
        pass
    with pytest.raises(SpeechLMError, match="empty.jsonl.gz"):
        AudioCropDataset([two_manifests[0], str(empty)])


def test_speed_perturbation_moves_pitch_with_the_speed(layouts, tmp_path):
    import numpy as np
    import soundfile as sf

    root = layouts.base / "generic"
    (root / "wavs").mkdir(parents=True, exist_ok=True)
    t = np.arange(32000) / 16000
    sf.write(root / "wavs" / "tone.wav", 0.5 * np.sin(2 * np.pi * 500 * t), 16000)
    layouts.generic_table(lines=["tone|s|A tone."])
    prepare("generic", root, tmp_path / "m", progress=False)
    manifest = [str(tmp_path / "m" / "cuts.jsonl.gz")]

    def peak_hz(ds) -> float:
        crop = ds[0].numpy()
        return float(np.fft.rfftfreq(len(crop), 1 / 24000)[np.abs(np.fft.rfft(crop)).argmax()])

    plain = AudioCropDataset(manifest, sample_rate=24000, segment_seconds=1.0, gain_db=())
    faster = AudioCropDataset(manifest, sample_rate=24000, segment_seconds=1.0, gain_db=(), speed_perturb=(1.1,))
    assert peak_hz(plain) == pytest.approx(500, abs=2)
    assert peak_hz(faster) == pytest.approx(550, abs=2) and faster[0].shape == (24000,)
    # validation crops are never perturbed
    val = AudioCropDataset(manifest, sample_rate=24000, segment_seconds=1.0, random_crop=False, speed_perturb=(1.1,))
    assert peak_hz(val) == pytest.approx(500, abs=2)
    with pytest.raises(SpeechLMError, match="speed_perturb"):
        AudioCropDataset(manifest, speed_perturb=(3.0,))
