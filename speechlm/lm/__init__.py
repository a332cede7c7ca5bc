"""The speech LM: token layout, transformer, sampling."""
