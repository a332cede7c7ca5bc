"""speechlm: low-bitrate codec -> decoder-only speech LM -> 24 kHz vocoder, with evaluation tools."""

__version__ = "0.1.0"
