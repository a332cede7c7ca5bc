"""Random fixed-length audio crops from manifests, for codec and vocoder training.

By default every utterance is one item, drawn once an epoch. That under-samples corpora of long
utterances: the LibriSpeech sample is 251 utterances of ~12.5 s, so beside 4,320 synthetic and 2,563
FSDD utterances it gave 3.5 % of the crops while holding 0.9 h of the only real read speech.
``train_weights`` fixes the share of crops each manifest gives, and within a manifest draws
utterances in proportion to their duration, so every second of its audio is equally likely.
"""

from __future__ import annotations

import lightning as L
import numpy as np
import soundfile as sf
import torch
from torch.utils.data import DataLoader, Dataset, WeightedRandomSampler

from speechlm.data.manifest import iter_manifest
from speechlm.errors import SpeechLMError


class AudioCropDataset(Dataset):
    """One item per utterance: a random ``segment_seconds`` crop, mono, resampled, with random gain.

    Only the crop is read from disk (``soundfile`` seeks), so long files cost no more than short
    ones. Clips shorter than the segment are zero-padded at the end.

    With ``reference_seconds > 0`` an item is ``(crop, reference)``: the reference is a crop of
    another utterance of the same speaker in the same manifest (of the same utterance where the speaker
    has no other), for a voice-conditioned vocoder, the way a voice prompt is another utterance.

    ``speed_perturb`` (e.g. ``(0.9, 1.0, 1.1)``, training crops only): each item is played at one of these
    speeds, drawn uniformly, by resampling (Kaldi's speed perturbation: pitch and formants move together,
    so a speaker becomes a new, natural-sounding one); its reference is played at the same speed.
    """

    def __init__(self, manifests: list[str], sample_rate: int = 24000, segment_seconds: float = 1.0,
                 gain_db: tuple[float, float] = (-6.0, 3.0), random_crop: bool = True,
                 reference_seconds: float = 0.0, speed_perturb: tuple[float, ...] | None = None):
        if speed_perturb is not None and (not speed_perturb or any(not 0.5 <= f <= 2.0 for f in speed_perturb)):
            raise SpeechLMError(f"speed_perturb factors must lie in [0.5, 2.0], got {speed_perturb}")
        self.speed_perturb = tuple(speed_perturb) if speed_perturb and random_crop else None
        self.items = []
        self.manifest_of: list[tuple[int, int]] = []  # item range [lo, hi) of each manifest
        groups: dict[tuple[int, str], list[int]] = {}
        for mi, m in enumerate(manifests):
            lo = len(self.items)
            for cut in iter_manifest(m):
                rec = cut.recording
                speaker = cut.supervisions[0].speaker if cut.supervisions and cut.supervisions[0].speaker else None
                groups.setdefault((mi, speaker or f"utterance {cut.id}"), []).append(len(self.items))
                self.items.append((rec.sources[0].source, rec.sampling_rate, int(cut.start * rec.sampling_rate),
                                   int(cut.duration * rec.sampling_rate)))
            if len(self.items) == lo:
                raise SpeechLMError(f"no utterances in {m}")
            self.manifest_of.append((lo, len(self.items)))
        if not self.items:
            raise SpeechLMError(f"no utterances in {manifests}")
        self.same_speaker = [None] * len(self.items)  # each item's speaker group (shared lists)
        for members in groups.values():
            for i in members:
                self.same_speaker[i] = members
        self.sample_rate, self.segment = sample_rate, int(segment_seconds * sample_rate)
        self.reference = int(reference_seconds * sample_rate)
        self.gain_db, self.random_crop = gain_db, random_crop

    def __len__(self) -> int:
        return len(self.items)

    def sampling_weights(self, manifest_weights: list[float]) -> torch.Tensor:
        """Per-item draw weights: manifest ``m`` gets ``manifest_weights[m]`` of the draws (normalized),
        and within it each utterance is drawn in proportion to its duration."""
        if len(manifest_weights) != len(self.manifest_of):
            raise SpeechLMError(f"train_weights has {len(manifest_weights)} entries for "
                                f"{len(self.manifest_of)} train_manifests; give one weight per manifest")
        if any(w < 0 for w in manifest_weights) or sum(manifest_weights) <= 0:
            raise SpeechLMError(f"train_weights must be non-negative with a positive sum, got {manifest_weights}")
        total = sum(manifest_weights)
        weights = torch.zeros(len(self.items), dtype=torch.float64)
        for w, (lo, hi) in zip(manifest_weights, self.manifest_of):
            lengths = torch.tensor([max(1, self.items[i][3]) / self.items[i][1] for i in range(lo, hi)],
                                   dtype=torch.float64)
            weights[lo:hi] = w / total * lengths / lengths.sum()
        return weights

    def __getitem__(self, i: int) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
        speed = 1.0
        if self.speed_perturb:
            speed = self.speed_perturb[int(torch.randint(0, len(self.speed_perturb), ()))]
        wav = self._crop(i, self.segment, speed)
        if not self.reference:
            return wav
        group = self.same_speaker[i]
        others = [j for j in group if j != i] or [i]
        j = others[int(torch.randint(0, len(others), ()))] if self.random_crop else others[0]
        return wav, self._crop(j, self.reference, speed)

    def _crop(self, i: int, segment: int, speed: float = 1.0) -> torch.Tensor:
        path, file_sr, offset, length = self.items[i]
        # played `speed` times faster: the file's samples taken as if recorded at file_sr * speed
        sr = int(round(file_sr * speed))
        want = int(np.ceil(segment * sr / self.sample_rate))
        start = offset + (int(torch.randint(0, max(1, length - want + 1), ())) if self.random_crop else 0)
        wav, _ = sf.read(path, start=start, frames=min(want, length), dtype="float32", always_2d=True)
        wav = torch.from_numpy(wav.mean(axis=1))
        if sr != self.sample_rate:
            import torchaudio.functional as AF

            wav = AF.resample(wav, sr, self.sample_rate)
        wav = torch.nn.functional.pad(wav[:segment], (0, max(0, segment - wav.shape[-1])))
        if self.random_crop and self.gain_db:
            wav = wav * 10 ** (float(torch.empty(()).uniform_(*self.gain_db)) / 20)
        return wav.clamp(-1, 1)


