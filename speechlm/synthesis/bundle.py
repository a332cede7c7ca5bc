"""The pipeline folder: everything synthesis needs in one directory, checked for consistency when loaded.

Layout (``FORMAT`` version ``FORMAT_VERSION``)::

    pipeline.json        format + version, the codec (a subfolder or an EnCodec spec) and its identity
                         {name, version, sample_rate, frame_rate, n_codebooks, codebook_size}, the LM
                         subfolder, the tokenizer file and its content hash, language + G2P backend,
                         synthesis defaults (sampling, length guard, pauses), the default voice
    codec/               NeuralCodec.save_pretrained: codec.json + codec.safetensors (absent for EnCodec)
    lm/                  speechlm.lm.export's folder: lm.json (LMConfig, TokenLayout, codec, checksum) +
                         lm.safetensors
    tokenizer.json       the text tokenizer (speechlm.text.TextTokenizer)
    voices.json          preset name -> {speaker, phonemes, text, frames}
    voices.safetensors   preset name -> voice-prompt codes [K, T] (int64)
    MODEL_CARD.md        what the parts are and how to use them

Only JSON and safetensors are read: nothing is unpickled. Loading checks that the parts belong
together (codec identity, LM layout vs tokenizer and codec, tokenizer hash, voice codes vs codec) and
raises :class:`BundleError` naming the mismatch.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from speechlm.codec.base import Codec, CodecInfo
from speechlm.errors import SpeechLMError
from speechlm.io import atomic_path, write_json, write_text
from speechlm.lm.export import CONFIG as LM_CONFIG
from speechlm.lm.export import export_lm, lm_meta, load_lm
from speechlm.lm.layout import TokenLayout
from speechlm.lm.model import SIZES, SpeechLM

FORMAT, FORMAT_VERSION = "speechlm-pipeline", 1
MANIFEST, TOKENIZER, CARD = "pipeline.json", "tokenizer.json", "MODEL_CARD.md"
VOICES_INDEX, VOICES_WEIGHTS = "voices.json", "voices.safetensors"


class BundleError(SpeechLMError):
    """A pipeline folder that is missing a part, or whose parts do not belong together."""


@dataclass
class SynthesisDefaults:
    """Defaults stored with a pipeline; every one can be overridden per call."""

    temperature: float = 1.0
    top_k: int = 0
    top_p: float = 0.9
    repetition_window: int = 10  # VALL-E 2 repetition-aware sampling
    repetition_ratio: float = 0.1
    # classifier-free guidance (speechlm.lm.generate): 1 = off; > 1 needs an LM trained with data.text_dropout
    cfg_scale: float = 1.0
    # best of N (speechlm.lm.rerank): sample this many takes of each piece, keep the one the LM's asr reads best
    candidates: int = 1
    min_seconds_per_token: float = 0.02  # length guard (see speechlm.lm.generate.length_guard)
    max_seconds_per_token: float = 0.25
    slack_seconds: float = 1.0
    # an LM trained with guided attention (lm.json's guided_attention): <eos> waits until its aligned head
    # reads within align_end_tokens of the text's end, and is forced align_end_seconds after (0: no guard)
    align_end_tokens: int = 3
    align_end_seconds: float = 0.5
    max_voice_seconds: float = 6.0  # reference audio beyond this is cut (prompt length = cost per step)
    sentence_pause: float = 0.15  # seconds of silence between sentences
    piece_pause: float = 0.05  # between the pieces of a sentence too long for one generation
    fade: float = 0.01  # seconds of fade-in/out at each piece's edges (no clicks at the joins)
    # what Pipeline.from_pretrained(quantize="auto") does on CPU: int8 measured 1.3-3x faster
    # (eval/reports/pipeline); set null in pipeline.json if a quality check finds it costs
    cpu_quantize: str | None = "int8"


@dataclass
class Voice:
    """A voice prompt: codes of a short utterance of the wanted speaker and what it says."""

    codes: torch.Tensor  # [K, T]
    phonemes: str  # the front-end's symbols for its transcript ("" when unknown)
    speaker: str = ""
    text: str = ""  # the transcript as written, when known
    name: str = ""  # preset name, or the reference file
    transcript_source: str = "given"  # given | asr | preset
    # the codec's voice embedding of the reference audio [1, D], for a voice-conditioned codec's decoder
    embedding: torch.Tensor | None = None


# ------------------------------------------------------------------------------------------ LM

def save_lm(model: SpeechLM, layout: TokenLayout, codec: CodecInfo, out_dir: Path, meta: dict | None = None) -> None:
    """The LM in ``speechlm.lm.export``'s format; ``meta`` (from loading) keeps its preset name, step,
    lineage (``init_from``, ``total_steps``) and guided heads (``guided_attention``: generation follows them)."""
    meta = meta or {}
    size = meta.get("size") or next((name for name, dims in SIZES.items() if dims == (
        model.cfg.dim, model.cfg.n_layers, model.cfg.n_heads, model.cfg.n_kv_heads)), "custom")
    kept = {k: meta[k] for k in ("init_from", "total_steps", "guided_attention") if k in meta}
    export_lm(out_dir, model, {**lm_meta(size, model, layout, codec, meta.get("step", 0)), **kept})


def load_lm_checked(path: Path, codec: CodecInfo) -> tuple[SpeechLM, TokenLayout, dict]:
    """The LM folder of a pipeline, checked against the codec whose tokens it was trained on (when recorded)."""
    if not (path / LM_CONFIG).exists():
        raise BundleError(f"{path / LM_CONFIG}: not found")
    model, layout, meta = load_lm(path)
    trained = meta.get("codec")
    if trained:
        diff = [f"{k}: {trained.get(k)!r} vs {v!r}" for k, v in codec.to_dict().items() if trained.get(k) != v]
        if diff:
            raise BundleError(f"{path}: the LM was trained on tokens of another codec than the pipeline's "
                              f"(LM vs codec: {'; '.join(diff)})")
    return model, layout, meta


# ------------------------------------------------------------------------------------------ voices

EMBEDDING_KEY = "embedding:"  # voices.safetensors: "<name>" holds the codes, "embedding:<name>" the voice embedding


def save_voices(out_dir: Path, voices: dict[str, Voice], voice_encoder: str | None = None) -> None:
    """``voice_encoder``: the codec's ``voice_encoder_hash``, recorded with the embeddings it made."""
    tensors = {name: v.codes.to(torch.int64).contiguous().cpu() for name, v in voices.items()}
    tensors.update({EMBEDDING_KEY + name: v.embedding.float().contiguous().cpu() for name, v in voices.items()
                    if v.embedding is not None})
    metadata = {"format": "speechlm-voices"}
    if voice_encoder and any(k.startswith(EMBEDDING_KEY) for k in tensors):
        metadata["voice_encoder"] = voice_encoder
    with atomic_path(out_dir / VOICES_WEIGHTS) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    write_json(out_dir / VOICES_INDEX, {name: {"speaker": v.speaker, "phonemes": v.phonemes, "text": v.text,
                                               "frames": int(v.codes.shape[-1])} for name, v in voices.items()})


