"""Best-of-N scores: the asr task's NLL of a text given candidate codes."""

from __future__ import annotations

import pytest
import torch

from speechlm.lm.data import SequenceBuilder, Utterance
from speechlm.lm.layout import TokenLayout
from speechlm.lm.model import SpeechLM, lm_config
from speechlm.lm.rerank import transcript_nll

LAYOUT = TokenLayout(text_vocab=80, n_codebooks=3, codebook_size=16)


@pytest.fixture(scope="module")
def model() -> SpeechLM:
    torch.manual_seed(0)
    lm = SpeechLM(lm_config("tiny", LAYOUT.stream_vocab, max_seq_len=128)).eval()
    with torch.no_grad():  # large weights, so that the scores differ clearly between candidates
        for p in lm.parameters():
            if p.dim() >= 2:
                p.normal_(0, 0.3)
    return lm


def _codes(frames: int, seed: int) -> torch.Tensor:
    return torch.randint(0, 16, (3, frames), generator=torch.Generator().manual_seed(seed))


def test_score_is_the_asr_tasks_mean_nll_per_target_token(model):
    text, codes = [70, 71, 75, 72], _codes(9, 0)
    seq, mask = SequenceBuilder(LAYOUT).build("asr", Utterance("", "", "en", text, codes))
    with torch.no_grad():
        out = model(seq[None, :, :-1], seq[None, :, 1:], mask[None, :, 1:])
    assert int(out.row_tokens) == len(text) + 1  # the phonemes and <eos>, nothing else
    assert float(transcript_nll(model, LAYOUT, [codes], [text])[0]) == pytest.approx(float(out.loss), rel=1e-5)


def test_batched_scores_match_single_ones_and_empty_takes_lose(model):
    text = [70, 73, 74]
    takes = [_codes(5, 1), _codes(12, 2), torch.zeros(3, 0, dtype=torch.long), _codes(8, 3)]
    batched = transcript_nll(model, LAYOUT, takes, [text] * 4)
    assert torch.isinf(batched[2]) and torch.isfinite(batched[[0, 1, 3]]).all()
    for i in (0, 1, 3):
        assert float(batched[i]) == pytest.approx(float(transcript_nll(model, LAYOUT, [takes[i]], [text])[0]), rel=1e-4)
    assert len(set(batched[[0, 1, 3]].tolist())) == 3
    with pytest.raises(ValueError, match="2 candidates for 1 texts"):
        transcript_nll(model, LAYOUT, takes[:2], [text])
