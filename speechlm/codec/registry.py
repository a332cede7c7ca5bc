"""Resolve ``--codec`` specs: ``default`` (bundled), a saved codec folder, or ``encodec_24khz[@kbps]``; ours with
``+fp32`` / ``+bf16`` to override its vocoder's decode precision (``speechlm.vocoder.model``)."""

from __future__ import annotations

from pathlib import Path

from speechlm.codec.base import Codec
from speechlm.errors import SpeechLMError

BUNDLED = Path(__file__).resolve().parents[1] / "pretrained" / "codec"


def load_codec(spec: str = "default", n_codebooks: int | None = None) -> Codec:
    """``default`` | ``DIR`` (``speechlm-codec`` save) | ``encodec_24khz`` | ``encodec_24khz@6`` (kbit/s)
    | ``encodec_24khz:random`` (same architecture, random weights: speed tests only); ``default+fp32`` or
    ``DIR+bf16``: our codec decoding in that precision whatever its config says."""
    head, plus, precision = spec.rpartition("+")
    if plus and head and not Path(spec).is_dir():
        codec = load_codec(head, n_codebooks)
        if not hasattr(codec, "with_decode_precision"):
            raise SpeechLMError(f"--codec {spec!r}: a decode precision applies to speechlm codecs only")
        try:
            return codec.with_decode_precision(precision)
        except SpeechLMError as e:
            raise SpeechLMError(f"--codec {spec!r}: {e}") from None
    if spec.startswith("encodec_24khz"):
        from speechlm.codec.encodec_backend import EncodecCodec

        name, _, bw = spec.partition("@")
        bandwidth = float(bw) if bw else 1.5
        if name == "encodec_24khz:random":
            return EncodecCodec.random(bandwidth)
        if name != "encodec_24khz":
            raise SpeechLMError(f"unknown EnCodec spec {spec!r} (use encodec_24khz, encodec_24khz@6 ...)")
        return EncodecCodec.pretrained(bandwidth)
    from speechlm.codec.neural import NeuralCodec

    if spec == "default":
        if not (BUNDLED / "codec.json").exists():
            raise SpeechLMError(f"no bundled codec at {BUNDLED} yet; train one with `make train-codec` and pass "
                                "--codec runs/codec/export, or use --codec encodec_24khz")
        return NeuralCodec.from_pretrained(BUNDLED, n_codebooks)
    path = Path(spec)
    if not path.is_dir():
        raise SpeechLMError(f"--codec {spec!r}: not 'default', 'encodec_24khz[@kbps]' or a codec folder")
    return NeuralCodec.from_pretrained(path, n_codebooks)
