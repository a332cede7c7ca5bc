"""Token files: codes of one or many utterances plus the identity of the codec that made them.

One safetensors file holds ``codes`` (int16, ``[K, sum of T]``, utterances concatenated in time)
and ``offsets`` (``[N + 1]``); its metadata names the codec (name, version, sample rate, frame rate,
codebooks, codebook size), the utterance ids and their sample counts. Loading tokens with a
different codec than the one that made them is an error, not silent garbage.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, safe_open, save_file

from speechlm.codec.base import CodecInfo
from speechlm.errors import SpeechLMError
from speechlm.io import atomic_path

FORMAT, FORMAT_VERSION = "speechlm-tokens", "1"


class CodecMismatchError(SpeechLMError):
    """Tokens were made by another codec than the one asked to use them."""


@dataclass
class TokenFile:
    info: CodecInfo
    ids: list[str]
    codes: list[torch.Tensor]  # each [K, T]
    num_samples: list[int]

    def __len__(self) -> int:
        return len(self.ids)

    def get(self, utt_id: str) -> tuple[torch.Tensor, int]:
        i = self.ids.index(utt_id)
        return self.codes[i], self.num_samples[i]


def save_tokens(path: str | Path, info: CodecInfo, ids: list[str], codes: list[torch.Tensor],
                num_samples: list[int]) -> Path:
    if not (len(ids) == len(codes) == len(num_samples)):
        raise SpeechLMError("ids, codes and num_samples must have the same length")
    if len(set(ids)) != len(ids):
        raise SpeechLMError("duplicate utterance ids in one token file")
    lengths = [c.shape[-1] for c in codes]
    offsets = torch.tensor([0, *torch.tensor(lengths).cumsum(0).tolist()], dtype=torch.int64)
    flat = torch.cat([c.to(torch.int16) for c in codes], dim=-1) if codes else torch.zeros(info.n_codebooks, 0,
                                                                                        dtype=torch.int16)
    meta = {"format": FORMAT, "format_version": FORMAT_VERSION, "codec": json.dumps(info.to_dict()),
            "ids": json.dumps(ids), "num_samples": json.dumps([int(n) for n in num_samples])}
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({"codes": flat.contiguous(), "offsets": offsets}, str(tmp), metadata=meta)
    return path


def read_token_info(path: str | Path) -> CodecInfo:
    """The codec identity recorded in a token file, without loading the codes."""
    path = Path(path)
    if not path.exists():
        raise SpeechLMError(f"{path}: token file not found")
    try:
        with safe_open(str(path), "pt") as f:
            meta = f.metadata() or {}
    except (SafetensorError, OSError) as e:
        raise SpeechLMError(f"{path}: not a token file ({e})") from None
    if meta.get("format") != FORMAT or meta.get("format_version") != FORMAT_VERSION:
        raise SpeechLMError(f"{path}: not a {FORMAT} v{FORMAT_VERSION} file")
    return CodecInfo(**json.loads(meta["codec"]))


def check_same_codec(found: CodecInfo, expected: CodecInfo, where: str) -> None:
    diffs = [f"{k}: file has {a!r}, codec has {b!r}" for k, a, b in
             ((k, getattr(found, k), getattr(expected, k)) for k in found.to_dict()) if a != b]
    if diffs:
        raise CodecMismatchError(f"{where}: tokens were made by a different codec ({'; '.join(diffs)})")


def load_tokens(path: str | Path, expect: CodecInfo | None = None) -> TokenFile:
    path = Path(path)
    info = read_token_info(path)
    if expect is not None:
        check_same_codec(info, expect, str(path))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata()
    tensors = load_file(str(path))
    off = tensors["offsets"].tolist()
    codes = [tensors["codes"][:, a:b].long() for a, b in zip(off, off[1:])]
    return TokenFile(info, json.loads(meta["ids"]), codes, json.loads(meta["num_samples"]))