def load_voices(path: Path, info: CodecInfo, voice_encoder: str | None = None) -> dict[str, Voice]:
    """``voice_encoder``: the loading codec's ``voice_encoder_hash``; stored embeddings made by another
    encoder (a vocoder trained on after the folder was built) are an error, not a silent mismatch."""
    index_file, weights = path / VOICES_INDEX, path / VOICES_WEIGHTS
    if not index_file.exists():
        return {}
    index = _read_json(index_file)
    codes, made_with = {}, None
    if weights.exists():  # one read: the tensors and the metadata saying which encoder made the embeddings
        with safe_open(str(weights), "pt") as f:
            codes = {k: f.get_tensor(k) for k in f.keys()}
            made_with = (f.metadata() or {}).get("voice_encoder")
    if made_with and voice_encoder and made_with != voice_encoder:
        raise BundleError(f"{weights}: the voice embeddings were made by another voice encoder ({made_with[:19]}...) "
                          f"than this codec's ({voice_encoder[:19]}...); remake them with this codec "
                          f"(python data_recipes/revoice.py --pipeline {path} when only the vocoder changed, "
                          "else speechlm pipeline build --codec DIR --voices PRESETS.jsonl ...)")
    voices = {}
    for name, meta in index.items():
        if name not in codes:
            raise BundleError(f"{weights}: voice {name!r} listed in {VOICES_INDEX} has no codes")
        c = codes[name]
        if c.dim() != 2 or c.shape[0] != info.n_codebooks or (c.numel() and int(c.max()) >= info.codebook_size):
            raise BundleError(f"{weights}: voice {name!r} codes {tuple(c.shape)} do not fit the codec "
                              f"({info.n_codebooks} codebooks of {info.codebook_size})")
        voices[name] = Voice(c, meta.get("phonemes", ""), meta.get("speaker", ""), meta.get("text", ""), name,
                             "preset", codes.get(EMBEDDING_KEY + name))
    return voices


