"""Duration-bucketed dynamic batching: batches are capped by total seconds of audio, not by a count.

Utterances of similar length share a bucket, so padding stays small, and a batch holds as many as fit
under ``max_duration`` seconds: many short clips or a few long ones. This wraps lhotse's
``DynamicBucketingSampler``, which also shards batches across DDP ranks (each utterance lands on
exactly one rank per epoch) and can save and restore its position for resumable training.
"""

from __future__ import annotations

from dataclasses import dataclass

from lhotse import CutSet
from lhotse.dataset import DynamicBucketingSampler

from speechlm.errors import SpeechLMError


@dataclass
class BucketingConfig:
    """Set from YAML (``configs/data/bucketing.yaml``)."""

    max_duration: float = 120.0  # seconds of audio per batch (per rank)
    num_buckets: int = 10
    shuffle: bool = True
    seed: int = 0
    drop_last: bool = False  # keep False: every utterance is seen once per epoch


def make_sampler(cuts: CutSet, config: BucketingConfig = BucketingConfig(), world_size: int | None = None,
                 rank: int | None = None) -> DynamicBucketingSampler:
    """A sampler yielding ``CutSet`` batches whose total duration never exceeds ``config.max_duration``.

    An utterance longer than the cap could never be batched, so it is an error here rather than a
    batch that silently breaks the cap (the prepare stage's ``max_duration`` should be below it).
    """
    cuts = CutSet.from_cuts(cuts) if not isinstance(cuts, CutSet) else cuts
    too_long = [c for c in cuts if c.duration > config.max_duration]
    if too_long:
        c = max(too_long, key=lambda c: c.duration)
        raise SpeechLMError(
            f"{len(too_long)} utterance(s) are longer than the batch cap max_duration="
            f"{config.max_duration:g} s (longest: '{c.id}', {c.duration:.2f} s); raise the cap or "
            "re-prepare the corpus with a lower --check.max_duration")
    return DynamicBucketingSampler(
        cuts, max_duration=config.max_duration, num_buckets=config.num_buckets, shuffle=config.shuffle,
        seed=config.seed, drop_last=config.drop_last, world_size=world_size, rank=rank)
