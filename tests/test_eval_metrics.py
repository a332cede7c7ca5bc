"""Each eval metric against known answers: it must move the way it claims to, by the amount it claims to."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from speechlm.data.audio import load_audio
from speechlm.eval.asr import ASRError, WhisperASR, _whisper_kind, build_asr, get_asr, whisper_libraries
from speechlm.eval.dnsmos import get_dnsmos
from speechlm.eval.fidelity import fidelity, log_mel_distance, si_sdr
from speechlm.eval.speaker import cosine, get_speaker_encoder
from speechlm.eval.wer import corpus_cer, corpus_wer, normalize_for_scoring, score_text
from tests.conftest import shared_data_dir, voiced

SR = 16000
# Short LJ Speech clips (1.8-4.7 s) keep pocketsphinx under a few seconds in total.
LJ_IDS = ("LJ001-0002", "LJ001-0008", "LJ001-0013", "LJ001-0020")


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def asr():
    return get_asr("pocketsphinx")


@pytest.fixture(scope="module")
def speaker():
    return get_speaker_encoder("cpu")


@pytest.fixture(scope="module")
def dnsmos():
    return get_dnsmos()


def noise_like(x: np.ndarray, snr_db: float, seed: int = 0) -> np.ndarray:
    """White noise scaled so that x + noise has the given SNR."""
    n = np.random.default_rng(seed).standard_normal(x.size).astype(np.float32)
    return n * np.sqrt(np.mean(x**2) / np.mean(n**2) / 10 ** (snr_db / 10))


def lj_metadata(root: Path) -> dict[str, str]:
    rows = (line.split("|") for line in (root / "metadata.csv").read_text(encoding="utf-8").splitlines())
    return {r[0]: r[2] for r in rows}


# ---------------------------------------------------------------- WER / CER scoring


def test_scoring_normalization_spells_numbers_and_drops_case_and_punctuation():
    assert normalize_for_scoring('Dr. Smith paid $5 -- "in 1998"!') == \
        "doctor smith paid five dollars in nineteen ninety eight"
    assert normalize_for_scoring("Don't 'quote' me.") == "don't quote me"
    c = score_text("Dr. Smith paid $5.", "doctor smith paid five dollars")
    assert (c.word_errors, c.ref_words, c.wer, c.cer) == (0, 5, 0.0, 0.0)


def test_error_counts_match_hand_alignment():
    c = score_text("the cat sat on the mat", "the black cat sit on mat")
    # "black" added (I), sat->sit (S), the second "the" dropped (D), over 6 reference words.
    assert (c.substitutions, c.deletions, c.insertions, c.ref_words) == (1, 1, 1, 6)
    assert c.wer == pytest.approx(3 / 6)
    c2 = score_text("abc", "abd")
    assert (c2.char_errors, c2.ref_chars, c2.wer) == (1, 3, 1.0)
    # Corpus WER weights by length: (3 + 1) / (6 + 1), not the mean of 0.5 and 1.0.
    assert corpus_wer([c, c2]) == pytest.approx(4 / 7)
    assert corpus_cer([c2]) == pytest.approx(1 / 3)


def test_mandarin_is_scored_per_character():
    c = score_text("他有3个苹果。", "他有三个平果", language="zh")
    assert c.reference == "他 有 三 个 苹 果" and (c.word_errors, c.ref_words, c.char_errors, c.ref_chars) == (1, 6, 1, 6)


def test_empty_reference_is_an_error_not_a_score():
    with pytest.raises(ValueError, match="no words"):
        score_text("...", "hello")


# ---------------------------------------------------------------- ASR


def test_pocketsphinx_wer_own_transcript_vs_wrong_one(asr, shared_data):
    root = shared_data / "ljspeech_subset"
    texts = lj_metadata(root)
    own, wrong = [], []
    for i, uid in enumerate(LJ_IDS):
        wav, sr = load_audio(root / "wavs" / f"{uid}.wav", SR)
        hyp = asr.transcribe(wav, sr)
        own.append(score_text(texts[uid], hyp))
        wrong.append(score_text(texts[LJ_IDS[(i + 1) % len(LJ_IDS)]], hyp))
        assert own[-1].wer < wrong[-1].wer, (uid, hyp)
    print(f"LJ pocketsphinx corpus WER: own {corpus_wer(own):.3f}, wrong {corpus_wer(wrong):.3f}")
    assert corpus_wer(own) < 0.5 < 0.9 < corpus_wer(wrong)


def _flite_speech(sentences: list[str], tmp_path: Path) -> list:
    """flite-rms speaking ``sentences`` (the corpus's synthesis results); skips where flite cannot run."""
    from speechlm.corpus.voices import VOICES, synthesize

    try:
        out = synthesize(VOICES["flite-rms"], sentences, tmp_path)
    except Exception as e:  # noqa: BLE001 - any failure to run flite means "not installed here"
        pytest.skip(f"flite not usable: {e}")
    if any(o.audio is None for o in out):
        pytest.skip(f"flite failed: {[o.error for o in out]}")
    return out


def test_pocketsphinx_on_flite_speech(asr, tmp_path):
    sentences = ["The quick brown fox jumps over the lazy dog.",
                 "Please call Stella and ask her to bring these things with her from the store."]
    out = _flite_speech(sentences, tmp_path)
    hyps = [asr.transcribe(o.audio, o.sample_rate) for o in out]
    own = corpus_wer(score_text(s, h) for s, h in zip(sentences, hyps))
    wrong = corpus_wer(score_text(s, h) for s, h in zip(sentences, reversed(hyps)))
    print(f"flite-rms pocketsphinx WER: own {own:.3f}, swapped {wrong:.3f}")
    assert own < 0.3 and wrong > 0.9


def test_pocketsphinx_transcript_does_not_depend_on_the_previous_utterance(tmp_path):
    from speechlm.eval.asr import PocketSphinxASR

    out = _flite_speech(["Please call Stella and ask her to bring these things with her from the store.",
                         "Six spoons of fresh snow peas, five thick slabs of blue cheese."], tmp_path)
    first, second = (np.asarray(o.audio, np.float32) for o in out)
    sr = out[0].sample_rate
    # a degraded clip after a clean one, as a benchmark scores them: without the front-end reset, this
    # clip's transcript changed by a word after the first sentence had been transcribed
    noisy = second + 0.02 * np.random.default_rng(0).standard_normal(len(second)).astype(np.float32)
    fresh = PocketSphinxASR().transcribe(noisy, sr)
    asr = PocketSphinxASR()
    asr.transcribe(first, sr)
    assert asr.transcribe(noisy, sr) == fresh


DIGITS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]