# ------------------------------------------------------------------------------------------ codec

def codec_entry(codec: Codec) -> dict:
    """How pipeline.json names the codec: a subfolder (our codec) or an EnCodec spec for load_codec."""
    from speechlm.codec.neural import NeuralCodec

    if isinstance(codec, NeuralCodec):
        return {"folder": "codec", "info": codec.info.to_dict()}
    if codec.info.name == "encodec_24khz":
        random = ":random" if codec.info.version.endswith("random") else ""
        return {"spec": f"encodec_24khz{random}@{codec.bitrate / 1000:g}", "info": codec.info.to_dict()}
    raise BundleError(f"cannot save a pipeline with codec {codec.info.name!r}: not a NeuralCodec or EnCodec")


def load_codec_entry(path: Path, entry: dict) -> Codec:
    from speechlm.codec.neural import NeuralCodec
    from speechlm.codec.registry import load_codec

    want = entry.get("info") or {}
    if "folder" in entry:
        codec = NeuralCodec.from_pretrained(path / entry["folder"], want.get("n_codebooks"))
    elif "spec" in entry:
        codec = load_codec(entry["spec"])
    else:
        raise BundleError(f"{path / MANIFEST}: 'codec' needs a 'folder' or a 'spec'")
    have = codec.info.to_dict()
    diff = [f"{k}: pipeline.json says {want.get(k)!r}, the codec has {have[k]!r}" for k in have if want.get(k) != have[k]]
    if diff:
        raise BundleError(f"{path}: the codec does not match pipeline.json:\n  " + "\n  ".join(diff))
    return codec


# ------------------------------------------------------------------------------------------ checks

def check_parts(where: str, codec: Codec, layout: TokenLayout, tokenizer, tokenizer_hash: str | None,
                symbol_kind: str) -> None:
    """The LM's layout fits the tokenizer and the codec, and the tokenizer is the one the LM was built on."""
    problems = []
    if tokenizer_hash is not None and tokenizer.content_hash != tokenizer_hash:
        problems.append(f"{TOKENIZER} hashes to {tokenizer.content_hash}, pipeline.json expects {tokenizer_hash}")
    if layout.text_vocab != tokenizer.vocab_size:
        problems.append(f"LM text_vocab {layout.text_vocab} != tokenizer vocab_size {tokenizer.vocab_size}")
    if layout.n_codebooks != codec.n_codebooks:
        problems.append(f"LM n_codebooks {layout.n_codebooks} != codec n_codebooks {codec.n_codebooks}")
    if layout.codebook_size != codec.codebook_size:
        problems.append(f"LM codebook_size {layout.codebook_size} != codec codebook_size {codec.codebook_size}")
    if tokenizer.kind != symbol_kind:
        problems.append(f"tokenizer holds {tokenizer.kind} symbols but the front-end makes {symbol_kind} symbols")
    if problems:
        raise BundleError(f"{where}: parts do not belong together:\n  " + "\n  ".join(problems))


