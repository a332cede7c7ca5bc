"""EnCodec 24 kHz (Défossez et al. 2022) as a :class:`Codec`, through the ``encodec`` package.

Pretrained weights are fetched only when a user asks for them (``EncodecCodec.pretrained()``), into
``$SPEECHLM_CACHE`` (default ``~/.cache/speechlm``), verified against the checksum in their file name
and loaded with ``torch.load(weights_only=True)``: a checkpoint can only hold tensors, never code.
Tests build the same architecture with random weights (``EncodecCodec.random()``).
"""

from __future__ import annotations

import hashlib
import os
import pickle
from pathlib import Path

import torch
from encodec import EncodecModel

from speechlm.codec.base import Codec, CodecInfo
from speechlm.errors import SpeechLMError

CHECKPOINT = "encodec_24khz-d7cc33bc.th"
URL = "https://dl.fbaipublicfiles.com/encodec/v0/" + CHECKPOINT
BANDWIDTHS = (1.5, 3.0, 6.0, 12.0, 24.0)  # kbit/s: 2, 4, 8, 16 or 32 codebooks at 75 Hz


def cache_dir() -> Path:
    return Path(os.environ.get("SPEECHLM_CACHE", Path.home() / ".cache" / "speechlm"))


def verify_checksum(path: Path) -> None:
    """EnCodec checkpoints carry the first hex digits of their SHA-256 in the name (``name-<sha>.th``)."""
    expected = path.stem.rsplit("-", 1)[-1]
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    if not h.hexdigest().startswith(expected):
        raise SpeechLMError(f"{path}: checksum mismatch (expected sha256 {expected}..., got {h.hexdigest()[:8]}...); "
                            "delete the file and download it again")


class EncodecCodec(Codec):
    def __init__(self, model: EncodecModel, bandwidth: float = 1.5, weights: str = "pretrained"):
        if bandwidth not in BANDWIDTHS:
            raise SpeechLMError(f"EnCodec bandwidth must be one of {BANDWIDTHS} kbit/s, got {bandwidth}")
        model.set_target_bandwidth(bandwidth)
        self.model = model.eval()
        n_q = model.quantizer.get_num_quantizers_for_bandwidth(model.frame_rate, bandwidth)
        self.info = CodecInfo(name="encodec_24khz", version=f"0.1.1-{weights}", sample_rate=model.sample_rate,
                              frame_rate=float(model.frame_rate), n_codebooks=n_q,
                              codebook_size=model.quantizer.bins)

    @classmethod
    def random(cls, bandwidth: float = 1.5, seed: int = 0) -> "EncodecCodec":
        """The EnCodec 24 kHz architecture with random weights (tests, speed benchmarks)."""
        torch.manual_seed(seed)
        return cls(EncodecModel.encodec_model_24khz(pretrained=False), bandwidth, weights="random")

    @classmethod
    def from_checkpoint(cls, path: str | Path, bandwidth: float = 1.5, verify: bool = True) -> "EncodecCodec":
        path = Path(path)
        if not path.exists():
            raise SpeechLMError(f"{path}: EnCodec checkpoint not found")
        if verify:
            verify_checksum(path)
        model = EncodecModel.encodec_model_24khz(pretrained=False)
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
            model.load_state_dict(state)
        except pickle.UnpicklingError as e:  # weights_only refused something that is not plain tensors
            raise SpeechLMError(f"{path}: refused, the checkpoint holds more than tensors "
                                f"({str(e).splitlines()[0]})") from None
        except (RuntimeError, KeyError, EOFError) as e:
            raise SpeechLMError(f"{path}: not an EnCodec 24 kHz checkpoint ({str(e).splitlines()[0]})") from None
        return cls(model, bandwidth)

    @classmethod
    def pretrained(cls, bandwidth: float = 1.5, download: bool = True) -> "EncodecCodec":
        """Meta's released weights; downloaded once into the cache when ``download`` is true."""
        path = cache_dir() / "encodec" / CHECKPOINT
        if not path.exists():
            if not download:
                raise SpeechLMError(f"{path}: EnCodec weights are not cached; allow the download or place the "
                                    f"file there (from {URL})")
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".part")
            try:
                torch.hub.download_url_to_file(URL, str(tmp), progress=True)
            except OSError as e:
                raise SpeechLMError(f"could not download EnCodec weights from {URL}: {e}") from None
            os.replace(tmp, path)
        return cls.from_checkpoint(path, bandwidth)

    def _encode(self, wav: torch.Tensor) -> torch.Tensor:
        frames = self.model.encode(wav[:, None])  # one frame: the 24 kHz model has no segmenting
        return torch.cat([codes for codes, _ in frames], dim=-1)

    def _decode(self, codes: torch.Tensor, speaker: torch.Tensor | None = None) -> torch.Tensor:
        return self.model.decode([(codes, None)])[:, 0]