def test_pocketsphinx_word_grammar_picks_the_spoken_digit(tmp_path):
    from speechlm.corpus.voices import VOICES, synthesize
    from speechlm.eval.asr import PocketSphinxASR

    digits = PocketSphinxASR(words=DIGITS)
    assert digits.transcribe(np.zeros(0, np.float32), SR) == ""
    with pytest.raises(ASRError, match="no pronunciation"):
        PocketSphinxASR(words=["seven", "zzqxv"])
    try:
        out = synthesize(VOICES["flite-rms"], DIGITS, tmp_path)
    except Exception as e:  # noqa: BLE001 - any failure to run flite means "not installed here"
        pytest.skip(f"flite not usable: {e}")
    hyps = [digits.transcribe(o.audio, o.sample_rate) for o in out if o.audio is not None]
    assert set(hyps) <= set(DIGITS) | {""}  # one of the words, or nothing: never free text
    assert sum(h == d for h, d in zip(hyps, DIGITS)) >= 8, hyps
    assert sum(h == d for h, d in zip(hyps, DIGITS[1:] + DIGITS[:1])) <= 1  # the wrong answers score ~0
    fsdd = shared_data_dir() / "fsdd" / "wavs"
    if fsdd.is_dir():  # real voices: well above chance (10 %) on one take of every digit by every speaker
        clips = sorted(fsdd.glob("*_0.wav"))
        right = sum(digits.transcribe(*load_audio(p, SR)) == DIGITS[int(p.name.split("_")[0])] for p in clips)
        print(f"FSDD take 0: {right} of {len(clips)} digits right")
        assert right / len(clips) > 0.4