class AudioDataModule(L.LightningDataModule):
    """Train and validation crops from lhotse manifests (``speechlm data prepare`` output).

    ``train_weights`` (one per train manifest, e.g. ``[0.4, 0.45, 0.15]``): the share of training crops
    drawn from each, utterances drawn by duration, with replacement, ``len(train_set)`` crops an epoch.
    ``None`` (default): each utterance once an epoch, shuffled. ``reference_seconds > 0``: batches are
    ``(crops, references)`` (see :class:`AudioCropDataset`), for a voice-conditioned vocoder.
    """

    def __init__(self, train_manifests: list[str], val_manifests: list[str], sample_rate: int = 24000,
                 segment_seconds: float = 1.0, batch_size: int = 8, num_workers: int = 1,
                 val_segment_seconds: float = 2.0, train_weights: list[float] | None = None,
                 reference_seconds: float = 0.0, speed_perturb: list[float] | None = None):
        super().__init__()
        self.save_hyperparameters()

    def setup(self, stage: str | None = None) -> None:
        h = self.hparams
        self.train_set = AudioCropDataset(h.train_manifests, h.sample_rate, h.segment_seconds,
                                          reference_seconds=h.reference_seconds, speed_perturb=h.speed_perturb)
        self.val_set = AudioCropDataset(h.val_manifests, h.sample_rate, h.val_segment_seconds, random_crop=False,
                                        reference_seconds=h.reference_seconds)

    def train_dataloader(self) -> DataLoader:
        h = self.hparams
        sampler = None
        if h.train_weights is not None:  # Lightning wraps it in a DistributedSamplerWrapper under DDP
            weights = self.train_set.sampling_weights(list(h.train_weights))
            sampler = WeightedRandomSampler(weights, num_samples=len(self.train_set), replacement=True)
        return DataLoader(self.train_set, batch_size=h.batch_size, shuffle=sampler is None, sampler=sampler,
                          drop_last=True, num_workers=h.num_workers, persistent_workers=h.num_workers > 0)

    def val_dataloader(self) -> DataLoader:
        h = self.hparams
        return DataLoader(self.val_set, batch_size=h.batch_size, num_workers=0)
