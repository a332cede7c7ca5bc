"""Duration-bucketed dynamic batching: batches are capped by total seconds of audio, not by a count.

Utterances are sorted into ``num_buckets`` equal-count buckets by duration, so a batch holds clips of
similar length and padding stays small; each bucket is packed greedily until the next clip would
push the batch past ``max_duration`` seconds: many short clips or a few long ones. Batch order is
shuffled per epoch with a seeded generator, so every rank computes the same plan.

Why not lhotse's ``DynamicBucketingSampler``: measured here, it lets a batch overshoot the cap
(15.54 s in a 15 s batch), and the cap exists to bound memory. This one never exceeds it.

DDP: batches are dealt round-robin to ranks; when they do not divide evenly, the largest batches are
split (or, if all are single clips, the shortest merged) until they do, so every rank runs the same number of steps and every utterance is still seen
exactly once per epoch. ``state_dict`` records the epoch and how many batches were consumed, so a
resumed run continues at the same position.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator, Sequence

import torch
from torch.utils.data import Sampler

from speechlm.errors import SpeechLMError


@dataclass
class BucketingConfig:
    """Set from YAML (``configs/data/bucketing.yaml``)."""

    max_duration: float = 120.0  # seconds of audio per batch (per rank)
    num_buckets: int = 10
    shuffle: bool = True
    seed: int = 0


class DurationBucketSampler(Sampler[list[int]]):
    """Yields lists of indices into ``durations``; use as a DataLoader ``batch_sampler``."""

    def __init__(self, durations: Sequence[float], config: BucketingConfig = BucketingConfig(),
                 world_size: int = 1, rank: int = 0, ids: Sequence[str] | None = None):
        self.durations = [float(d) for d in durations]
        self.config = config
        self.world_size, self.rank = world_size, rank
        if not 0 <= rank < world_size:
            raise SpeechLMError(f"rank {rank} is outside world_size {world_size}")
        if len(self.durations) < world_size:
            raise SpeechLMError(f"{len(self.durations)} utterance(s) cannot feed {world_size} ranks")
        too_long = [i for i, d in enumerate(self.durations) if d > config.max_duration]
        if too_long:
            i = max(too_long, key=lambda i: self.durations[i])
            name = f"'{ids[i]}'" if ids is not None else f"#{i}"
            raise SpeechLMError(
                f"{len(too_long)} utterance(s) are longer than the batch cap max_duration="
                f"{config.max_duration:g} s (longest: {name}, {self.durations[i]:.2f} s); raise the cap or "
                "re-prepare the corpus with a lower --check.max_duration")
        self.epoch = 0
        self._consumed = 0  # batches of the current epoch already yielded on this rank

    @classmethod
    def from_cuts(cls, cuts, config: BucketingConfig = BucketingConfig(), world_size: int = 1,
                  rank: int = 0) -> "DurationBucketSampler":
        cuts = list(cuts)
        return cls([c.duration for c in cuts], config, world_size, rank, ids=[c.id for c in cuts])

    def set_epoch(self, epoch: int) -> None:
        if epoch != self.epoch:
            self.epoch, self._consumed = epoch, 0

    def _plan(self) -> list[list[int]]:
        """All batches of this epoch, for all ranks (identical on every rank)."""
        cfg = self.config
        g = torch.Generator().manual_seed(cfg.seed * 100_003 + self.epoch)
        order = sorted(range(len(self.durations)), key=lambda i: (self.durations[i], i))
        n_buckets = max(1, min(cfg.num_buckets, len(order)))
        bounds = [round(k * len(order) / n_buckets) for k in range(n_buckets + 1)]
        batches: list[list[int]] = []
        for lo, hi in zip(bounds, bounds[1:]):
            bucket = order[lo:hi]
            if cfg.shuffle:
                bucket = [bucket[j] for j in torch.randperm(len(bucket), generator=g).tolist()]
            batch, total = [], 0.0
            for i in bucket:
                if batch and total + self.durations[i] > cfg.max_duration:
                    batches.append(batch)
                    batch, total = [], 0.0
                batch.append(i)
                total += self.durations[i]
            if batch:
                batches.append(batch)
        while len(batches) % self.world_size:  # even out steps per rank without dropping anything
            k = max(range(len(batches)), key=lambda k: (len(batches[k]), -k))
            if len(batches[k]) >= 2:  # split the fullest batch in two ...
                big = batches.pop(k)
                batches[k:k] = [big[: len(big) // 2], big[len(big) // 2:]]
                continue
            # ... or, when every batch is a single clip, merge the two shortest if they fit the cap.
            by_len = sorted(range(len(batches)), key=lambda k: sum(self.durations[i] for i in batches[k]))
            a, b = by_len[0], by_len[1] if len(by_len) > 1 else None
            if b is None or sum(self.durations[i] for i in batches[a] + batches[b]) > cfg.max_duration:
                raise SpeechLMError(
                    f"{len(batches)} single-utterance batches cannot be dealt evenly to {self.world_size} "
                    "ranks; raise max_duration so that two utterances fit in one batch")
            batches[a] = batches[a] + batches[b]
            del batches[b]
        if cfg.shuffle:
            batches = [batches[j] for j in torch.randperm(len(batches), generator=g).tolist()]
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        mine = self._plan()[self.rank::self.world_size]
        while self._consumed < len(mine):
            batch = mine[self._consumed]
            self._consumed += 1
            yield batch
        self.epoch, self._consumed = self.epoch + 1, 0

    def __len__(self) -> int:
        """Batches this rank yields in the current epoch (dynamic batching: it varies per epoch)."""
        return len(self._plan()) // self.world_size

    def state_dict(self) -> dict[str, int]:
        return {"epoch": self.epoch, "consumed": self._consumed}

    def load_state_dict(self, state: dict[str, int]) -> None:
        """Continue at ``state``; a position at the very end of an epoch is the start of the next one.

        A checkpoint taken after an epoch's last batch says "epoch e, all consumed": without moving on,
        the first pass after resuming would yield nothing, and a trainer would count an empty epoch.
        """
        self.epoch, self._consumed = int(state["epoch"]), int(state["consumed"])
        if self._consumed >= len(self):
            self.epoch, self._consumed = self.epoch + 1, 0
