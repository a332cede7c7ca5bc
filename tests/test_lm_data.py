"""Task-marked LM sequences: structure, loss masks on target spans only, determinism, collation."""

from __future__ import annotations

import pytest
import torch

from speechlm.lm.data import TASKS, ChatTurn, LMDataset, SequenceBuilder, Utterance, collate
from speechlm.lm.layout import ASR, AUDIO, TEXT, TTS, VOICE_PROMPT, TokenLayout
from speechlm.errors import SpeechLMError
from speechlm.lm.model import SpeechLM, lm_config
from speechlm.text.tokenizer import BOS_ID, EOS_ID

L = TokenLayout(text_vocab=90, n_codebooks=3, codebook_size=16)


def utt(i: int, speaker: str = "a", n_text: int = 6, frames: int = 10) -> Utterance:
    g = torch.Generator().manual_seed(i)
    return Utterance(f"u{i}", speaker, "en", torch.randint(68, 90, (n_text,), generator=g).tolist(),
                     torch.randint(0, 16, (3, frames), generator=g))


def test_tts_sequence_and_mask():
    u, p = utt(0), utt(1, frames=7)
    seq, mask = SequenceBuilder(L).build("tts", u, prompt=p)
    s0 = seq[0].tolist()
    assert s0[0] == BOS_ID and s0[1] == TTS and s0[3] == VOICE_PROMPT
    assert s0.count(AUDIO) == 2 and TEXT in s0
    assert mask[0].sum() == 10 + 1 and all(mask[k].sum() == 10 for k in (1, 2))  # frames + <eos>
    start = s0.index(TEXT) + len(u.text) + 2  # first target step
    assert not mask[:, :start].any() and seq[0, start + 10].item() == EOS_ID
    assert torch.equal(L.codes_from_steps(seq[:, start: start + 12]), u.codes)


def test_asr_and_continue_masks():
    u = utt(2)
    seq, mask = SequenceBuilder(L).build("asr", u)
    assert seq[0, 1].item() == ASR and mask[1:].sum() == 0 and mask[0].sum() == len(u.text) + 1
    assert seq[0, mask[0]].tolist() == [*u.text, EOS_ID]
    seq, mask = SequenceBuilder(L).build("continue", u, prefix_frames=4)
    assert mask[0].sum() == (10 - 4) + 1 and all(mask[k].sum() == 10 - 4 for k in (1, 2))


def test_dataset_is_deterministic_per_epoch_and_mixes_tasks():
    utts = [utt(i, speaker="ab"[i % 2]) for i in range(40)]
    ds = LMDataset(utts, L, seed=3)
    first = [ds[i][3] for i in range(40)]
    assert first == [ds[i][3] for i in range(40)] and len(set(first)) == 3
    ds.set_epoch(1)
    assert [ds[i][3] for i in range(40)] != first
    assert all(ds.length(i) >= ds[i][0].shape[-1] for i in range(40))


def test_text_dropout_keeps_voice_prompt_and_audio_loss_and_leaves_other_runs_alone():
    from speechlm.lm.align import alignment_spans

    utts = [utt(i, speaker="ab"[i % 2]) for i in range(400)]
    plain, dropped = LMDataset(utts, L, seed=3), LMDataset(utts, L, seed=3, text_dropout=0.25)
    off = LMDataset(utts, L, seed=3, text_dropout=0.0)
    assert all(torch.equal(plain[i][0], off[i][0]) for i in range(400))  # off: exactly the old sequences
    n_tts = n_empty = 0
    for i in range(400):
        inputs, targets, mask, task = dropped[i]
        assert task == plain[i][3]  # the task draw is unchanged; only tts items can lose their text
        if task != TASKS.index("tts"):
            assert torch.equal(inputs, plain[i][0])
            continue
        n_tts += 1
        s0 = inputs[0].tolist()
        empty = s0[len(s0) - 1 - s0[::-1].index(TEXT) + 1] == AUDIO  # "<|text|> <|audio|>"
        n_empty += empty
        if empty:
            assert mask[0].sum() == utts[i].codes.shape[-1] + 1  # every frame and <eos> still trained
            assert s0.count(AUDIO) == plain[i][0][0].tolist().count(AUDIO)  # the voice prompt (if any) kept
            q0, q1, k0, k1 = alignment_spans(inputs[None], L)[0].tolist()
            assert k1 <= k0  # nothing for guided attention to align to
        else:
            assert torch.equal(inputs, plain[i][0])
    assert 0.15 < n_empty / n_tts < 0.35
    with pytest.raises(SpeechLMError, match="text_dropout must be in"):
        LMDataset(utts, L, text_dropout=1.0)


def test_chat_turns_are_extra_items_with_loss_on_the_reply():
    turns = [ChatTurn(f"c{i}", "en", [70 + i, 71], [80, 81 + i, 82]) for i in range(3)]
    ds = LMDataset([utt(0), utt(1)], L, seed=0, chat=turns)
    assert len(ds) == 5
    inputs, targets, mask, task = ds[3]
    assert task == TASKS.index("chat") and ds.length(3) >= inputs.shape[-1]
    assert targets[0, mask[0]].tolist() == [80, 82, 82, EOS_ID] and not mask[1:].any()
    assert all(ds[i][3] != TASKS.index("chat") for i in range(2))
    with pytest.raises(SpeechLMError, match="chat examples come from chat turns"):
        LMDataset([utt(0)], L, task_mix={"chat": 1.0})


def test_collate_pads_without_loss():
    ds = LMDataset([utt(0, frames=5), utt(1, frames=12)], L, task_mix={"asr": 1.0})
    inputs, targets, mask, tasks = collate([ds[0], ds[1]], L)
    assert inputs.shape == targets.shape == mask.shape and inputs.shape[0] == 2
    short = ds[0][0].shape[-1]
    assert not mask[0, :, short:].any() and tasks.tolist() == [1, 1]


def test_tiny_lm_learns_from_task_sequences():
    torch.manual_seed(0)
    utts = [utt(i % 4, speaker="a") for i in range(8)]  # four utterances seen repeatedly
    ds = LMDataset(utts, L, task_mix={"tts": 1.0}, prompt_prob=0.0)
    model = SpeechLM(lm_config("tiny", L.stream_vocab, max_seq_len=64))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    batch = collate([ds[i] for i in range(8)], L)
    losses = []
    for _ in range(40):
        loss = model(batch[0], batch[1], batch[2]).loss
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
