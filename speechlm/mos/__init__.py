"""MOS listening tests: blinded, balanced sessions (ACR, CMOS/CCR, MUSHRA, A/B), a rater web UI, reports.

Nothing heavy is imported here; ``speechlm.mos.session`` creates sessions, ``speechlm.mos.server``
serves them, ``speechlm.mos.analysis`` reports on them and ``speechlm.mos.cli`` wires the command.
"""

TEST_TYPES = ("acr", "cmos", "mushra", "ab")

__all__ = ["TEST_TYPES"]
