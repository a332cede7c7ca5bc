"""Splitting manifests and duration-bucketed batching."""

from __future__ import annotations

import random

import pytest
from lhotse.testing.dummies import dummy_cut

from speechlm.data.manifest import iter_manifest
from speechlm.data.prepare import prepare
from speechlm.data.sampler import BucketingConfig, DurationBucketSampler
from speechlm.data.split import split_manifest
from speechlm.errors import SpeechLMError


def _split_texts(out):
    return {s: {c.supervisions[0].custom["normalized_text"] for c in iter_manifest(out / f"cuts_{s}.jsonl.gz")}
            for s in ("train", "dev", "test")}


def test_hash_split_keeps_each_sentence_in_one_split(layouts, tmp_path):
    # 40 sentences, each said by two speakers: a sentence must never straddle train and test.
    lines = [f"u{i}_{spk}|{spk}|Sentence about item {i}." for i in range(40) for spk in ("a", "b")]
    root = layouts.generic_table(lines=lines)
    prepare("generic", root, tmp_path / "p", progress=False)
    stats = split_manifest(tmp_path / "p" / "cuts.jsonl.gz", tmp_path / "p", dev_fraction=0.2, test_fraction=0.2)
    texts = _split_texts(tmp_path / "p")
    assert not texts["train"] & texts["test"] and not texts["train"] & texts["dev"]
    assert sum(s["utterances"] for s in stats.values()) == 80
    assert all(len(texts[s]) > 0 for s in texts)


def test_corpus_splits_are_kept_and_dev_carved_from_train(layouts, tmp_path):
    prepare("fsdd", layouts.fsdd(), tmp_path / "p", progress=False)
    split_manifest(tmp_path / "p" / "cuts.jsonl.gz", tmp_path / "p", dev_fraction=0.3)
    ids = {s: {c.id for c in iter_manifest(tmp_path / "p" / f"cuts_{s}.jsonl.gz")} for s in ("train", "dev", "test")}
    assert ids["test"] == {f"{d}_{s}_0" for d in (0, 7) for s in ("jackson", "theo")}  # FSDD's own test set
    assert ids["dev"] and not ids["dev"] & ids["test"] and len(ids["train"] | ids["dev"]) == 8


def test_split_is_idempotent_and_rejects_bad_fractions(layouts, tmp_path):
    prepare("generic", layouts.generic_table(n=6), tmp_path / "p", progress=False)
    m = tmp_path / "p" / "cuts.jsonl.gz"
    split_manifest(m, tmp_path / "p")
    assert split_manifest(m, tmp_path / "p").get("skipped_as_done")
    with pytest.raises(SpeechLMError, match="bad split fractions"):
        split_manifest(m, tmp_path / "q", dev_fraction=0.6, test_fraction=0.5)


def _cuts(n=600, seed=0):
    rng = random.Random(seed)
    return [dummy_cut(i, duration=round(rng.uniform(0.3, 14.0), 2)) for i in range(n)]


@pytest.mark.parametrize("max_duration", [15.0, 60.0, 200.0])
def test_batches_are_capped_by_seconds_and_cover_each_utterance_once(max_duration):
    cuts = _cuts()
    sampler = DurationBucketSampler.from_cuts(cuts, BucketingConfig(max_duration=max_duration, num_buckets=6, seed=1))
    for epoch in (0, 1):
        sampler.set_epoch(epoch)
        seen, sizes = [], []
        for batch in sampler:
            assert sum(cuts[i].duration for i in batch) <= max_duration
            seen += [cuts[i].id for i in batch]
            sizes.append(len(batch))
        assert sorted(seen) == sorted(c.id for c in cuts)
        assert len(set(sizes)) > 1  # dynamic: batch size follows utterance length, not a fixed count


def test_bucketing_groups_similar_lengths():
    cuts = _cuts()
    spread = []
    for batch in DurationBucketSampler.from_cuts(cuts, BucketingConfig(max_duration=60, num_buckets=8)):
        d = [cuts[i].duration for i in batch]
        spread.append(max(d) - min(d))
    # Unbucketed batches of uniform(0.3, 14) durations would span ~10 s on average.
    assert sum(spread) / len(spread) < 3.0


@pytest.mark.parametrize("n", [300, 301, 7])
def test_ranks_split_an_epoch_evenly_without_overlap(n):
    cuts = _cuts(n)
    per_rank = []
    for rank in (0, 1):
        s = DurationBucketSampler.from_cuts(cuts, BucketingConfig(max_duration=40), world_size=2, rank=rank)
        expected_len = len(s)
        batches = list(s)
        assert len(batches) == expected_len
        per_rank.append(batches)
    assert len(per_rank[0]) == len(per_rank[1])  # same number of steps, or DDP would hang
    ids = [[cuts[i].id for b in r for i in b] for r in per_rank]
    assert not set(ids[0]) & set(ids[1])
    assert sorted(ids[0] + ids[1]) == sorted(c.id for c in cuts)


def test_resume_mid_epoch_continues_where_it_stopped():
    cuts = _cuts(200)
    cfg = BucketingConfig(max_duration=30, seed=5)
    full = DurationBucketSampler.from_cuts(cuts, cfg)
    full.set_epoch(2)
    expected = list(full)
    interrupted = DurationBucketSampler.from_cuts(cuts, cfg)
    interrupted.set_epoch(2)
    it = iter(interrupted)
    head = [next(it) for _ in range(7)]
    state = interrupted.state_dict()
    resumed = DurationBucketSampler.from_cuts(cuts, cfg)
    resumed.load_state_dict(state)
    resumed.set_epoch(2)  # what the training loop calls at the start of the resumed epoch
    assert head + list(resumed) == expected
    assert resumed.epoch == 3  # the epoch counter moves on once an epoch is exhausted


def test_epochs_reshuffle_but_seed_reproduces():
    cuts = _cuts(100)
    a = DurationBucketSampler.from_cuts(cuts, BucketingConfig(max_duration=30, seed=1))
    b = DurationBucketSampler.from_cuts(cuts, BucketingConfig(max_duration=30, seed=1))
    assert list(a) == list(b)
    first, second = list(DurationBucketSampler.from_cuts(cuts, BucketingConfig(max_duration=30, seed=1))), list(a)
    assert first != second  # ``a`` is in its second epoch now


def test_utterance_longer_than_cap_is_a_clear_error():
    cuts = [dummy_cut(0, duration=5.0), dummy_cut(1, duration=25.0)]
    with pytest.raises(SpeechLMError, match=r"longer than the batch cap max_duration=20 s \(longest: '.*', 25\.00 s\)"):
        DurationBucketSampler.from_cuts(cuts, BucketingConfig(max_duration=20))