def test_asr_edge_cases_and_whisper_never_downloads(asr, tmp_path):
    assert asr.transcribe(np.zeros(0, np.float32), SR) == ""
    assert isinstance(asr.transcribe(voiced(0.5, sr=22050), 22050), str)  # resampled, not rejected
    with pytest.raises(ASRError, match="English model only"):
        build_asr("pocketsphinx", language="zh")
    with pytest.raises(ASRError, match="unknown ASR backend"):
        build_asr("kaldi")
    with pytest.raises(ASRError, match="not found"):
        WhisperASR(tmp_path / "missing.pt")
    (tmp_path / "hf").mkdir()
    (tmp_path / "hf" / "config.json").write_text("{}")
    assert _whisper_kind(tmp_path / "hf") == "transformers"
    with pytest.raises(ASRError, match="not a Whisper model"):
        _whisper_kind(tmp_path)
    if not whisper_libraries():
        with pytest.raises(ASRError, match="needs faster-whisper"):
            build_asr("whisper", model_path=str(tmp_path / "hf"))
    else:
        with pytest.raises(ASRError, match="--whisper_model"):
            build_asr("whisper")


# ---------------------------------------------------------------- speaker similarity


def test_sim_same_speaker_beats_different_speakers(speaker, shared_data):
    by_speaker: dict[str, list[tuple[float, Path]]] = defaultdict(list)
    for p in (shared_data / "librispeech_test_other" / "wavs").glob("*.flac"):
        by_speaker[p.name.split("-")[0]].append((sf.info(p).duration, p))  # speaker = first field of the id
    assert len(by_speaker) == 10
    # Each speaker's two shortest clips of at least 2 s: enough voice for an embedding, cheap to embed.
    emb = {(spk, p.name): speaker.embed(*load_audio(p, SR))
           for spk, clips in by_speaker.items() for _, p in sorted(c for c in clips if c[0] >= 2.0)[:2]}
    keys = list(emb)
    same = [cosine(emb[a], emb[b]) for i, a in enumerate(keys) for b in keys[i + 1:] if a[0] == b[0]]
    diff = [cosine(emb[a], emb[b]) for i, a in enumerate(keys) for b in keys[i + 1:] if a[0] != b[0]]
    nearest = [max((k for k in keys if k != a), key=lambda k: cosine(emb[a], emb[k]))[0] == a[0] for a in keys]
    print(f"SIM same {np.mean(same):.3f} (min {min(same):.3f}), different {np.mean(diff):.3f} "
          f"(max {max(diff):.3f}), nearest-neighbour speaker accuracy {np.mean(nearest):.2f}")
    assert np.mean(same) > np.mean(diff) + 0.15
    assert np.mean(nearest) >= 0.9


def test_sim_of_a_clip_with_itself_and_with_silence(speaker):
    x = voiced(2.0)
    assert speaker.similarity(x, SR, x, SR) == pytest.approx(1.0, abs=1e-5)
    # Loudness and sample rate are not identity: a quieter, 24 kHz copy is the same speaker.
    import librosa

    x24 = librosa.resample(0.3 * x, orig_sr=SR, target_sr=24000)
    assert speaker.similarity(x24, 24000, x, SR) > 0.95
    with pytest.raises(ValueError, match="silent"):
        speaker.embed(np.zeros(SR, np.float32), SR)


# ---------------------------------------------------------------- DNSMOS


def test_dnsmos_noise_lowers_predicted_quality(dnsmos):
    # 4.6 s: DNSMOS tiles a clip to 9 s and scores 1 s hops, so this length costs exactly one model call.
    x = voiced(4.6)
    clean, noisy = dnsmos(x, SR), dnsmos(np.clip(x + noise_like(x, 0), -1, 1), SR)
    assert noisy.bak < clean.bak - 0.5 and noisy.ovrl < clean.ovrl - 0.3
    for s in (clean, noisy):
        assert all(1.0 <= v <= 5.0 for v in s.to_dict().values())
    with pytest.raises(ValueError, match="shorter than"):
        dnsmos(np.zeros(100, np.float32), SR)


