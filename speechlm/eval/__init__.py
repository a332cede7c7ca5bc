"""Objective evaluation: ASR WER/CER, speaker similarity, DNSMOS, duration and codec fidelity, with CI reports.

Import the metric modules directly (``speechlm.eval.wer``, ``.speaker``, ``.dnsmos``, ``.fidelity``) or
use :class:`speechlm.eval.runner.Evaluator` / :func:`speechlm.eval.runner.run_eval`; this module imports
nothing heavy so training code can depend on it cheaply.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    from speechlm.eval.report import EvalReport
    from speechlm.eval.runner import Evaluator, run_eval

__all__ = ["EvalReport", "Evaluator", "run_eval"]


def __getattr__(name: str) -> Any:
    # Lazy: the runner pulls in librosa and tqdm, and the backends torch and onnxruntime.
    if name == "EvalReport":
        from speechlm.eval.report import EvalReport

        return EvalReport
    if name in ("Evaluator", "run_eval"):
        from speechlm.eval import runner

        return getattr(runner, name)
    raise AttributeError(f"module 'speechlm.eval' has no attribute {name!r}")