def read_manifest(path: Path) -> dict:
    if not path.is_dir():
        raise BundleError(f"{path}: not a folder (expected a pipeline folder with {MANIFEST})")
    manifest = _read_json(path / MANIFEST, FORMAT)
    if manifest.get("format_version") != FORMAT_VERSION:
        raise BundleError(f"{path / MANIFEST}: format version {manifest.get('format_version')!r} is not supported "
                          f"(this speechlm reads {FORMAT_VERSION})")
    for key in ("codec", "lm", "tokenizer", "frontend"):
        if not isinstance(manifest.get(key), dict):
            raise BundleError(f"{path / MANIFEST}: field {key!r} is missing or not an object")
    return manifest


def defaults_from(manifest: dict, path: Path) -> SynthesisDefaults:
    return with_defaults(SynthesisDefaults(), manifest.get("defaults") or {}, str(path / MANIFEST))


def with_defaults(base: SynthesisDefaults, changes: dict, where: str) -> SynthesisDefaults:
    """``base`` with ``changes`` applied; a field SynthesisDefaults does not have is a BundleError naming ``where``."""
    known = {f.name for f in dataclasses.fields(SynthesisDefaults)}
    unknown = set(changes) - known
    if unknown:
        raise BundleError(f"{where}: unknown defaults {sorted(unknown)}; known: {sorted(known)}")
    return dataclasses.replace(base, **changes)


def _read_json(path: Path, fmt: str | None = None) -> dict:
    if not path.exists():
        raise BundleError(f"{path}: not found")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise BundleError(f"{path}: invalid JSON ({e})") from None
    if not isinstance(data, dict) or (fmt is not None and data.get("format") != fmt):
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise BundleError(f"{path}: not a {fmt} file (format {found!r})")
    return data


# ------------------------------------------------------------------------------------------ writing

def write_folder(out: str | os.PathLike, write) -> Path:
    """Call ``write(tmp_dir)`` on a fresh folder next to ``out``, then move it to ``out``.

    A reader never sees a half-written pipeline: the new folder appears by rename. An existing
    ``out`` is moved aside first and deleted after (two renames; ``out`` is briefly absent).
    """
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        write(tmp)
        old = None
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old / out.name)
        os.replace(tmp, out)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def model_card(manifest: dict, lm: SpeechLM, voices: dict[str, Voice], note: str = "") -> str:
    info = manifest["codec"]["info"]
    cfg = lm.cfg
    voice_rows = "\n".join(f"| `{n}` | {v.speaker or '-'} | {v.codes.shape[-1] / info['frame_rate']:.1f} s | "
                           f"{v.text or v.phonemes} |" for n, v in voices.items()) or "| (none) | | | |"
    return f"""# speechlm pipeline

{note}

Load it with `speechlm.Pipeline.from_pretrained("<this folder>")`, or `speechlm say "Hello." -o hello.wav
--model <this folder>`. Layout and checks: `speechlm/synthesis/bundle.py`.

| part | what |
|---|---|
| codec | {info['name']} v{info['version']}: {info['n_codebooks']} codebooks x {info['codebook_size']} codes at \
{info['frame_rate']:g} Hz, {info['sample_rate']} Hz audio |
| LM | {cfg.n_layers} layers, dim {cfg.dim}, {cfg.n_heads} heads, {lm.num_params() / 1e6:.1f}M parameters, \
max {cfg.max_seq_len} steps |
| text | language `{manifest['frontend']['language']}`, G2P `{manifest['frontend']['backend']}`, tokenizer \
`{manifest['tokenizer']['hash'][:19]}...` |

## Voices

| preset | speaker | prompt | transcript |
|---|---|---|---|
{voice_rows}
"""


def write_card(path: Path, text: str) -> None:
    write_text(path / CARD, text)