def test_dnsmos_real_speech_clean_vs_noisy(dnsmos, shared_data):
    x, sr = load_audio(shared_data / "ljspeech_subset" / "wavs" / "LJ001-0020.wav", SR)
    clean, noisy = dnsmos(x, sr), dnsmos(np.clip(x + noise_like(x, 0), -1, 1), sr)
    print(f"DNSMOS LJ001-0020 clean {clean}, +white noise at 0 dB SNR {noisy}")
    assert noisy.ovrl < clean.ovrl - 0.8 and noisy.bak < clean.bak - 1.0 and noisy.sig < clean.sig


# ---------------------------------------------------------------- codec fidelity


def test_fidelity_known_answers_on_generated_speech():
    x = voiced(3.0)
    same = fidelity(x, SR, x, SR)
    assert same.pesq_wb == pytest.approx(4.644, abs=0.01)  # the top of the P.862.2 scale
    assert same.stoi == pytest.approx(1.0, abs=1e-6) and same.mel_distance == 0.0 and same.si_sdr > 80
    assert not same.reasons
    at20, at0 = fidelity(x, SR, x + noise_like(x, 20), SR), fidelity(x, SR, x + noise_like(x, 0), SR)
    # For independent additive noise SI-SDR is the SNR.
    assert at20.si_sdr == pytest.approx(20, abs=0.5) and at0.si_sdr == pytest.approx(0, abs=0.5)
    assert same.pesq_wb > at20.pesq_wb > at0.pesq_wb
    assert same.stoi > at20.stoi > at0.stoi
    assert same.mel_distance < at20.mel_distance < at0.mel_distance


def test_fidelity_is_gain_invariant_where_it_should_be_and_aligns_lengths():
    x = voiced(2.0)
    assert si_sdr(x, 0.5 * x) > 80  # scale-invariant by definition
    assert log_mel_distance(x, 0.5 * x) == pytest.approx(np.log(2), abs=0.05)  # a level change is heard
    longer = np.concatenate([x, voiced(0.3, seed=3)])
    cut = fidelity(x, SR, longer, SR)  # a decoder that runs 0.3 s long is compared on the common part
    assert cut.pesq_wb > 4.6 and cut.si_sdr > 80
    import librosa

    x24 = librosa.resample(x, orig_sr=SR, target_sr=24000)
    assert fidelity(x, SR, x24, 24000).pesq_wb > 4.3  # resampled to 16 kHz before scoring


def test_fidelity_reports_nan_with_reason_instead_of_crashing():
    x = voiced(2.0)
    silent = fidelity(x, SR, np.zeros_like(x), SR)
    assert np.isnan(silent.pesq_wb) and "silent" in silent.reasons["pesq_wb"]
    assert silent.stoi < 0.1 and silent.mel_distance > 3  # still scored: a silent output is a real failure
    short = fidelity(x[:2000], SR, x[:2000], SR)  # 0.125 s: PESQ needs 0.25 s
    assert np.isnan(short.pesq_wb) and "1/4 of a second" in short.reasons["pesq_wb"]
    assert np.isnan(short.stoi) and "STOI" in short.reasons["stoi"]
    no_ref = fidelity(np.zeros(SR, np.float32), SR, x, SR)
    assert all(np.isnan(v) for v in no_ref.metrics().values()) and no_ref.reasons["si_sdr"] == "reference is silent"
    assert fidelity(x[:0], SR, x, SR).reasons["pesq_wb"] == "empty audio"


def test_fidelity_real_speech_self_vs_degraded(shared_data):
    import librosa

    x, sr = load_audio(shared_data / "ljspeech_subset" / "wavs" / "LJ001-0002.wav", SR)
    band = librosa.resample(librosa.resample(x, orig_sr=SR, target_sr=4000), orig_sr=4000, target_sr=SR)
    same, low = fidelity(x, sr, x, sr), fidelity(x, sr, band, sr)
    noisy = fidelity(x, sr, x + noise_like(x, 10), sr)
    print(f"LJ001-0002 self {same.metrics()}, 2 kHz band-limit {low.metrics()}, 10 dB noise {noisy.metrics()}")
    assert same.pesq_wb == pytest.approx(4.644, abs=0.01) and same.stoi == pytest.approx(1.0, abs=1e-6)
    assert low.pesq_wb < 4.0 and noisy.pesq_wb < 2.0 and low.stoi < 0.95 and noisy.stoi < 0.95
    assert noisy.si_sdr == pytest.approx(10, abs=0.5)
