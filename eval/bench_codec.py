"""Codec benchmark: our codec against Codec2, Opus and EnCodec, measured side by side in one run.

    python eval/bench_codec.py --codec runs/codec/export --out eval/reports/codec [--data ../shared/data]

Utterances: LibriSpeech test-other and the LJSpeech subset from ``--data`` (evaluation-only folders,
never trained on) plus the embedded corpus's test split (``--synth``). Every system encodes and
decodes the same clips; quality is measured at 16 kHz against the original with ``speechlm.eval``:
PESQ-WB, STOI, DNSMOS OVRL, speaker similarity (resemblyzer) and pocketsphinx WER on the LJSpeech
clips (next to the WER of the originals). Speed: encode and decode x real time on 1 and 2 threads,
parameters and peak memory, each neural codec in a fresh process. Classic codecs run through their
Debian command-line tools (``codec2``, ``opus-tools``); their bitrate is measured from the files.
Writes ``bench_codec.json``, ``bench_codec.md`` and ``bitrate_quality.png`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import soundfile as sf

REPO = Path(__file__).resolve().parents[1]


# ----------------------------------------------------------------------------------------- systems

def _resample(wav: np.ndarray, sr: int, target: int) -> np.ndarray:
    if sr == target:
        return wav
    import librosa

    return librosa.resample(wav, orig_sr=sr, target_sr=target, res_type="soxr_hq").astype(np.float32)


# c2dec's output lags c2enc's input by a fixed delay per mode, which neither tool removes (samples at
# 8 kHz). Scored unaligned, STOI (no alignment of its own, unlike PESQ) falls from 0.84 to 0.64 on
# Codec2 1200 (at 8 kHz; 0.841 and 0.652 at 16 kHz in the benchmark). Measured by eval/codec2_delay.py (eval/reports/codec/codec2_delay/): the constant shift
# with the best mean STOI on real clips, which the frame-energy cross-correlation confirms.
CODEC2_DELAY = {"3200": 160, "1200": 160, "700C": 240}


def codec2_roundtrip(wav: np.ndarray, sr: int, mode: str, tmp: Path, align: bool = True
                     ) -> tuple[np.ndarray, int, int]:
    """Returns ``(decoded, 8000, encoded bytes)`` through Debian's c2enc/c2dec, the decoder's delay
    removed (``align``) so that the output is sample-aligned with the input as ours is."""
    x = np.clip(_resample(wav, sr, 8000), -1, 1)
    raw, bits, out = tmp / "in.raw", tmp / "x.c2", tmp / "out.raw"
    (x * 32767).astype("<i2").tofile(raw)
    subprocess.run(["c2enc", mode, str(raw), str(bits)], check=True, capture_output=True)
    subprocess.run(["c2dec", mode, str(bits), str(out)], check=True, capture_output=True)
    dec = np.fromfile(out, dtype="<i2").astype(np.float32) / 32768
    if align:
        delay = CODEC2_DELAY[mode]
        dec = np.concatenate([dec[delay:], np.zeros(min(delay, len(dec)), np.float32)])
    return dec, 8000, bits.stat().st_size


def envelope_lag(reference: np.ndarray, decoded: np.ndarray, sr: int, max_ms: int = 60) -> int:
    """How many samples ``decoded`` lags ``reference``, from the cross-correlation of their 1 ms frame-RMS
    envelopes (mean removed) within +-``max_ms``: robust where the waveforms share no phase, as a
    parametric coder's do not. 1 ms resolution."""
    hop = sr // 1000

    def env(x: np.ndarray) -> np.ndarray:
        n = len(x) // hop
        e = np.sqrt(np.mean(x[: n * hop].astype(np.float64).reshape(n, hop) ** 2, axis=1))
        return e - e.mean()

    r, d = env(reference), env(decoded)
    n = min(len(r), len(d)) - 2 * max_ms
    if n <= 0:
        raise ValueError(f"signals shorter than {2 * max_ms} ms cannot be aligned")
    scores = [float(np.dot(d[max_ms + k: max_ms + k + n], r[max_ms: max_ms + n])) for k in range(-max_ms, max_ms + 1)]
    return (int(np.argmax(scores)) - max_ms) * hop


