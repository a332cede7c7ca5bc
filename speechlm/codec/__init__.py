"""Codecs: speech <-> tokens ``[B, K, T]``. See ``base.py`` for the interface and token contract."""

from speechlm.codec.base import Codec, CodecInfo, CodecInputError

__all__ = ["Codec", "CodecInfo", "CodecInputError"]
