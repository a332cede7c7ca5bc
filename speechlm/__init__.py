"""speechlm: low-bitrate codec -> decoder-only speech LM -> 24 kHz vocoder, with evaluation tools."""

__version__ = "0.1.0"

__all__ = ["Pipeline", "__version__"]


def __getattr__(name: str):
    # `from speechlm import Pipeline` without importing torch for `speechlm --version` or the data tools
    if name == "Pipeline":
        from speechlm.inference import Pipeline

        return Pipeline
    raise AttributeError(f"module 'speechlm' has no attribute {name!r}")