def opus_roundtrip(wav: np.ndarray, sr: int, kbps: int, tmp: Path) -> tuple[np.ndarray, int, int]:
    src, bits, out = tmp / "in.wav", tmp / "x.opus", tmp / "out.wav"
    sf.write(src, _resample(wav, sr, 16000), 16000, subtype="PCM_16")
    subprocess.run(["opusenc", "--quiet", "--bitrate", str(kbps), str(src), str(bits)], check=True)
    subprocess.run(["opusdec", "--quiet", "--rate", "16000", str(bits), str(out)], check=True)
    dec, dsr = sf.read(out, dtype="float32")
    return dec, dsr, bits.stat().st_size


def neural_roundtrip(codec, wav: np.ndarray, sr: int, reference: tuple[np.ndarray, int] | None = None
                     ) -> tuple[np.ndarray, int, int]:
    """Encode, decode. A voice-conditioned codec decodes with the voice embedding of ``reference``, another
    utterance of the same speaker (as a TTS voice prompt gives it): no side information from the clip itself."""
    codes = codec.encode(wav, sample_rate=sr)
    n = round(len(wav) * codec.sample_rate / sr)
    speaker = codec.speaker_embedding(*reference) if reference is not None else None
    dec = codec.decode(codes, n, speaker=speaker)[0].numpy()
    return dec, codec.sample_rate, math.ceil(codes.shape[-1] / codec.frame_rate * codec.bitrate / 8)


def quantize_f0(f0, bits: int, frames_per_code: int):
    """F0 ``[B, T100]`` (Hz, 0 = unvoiced) as a ``bits``-bit stream at the codec's frame rate would carry it:
    per codec frame, voiced by majority, the median voiced F0 on one of ``2**bits - 1`` log-spaced levels
    from F0_FLOOR to F0_CEIL (one more code says 'unvoiced'), held over the frame."""
    import torch

    from speechlm.codec.pitch import F0_CEIL, F0_FLOOR

    b, t = f0.shape
    pad = -t % frames_per_code
    x = torch.nn.functional.pad(f0, (0, pad)).reshape(b, -1, frames_per_code)
    voiced = (x > 0).float().mean(-1) > 0.5
    median = torch.where(x > 0, x, torch.nan).nanmedian(-1).values
    steps = 2 ** bits - 2
    lo, hi = torch.log2(torch.tensor(F0_FLOOR)), torch.log2(torch.tensor(F0_CEIL))
    q = torch.round((torch.log2(median.clamp(F0_FLOOR, F0_CEIL)) - lo) / (hi - lo) * steps)
    held = torch.where(voiced, torch.exp2(lo + q / steps * (hi - lo)), torch.zeros_like(median))
    return held.repeat_interleave(frames_per_code, -1)[:, :t]


def oracle_f0_roundtrip(codec, wav: np.ndarray, sr: int, reference: tuple[np.ndarray, int] | None = None,
                        bits: int | None = None) -> tuple[np.ndarray, int]:
    """A harmonic codec decoding with the original's F0 (WORLD, as its training's teacher forcing) in place of
    its own prediction, exact or as ``quantize_f0(bits)`` sends it: what the decoder would make if the tokens
    carried pitch as a classic codec does."""
    import torch

    from speechlm.codec.base import prepare_waveform
    from speechlm.codec.pitch import f0_frames

    if not getattr(codec, "harmonic", False):
        raise SystemExit("an oracle-F0 decode (DIR@f0) needs a codec whose vocoder has a harmonic source")
    cfg = codec.vocoder_config
    codes = codec.encode(wav, sample_rate=sr)
    x = prepare_waveform(wav, sr, codec.sample_rate)
    t100 = codes.shape[-1] * cfg.upsample
    f0 = torch.nn.functional.pad(f0_frames(x, cfg.sample_rate, cfg.hop_length), (0, t100))[:, :t100]
    if bits:
        f0 = quantize_f0(f0, bits, cfg.upsample)
    speaker = codec.speaker_embedding(*reference) if reference is not None else None
    with torch.inference_mode():
        out = codec.vocoder.synthesize(codec.tokenizer.embed(codes), speaker, f0=f0)
    return out.wav[0, : x.shape[-1]].numpy(), codec.sample_rate


# ----------------------------------------------------------------------------------------- data

