"""Corpus scanners: each turns one on-disk layout into candidate utterances (see ``base.py``)."""

from speechlm.data.corpora import fsdd, generic, libri, ljspeech, vctk  # noqa: F401  (registers scanners)
from speechlm.data.corpora.base import SCANNERS, Candidate, ScanResult

__all__ = ["SCANNERS", "Candidate", "ScanResult"]
