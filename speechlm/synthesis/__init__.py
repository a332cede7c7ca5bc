"""The parts behind :class:`speechlm.inference.Pipeline`: folder format, voices, sentence splitting, batch runs."""