EVAL_FOLDERS = ("librispeech_test_other", "ljspeech_subset")  # evaluation-only: never trained on


def load_clips(data: Path | None, synth: Path | None, per_set: int, folders: tuple[str, ...] = EVAL_FOLDERS,
               split: str = "test") -> list[dict]:
    """Up to ``per_set`` clips of each of ``folders`` under ``data`` and of the embedded corpus's ``split``
    under ``synth``, each with its text and voice reference (``_reference``)."""
    clips = []
    if data is not None:
        for folder in folders:
            meta = data / folder / "metadata.csv"
            if not meta.exists():
                continue
            rows = [line.split("|") for line in meta.read_text(encoding="utf-8").splitlines() if line]
            if folder == "librispeech_test_other":  # spread the picks over the speakers
                rows = sorted(rows, key=lambda r: (int(r[0].split("-")[2]), r[0]))
            def path_of(uid: str, wavs: Path = data / folder / "wavs") -> Path:
                return next(wavs / f"{uid}{e}" for e in (".wav", ".flac") if (wavs / f"{uid}{e}").exists())
            for uid, spk, text in rows[:per_set]:
                wav, sr = sf.read(path_of(uid), dtype="float32")
                clips.append({"set": folder, "id": uid, "speaker": spk, "text": text, "wav": wav, "sr": sr,
                              "reference": _reference(path_of, uid, [r[0] for r in rows if r[1] == spk])})
    if synth is not None and (synth / "metadata.csv").exists():
        with open(synth / "metadata.csv", encoding="utf-8") as f:
            rows = [r for r in csv.DictReader(f, delimiter="|") if r["split"] == split]
        for r in rows[:: max(1, len(rows) // per_set)][:per_set]:
            wav, sr = sf.read(synth / "wavs" / f"{r['id']}.flac", dtype="float32")
            same = [q["id"] for q in rows if q["speaker"] == r["speaker"]]
            clips.append({"set": f"synthetic_{split}", "id": r["id"], "speaker": r["speaker"], "text": r["text"],
                          "wav": wav, "sr": sr,
                          "reference": _reference(lambda u: synth / "wavs" / f"{u}.flac", r["id"], same)})
    return clips


def _reference(path_of, uid: str, same_speaker: list[str], seconds: float = 10.0) -> tuple[np.ndarray, int] | None:
    """The speaker's next utterance after ``uid`` (cyclically; first ``seconds``): the voice reference of a
    voice-conditioned codec. None when the speaker has no other utterance."""
    others = sorted(set(same_speaker) - {uid})
    if not others:
        return None
    wav, sr = sf.read(path_of(next((u for u in others if u > uid), others[0])), dtype="float32")
    return wav[: int(seconds * sr)], sr


def real_speech_clips(data: Path, per_set: int) -> list[dict]:
    """The LJSpeech subset and LibriSpeech test-other clips of ``load_clips`` (evaluation-only, real read speech)."""
    clips = load_clips(data, None, per_set)
    if not clips:
        raise SystemExit(f"no LJSpeech / LibriSpeech test-other clips under {data}")
    return clips


def roundtrip_of(spec: str, tmp: Path):
    """``clip -> (decoded, sample_rate)`` for a codec spec: a saved codec folder or 'default' (decoded with
    the speaker's next utterance as voice reference), or a classic codec, ``codec2:MODE`` / ``opus:KBPS``,
    whose output is brought to 24 kHz so that it is scored as ours is. ``DIR@f0`` / ``DIR@f0:BITS``: a
    harmonic codec with the original's F0 (``oracle_f0_roundtrip``)."""
    kind, _, mode = spec.partition(":")
    if kind in ("codec2", "opus"):
        def classic(c: dict) -> tuple[np.ndarray, int]:
            run = codec2_roundtrip if kind == "codec2" else opus_roundtrip
            dec, sr, _ = run(c["wav"], c["sr"], mode if kind == "codec2" else int(mode), tmp)
            return _resample(dec, sr, 24000), 24000
        return classic
    from speechlm.codec.registry import load_codec

    folder, _, oracle = spec.partition("@")
    codec = load_codec(folder)
    if not oracle:
        return lambda c: neural_roundtrip(codec, c["wav"], c["sr"], c["reference"])[:2]
    what, _, bits = oracle.partition(":")
    if what != "f0" or not (bits == "" or bits.isdigit()):
        raise SystemExit(f"{spec}: after '@' expected f0 or f0:BITS")
    return lambda c: oracle_f0_roundtrip(codec, c["wav"], c["sr"], c["reference"], int(bits) if bits else None)


def per_codec_rows(specs: list[str], clips: list[dict], score) -> dict[str, dict]:
    """For each codec spec (``roundtrip_of``): ``score(clip, decoded, sample_rate) -> dict`` over every clip's
    resynthesis, as ``rows`` and their means, overall (``mean``) and per set (``by_set``)."""
    from tqdm import tqdm

    results = {}
    for spec in specs:
        with tempfile.TemporaryDirectory() as tmp:
            run = roundtrip_of(spec, Path(tmp))
            rows = []
            for c in tqdm(clips, desc=spec, unit="clip"):
                dec, sr = run(c)
                rows.append({"set": c["set"], "id": c["id"], **score(c, dec, sr)})
        keys = [k for k in rows[0] if k not in ("set", "id")]
        mean = lambda rs: {k: float(np.nanmean([r[k] for r in rs])) for k in keys}  # noqa: E731
        sets = sorted({r["set"] for r in rows})
        results[spec] = {"rows": rows, "mean": mean(rows), "by_set": {s: mean([r for r in rows if r["set"] == s])
                                                                      for s in sets}}
    return results


def write_report(out: Path, name: str, report: dict, md: str) -> None:
    """``<out>/<name>.json`` and ``<out>/<name>.md``; the markdown is printed too."""
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / f"{name}.md").write_text(md, encoding="utf-8")
    print(md)


# ----------------------------------------------------------------------------------------- speed

SPEED_REPEATS = 9


def speed_worker(spec: str, threads: int, seconds: float) -> dict:
    """Runs in a fresh process: x real time of encode and decode, parameters, peak memory."""
    import torch

    torch.set_num_threads(threads)
    base_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    sys.path.insert(0, str(REPO))
    from speechlm.codec.registry import load_codec

    name, _, k = spec.partition("#")
    codec = load_codec(name, int(k) if k else None)
    model = getattr(codec, "model", codec)
    params = sum(p.numel() for p in model.parameters())
    rng = np.random.default_rng(0)
    wav = (0.1 * rng.standard_normal(int(seconds * codec.sample_rate))).astype(np.float32)
    # a voice-conditioned decoder takes an embedding made once per voice (a preset's is stored): made here, untimed
    speaker = codec.speaker_embedding(wav[: 3 * codec.sample_rate])
    codes = codec.encode(wav)  # warm-up
    codec.decode(codes, speaker=speaker)
    enc, dec = [], []
    for _ in range(SPEED_REPEATS):
        t = time.perf_counter()
        codes = codec.encode(wav)
        enc.append(time.perf_counter() - t)
        t = time.perf_counter()
        codec.decode(codes, speaker=speaker)
        dec.append(time.perf_counter() - t)
    # The fastest repeat is the figure (timeit's convention: the others were slowed by whatever else the
    # machine ran); the median is kept beside it to show the spread.
    return {"threads": threads, "params": params, "seconds": seconds, "repeats": SPEED_REPEATS,
            "decode_precision": decode_precision(codec),
            "encode_xrt": seconds / float(np.min(enc)), "decode_xrt": seconds / float(np.min(dec)),
            "encode_xrt_median": seconds / float(np.median(enc)), "decode_xrt_median": seconds / float(np.median(dec)),
            "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "baseline_rss_mb": base_rss / 1024}


def decode_precision(codec) -> str | None:
    """What our vocoder's backbone decodes in here: "fp32", "bf16", or "fp32 (no native bf16)" where the config asks
    for bf16 and this CPU would only emulate it; None for other codecs."""
    cfg = getattr(codec, "vocoder_config", None)
    if cfg is None or cfg.decode_precision == "fp32":
        return None if cfg is None else "fp32"
    return "bf16" if codec.vocoder.decodes_in_bf16(codec.device) else "fp32 (no native bf16)"


def fp32_twin(spec: str, codec) -> str | None:
    """The ``--codec`` spec of ``codec`` decoding in fp32, for a speed row beside it, when it decodes in bf16."""
    cfg = getattr(codec, "vocoder_config", None)
    return f"{spec}+fp32" if cfg is not None and cfg.decode_precision != "fp32" else None


def measure_speed(spec: str, threads: int, seconds: float = 10.0, onednn_isa: str | None = None) -> dict:
    """``speed_worker`` in a fresh process; ``onednn_isa`` holds oneDNN to an older instruction set
    (``ONEDNN_MAX_CPU_ISA``, e.g. AVX2), to measure what a CPU without the newer one gets."""
    env = dict(os.environ, **({"ONEDNN_MAX_CPU_ISA": onednn_isa} if onednn_isa else {}))
    r = subprocess.run([sys.executable, __file__, "--speed-worker", spec, "--threads", str(threads),
                        "--seconds", str(seconds)], capture_output=True, text=True, check=True, env=env)
    return json.loads(r.stdout.strip().splitlines()[-1])


def build_systems(args) -> tuple[dict[str, dict], dict[str, dict], bool]:
    """``(systems, speed-only systems, whether ours is voice-conditioned)`` for ``--codec`` / ``--systems``; a speed-only
    system is ``{"speed": spec, "nominal_kbps": ...}``;
    each system's ``run(clip, tmp) -> (decoded, sample_rate, encoded bytes or None)``."""
    sys.path.insert(0, str(REPO))
    from speechlm.codec.encodec_backend import CHECKPOINT, EncodecCodec, cache_dir
    from speechlm.codec.registry import load_codec

    ours = load_codec(args.codec)
    low = ours.with_codebooks(2)
    systems: dict[str, dict] = {
        "original": {"run": lambda c, t: (c["wav"], c["sr"], None), "nominal_kbps": None},
        f"speechlm-codec ({ours.bitrate / 1000:.2f} kbps)": {
            "run": lambda c, t: neural_roundtrip(ours, c["wav"], c["sr"], c["reference"]),
            "nominal_kbps": ours.bitrate / 1000, "speed": f"{args.codec}"},
        f"speechlm-codec ({low.bitrate / 1000:.2f} kbps)": {
            "run": lambda c, t: neural_roundtrip(low, c["wav"], c["sr"], c["reference"]),
            "nominal_kbps": low.bitrate / 1000, "speed": f"{args.codec}#2"},
    }
    if ours.voice_conditioned:  # what the voice reference is worth: the same codec decoding without one
        systems[f"speechlm-codec ({ours.bitrate / 1000:.2f} kbps), no voice reference"] = {
            "run": lambda c, t: neural_roundtrip(ours, c["wav"], c["sr"]), "nominal_kbps": ours.bitrate / 1000}
    for mode, kbps in (("3200", 3.2), ("1200", 1.2), ("700C", 0.7)):
        systems[f"Codec2 {mode}"] = {"run": (lambda m: lambda c, t: codec2_roundtrip(c["wav"], c["sr"], m, t))(mode),
                                     "nominal_kbps": kbps}
    for kbps in (6, 12):
        systems[f"Opus {kbps} kbps"] = {"run": (lambda k: lambda c, t: opus_roundtrip(c["wav"], c["sr"], k, t))(kbps),
                                        "nominal_kbps": float(kbps)}
    if (cache_dir() / "encodec" / CHECKPOINT).exists():
        enc = EncodecCodec.pretrained(1.5, download=False)
        systems["EnCodec 1.5 kbps"] = {"run": lambda c, t: neural_roundtrip(enc, c["wav"], c["sr"]),
                                       "nominal_kbps": 1.5}
    speed_only = {"EnCodec 24 kHz arch. (1.5 kbps, random weights)": {"speed": "encodec_24khz:random",
                                                                        "nominal_kbps": 1.5}}
    twin = fp32_twin(args.codec, ours)
    if twin:  # the same codec decoding in fp32: the speed it gains
        speed_only[f"speechlm-codec ({ours.bitrate / 1000:.2f} kbps), fp32 decode"] = {
            "speed": twin, "nominal_kbps": ours.bitrate / 1000}
    if args.systems:
        wanted = [w for w in args.systems.split(",") if w]
        systems = {k: v for k, v in systems.items() if k == "original" or any(w in k for w in wanted)}
        speed_only = {k: v for k, v in speed_only.items() if any(w in k for w in wanted)}
    return systems, speed_only, ours.voice_conditioned


def score_system(args, name: str, clips: list[dict], threads: int, systems: dict | None = None) -> list[dict]:
    """One system's quality rows over ``clips`` (runs in a worker process when ``--jobs`` > 1)."""
    import torch

    sys.path.insert(0, str(REPO))
    from speechlm.eval.asr import get_asr
    from speechlm.eval.dnsmos import get_dnsmos
    from speechlm.eval.fidelity import fidelity
    from speechlm.eval.speaker import get_speaker_encoder
    from speechlm.eval.wer import score_text

    torch.set_num_threads(threads)
    run = (systems or build_systems(args)[0])[name]["run"]
    asr, sim_enc, dnsmos = get_asr(), get_speaker_encoder(), get_dnsmos()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for c in clips:
            dec, dsr, nbytes = run(c, Path(tmp))
            f = fidelity(c["wav"], c["sr"], dec, dsr)
            row = {"system": name, "set": c["set"], "id": c["id"], "pesq_wb": f.pesq_wb, "stoi": f.stoi,
                   "dnsmos_ovrl": dnsmos(dec, dsr).ovrl,
                   "sim": sim_enc.similarity(dec, dsr, c["wav"], c["sr"]),
                   "kbps": nbytes * 8 / (len(c["wav"]) / c["sr"]) / 1000 if nbytes else None}
            if c["set"] == "ljspeech_subset":
                row["wer_counts"] = score_text(c["text"], asr.transcribe(dec, dsr)).__dict__
            rows.append(row)
    return rows


# ----------------------------------------------------------------------------------------- main

def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--codec", default="default", help="our codec: default or a saved codec folder")
    ap.add_argument("--out", type=Path, default=REPO / "eval" / "reports" / "codec")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("SPEECHLM_SHARED_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--synth", type=Path, default=REPO / "data" / "synth_default")
    ap.add_argument("--per-set", type=int, default=16)
    ap.add_argument("--systems", default=None,
                    help="only systems whose name contains one of these comma-separated texts (e.g. speechlm, for a "
                         "quick check of a checkpoint; 'speechlm-codec (1.00,Codec2 1200' for ours beside the bar)")
    ap.add_argument("--no-speed", action="store_true", help="skip the speed measurements")
    ap.add_argument("--jobs", type=int, default=1,
                    help="score this many systems at once, one process and one thread each (quality only: "
                         "speed is always measured afterwards, one process at a time)")
    ap.add_argument("--speed-only", action="store_true",
                    help="only the speed part (ours and the EnCodec architecture), to speed.json / speed.md in --out")
    ap.add_argument("--onednn-isa", default=None,
                    help="with --speed-only: hold oneDNN to this instruction set (ONEDNN_MAX_CPU_ISA, e.g. AVX2 or "
                         "AVX512_CORE), to measure what a CPU without the newer ones gets")
    ap.add_argument("--speed-worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--threads", type=int, default=1, help=argparse.SUPPRESS)
    ap.add_argument("--seconds", type=float, default=10.0, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.speed_worker:
        print(json.dumps(speed_worker(args.speed_worker, args.threads, args.seconds)))
        return 0
    if args.speed_only:
        return speed_report(args)

    for tool in ("c2enc", "c2dec", "opusenc", "opusdec"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} not found: apt-get install codec2 opus-tools (make setup does this)")
    clips = load_clips(args.data if args.data.exists() else None, args.synth, args.per_set)
    if not clips:
        sys.exit("no evaluation audio found: pass --data (../shared/data) and/or --synth")
    systems, speed_only, voice_conditioned = build_systems(args)
    t0 = time.time()
    if args.jobs > 1:  # one system a worker, one thread each; rows kept in the systems' order
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        with ProcessPoolExecutor(args.jobs, mp_context=multiprocessing.get_context("spawn")) as pool:
            futures = {name: pool.submit(score_system, args, name, clips, 1) for name in systems}
            for name, fut in futures.items():
                fut.add_done_callback(lambda _, n=name: print(f"  {n}: done ({time.time() - t0:.0f} s)",
                                                              file=sys.stderr))
            rows = [r for fut in futures.values() for r in fut.result()]
    else:
        rows = []
        for name in systems:
            rows += score_system(args, name, clips, 2, systems)
            print(f"  {name}: done ({time.time() - t0:.0f} s)", file=sys.stderr)
    from speechlm.eval.wer import corpus_wer

    def mean(xs):
        xs = [x for x in xs if x is not None and not math.isnan(x)]
        return float(np.mean(xs)) if xs else None

    table = []
    for name, s in list(systems.items()) + list(speed_only.items()):
        mine = [r for r in rows if r["system"] == name]
        entry = {"system": name, "nominal_kbps": s.get("nominal_kbps"), "measured_kbps": mean([r["kbps"] for r in mine])}
        if mine:
            from speechlm.eval.wer import ErrorCounts

            wers = [ErrorCounts(**r["wer_counts"]) for r in mine if "wer_counts" in r]
            entry.update({k: mean([r[k] for r in mine]) for k in ("pesq_wb", "stoi", "dnsmos_ovrl", "sim")})
            entry["wer_lj"] = corpus_wer(wers) if wers else None
        spec = s.get("speed")
        if spec and not args.no_speed:
            entry["speed"] = [measure_speed(spec, n) for n in (1, 2)]
        table.append(entry)

    report = {"command": "python eval/bench_codec.py " + " ".join(sys.argv[1:]),
              "machine": machine(),
              "clips": {s: sum(c["set"] == s for c in clips) for s in sorted({c["set"] for c in clips})},
              "seconds": time.time() - t0, "systems": table, "rows": rows,
              "voice_reference": ("our decoder is voice-conditioned: it gets the voice embedding of the speaker's next "
                                  "utterance in the set (never the coded clip), as a TTS voice prompt gives it; the "
                                  "'no voice reference' row decodes without one") if voice_conditioned else None}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "bench_codec.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    md = markdown(report)
    (args.out / "bench_codec.md").write_text(md, encoding="utf-8")
    plot(table, args.out / "bitrate_quality.png")
    print(md)
    return 0


ISA_FLAGS = ("amx_tile", "avx512_bf16", "avx512f", "avx2")  # /proc/cpuinfo flags, the newest first


def machine() -> dict:
    """The CPU the speed rows ran on: its model, cores, and the newest vector instruction set it has (speed
    depends on it: a bf16 decoder needs AVX512-BF16 or AMX, see ``speechlm.vocoder.model.native_bf16``)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:  # not Linux: the model from platform, no flags
        pass
    return {"cpu": model, "cores": os.cpu_count(), "isa": next((f for f in ISA_FLAGS if f in flags), None)}


def machine_line(m: dict) -> str:
    """``2 cores, AMD EPYC, avx2``: the heading of a report (older reports hold no ISA)."""
    return ", ".join(str(x) for x in (f"{m['cores']} cores", m.get("cpu"), m.get("isa")) if x)


def speed_report(args) -> int:
    """``--speed-only``: the speed rows of the benchmark (1 and 2 threads, fresh processes) and their summary."""
    sys.path.insert(0, str(REPO))
    from speechlm.codec.registry import load_codec

    specs = {f"speechlm-codec ({args.codec})": args.codec}
    twin = fp32_twin(args.codec, load_codec(args.codec))
    if twin:
        specs[f"speechlm-codec ({args.codec}), fp32 decode"] = twin
    specs["EnCodec 24 kHz arch. (1.5 kbps, random weights)"] = "encodec_24khz:random"
    table = [{"system": name, "speed": [measure_speed(spec, n, onednn_isa=args.onednn_isa) for n in (1, 2)]}
             for name, spec in specs.items()]
    report = {"command": "python eval/bench_codec.py " + " ".join(sys.argv[1:]),
              "machine": machine(), "onednn_isa": args.onednn_isa,
              "systems": table}
    isa = ["", f"oneDNN held to {args.onednn_isa} (ONEDNN_MAX_CPU_ISA): a bf16 decoder runs emulated."] \
        if args.onednn_isa else []
    md = "\n".join([f"# Codec speed ({machine_line(report['machine'])})", "", f"Command: `{report['command']}`",
                    *isa, *speed_summary(table)]) + "\n"
    write_report(args.out, "speed", report, md)
    return 0


def _f(x, fmt):
    return "–" if x is None else format(x, fmt)


def markdown(r: dict) -> str:
    lines = [f"# Codec benchmark ({machine_line(r['machine'])})", "", f"Command: `{r['command']}`", "",
             "Clips: " + ", ".join(f"{k} {v}" for k, v in r["clips"].items()) + "; quality at 16 kHz vs the original.",
             *([f"Voice reference: {r['voice_reference']}."] if r.get("voice_reference") else []),
             "", "| system | kbps (nominal / measured) | PESQ-WB | STOI | DNSMOS OVRL | SIM | WER % (LJ) | "
                 "encode xRT 1t / 2t | decode xRT 1t / 2t | params | peak RSS MB |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for s in r["systems"]:
        sp = s.get("speed") or []
        speed = lambda k: " / ".join(_f(x[k], ".0f") for x in sp) if sp else "–"  # noqa: E731
        lines.append(
            f"| {s['system']} | {_f(s['nominal_kbps'], '.2f')} / {_f(s['measured_kbps'], '.2f')} | "
            f"{_f(s.get('pesq_wb'), '.2f')} | {_f(s.get('stoi'), '.3f')} | {_f(s.get('dnsmos_ovrl'), '.2f')} | "
            f"{_f(s.get('sim'), '.3f')} | {_f(None if s.get('wer_lj') is None else 100 * s['wer_lj'], '.1f')} | "
            f"{speed('encode_xrt')} | {speed('decode_xrt')} | "
            f"{_f(sp[0]['params'] / 1e6, '.1f') + 'M' if sp else '–'} | {_f(sp[-1]['peak_rss_mb'], '.0f') if sp else '–'} |")
    return "\n".join(lines + speed_summary(r["systems"])) + "\n"


def combined_xrt(speed: dict) -> float:
    """Encode then decode of the same audio, as x real time: 1 / (1 / encode + 1 / decode)."""
    return 1.0 / (1.0 / speed["encode_xrt"] + 1.0 / speed["decode_xrt"])


def speed_summary(systems: list[dict]) -> list[str]:
    """Markdown lines: each timed system's encode + decode x real time per thread count, and the ratio to
    the EnCodec architecture's measured in the same run."""
    timed = [s for s in systems if s.get("speed")]
    reference = next((s for s in timed if s["system"].startswith("EnCodec")), None)
    if not timed:
        return []
    first = timed[0]["speed"][0]
    repeats, seconds = first.get("repeats"), first.get("seconds", 10.0)
    how = f"the fastest of {repeats} repeats (medians in the JSON)" if repeats else "the median of 3 repeats"
    lines = ["", f"Speed: {seconds:g} s of audio, {how}; encode + decode "
                 "together, x real time" + (", and its ratio to the EnCodec architecture's:" if reference else ":"), ""]
    for s in timed:
        parts = []
        for sp in s["speed"]:
            part = f"{combined_xrt(sp):.0f}x on {sp['threads']} thread{'s' if sp['threads'] > 1 else ''}"
            ref = next((x for x in (reference or {}).get("speed", []) if x["threads"] == sp["threads"]), None)
            if ref is not None and s is not reference:
                part += f" ({combined_xrt(sp) / combined_xrt(ref):.1f}x EnCodec)"
            parts.append(part)
        precision = s["speed"][0].get("decode_precision")
        lines.append(f"- {s['system']}" + (f" [decoder in {precision}]" if precision else "") + ": " + ", ".join(parts))
    return lines


def plot(table: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    for ax, key, label in ((axes[0], "pesq_wb", "PESQ-WB"), (axes[1], "stoi", "STOI")):
        for s in table:
            kbps = s.get("measured_kbps") or s.get("nominal_kbps")
            if s.get(key) is None or kbps is None:
                continue
            ax.scatter(kbps, s[key], label=s["system"])
            ax.annotate(s["system"].split(" (")[0], (kbps, s[key]), fontsize=7, xytext=(3, 3),
                        textcoords="offset points")
        ax.set_xscale("log")
        ax.set_xlabel("bitrate (kbit/s, log)")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
    fig.suptitle("Bitrate vs quality (16 kHz, vs original)")
    fig.tight_layout()
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    sys.exit(main())
