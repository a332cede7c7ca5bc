"""Confidence intervals for per-system aggregates: Student-t for means, bootstrap for corpus-level ratios (WER)."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Sequence

import numpy as np
from scipy import stats as _stats


@dataclass(frozen=True)
class Estimate:
    """An aggregate with its confidence interval. Bounds are NaN when fewer than two values exist."""

    value: float
    low: float
    high: float
    n: int  # values the estimate used
    n_missing: int = 0  # NaN inputs left out (a metric that could not be computed for that utterance)
    method: str = "t"  # "t" (Student-t on the mean) or "bootstrap" (percentile, over utterances)
    confidence: float = 0.95

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2

    def to_dict(self) -> dict:
        return asdict(self)

    def format(self, digits: int = 3, scale: float = 1.0) -> str:
        """``"0.812 ± 0.021"`` for a symmetric interval, ``"12.3 [10.1, 14.9]"`` for a bootstrap one."""
        if math.isnan(self.value):
            return "n/a"
        v = f"{self.value * scale:.{digits}f}"
        if math.isnan(self.low):
            return v
        if self.method == "t":
            return f"{v} ± {self.half_width * scale:.{digits}f}"
        return f"{v} [{self.low * scale:.{digits}f}, {self.high * scale:.{digits}f}]"


def _finite(values: Sequence[float]) -> tuple[np.ndarray, int]:
    arr = np.asarray(values, dtype=np.float64).reshape(-1)
    keep = np.isfinite(arr)
    return arr[keep], int((~keep).sum())


def mean_ci(values: Sequence[float], confidence: float = 0.95) -> Estimate:
    """Mean with a Student-t interval: mean ± t_{(1+c)/2, n-1} · s / √n. NaNs are left out and counted.

    The t-interval is the usual choice for per-utterance means of MOS, SIM, PESQ and STOI: with tens of
    utterances the sample mean is close to normal even when single scores are not.
    """
    arr, missing = _finite(values)
    n = arr.size
    if n == 0:
        return Estimate(math.nan, math.nan, math.nan, 0, missing, "t", confidence)
    mean = float(arr.mean())
    if n < 2:
        return Estimate(mean, math.nan, math.nan, n, missing, "t", confidence)
    sem = float(arr.std(ddof=1)) / math.sqrt(n)
    half = float(_stats.t.ppf((1 + confidence) / 2, n - 1)) * sem
    return Estimate(mean, mean - half, mean + half, n, missing, "t", confidence)


def ratio_ci(numerators: Sequence[float], denominators: Sequence[float], confidence: float = 0.95,
             n_resamples: int = 2000, seed: int = 0) -> Estimate:
    """Σ numerators / Σ denominators with a percentile bootstrap over items (utterances).

    This is how corpus WER (total errors / total reference words) gets an interval: the ratio of sums
    has no closed-form standard error, and resampling whole utterances keeps each one's errors and
    length together (Bisani & Ney, 2004). The seed is fixed so a report is reproducible.
    """
    num = np.asarray(numerators, dtype=np.float64).reshape(-1)
    den = np.asarray(denominators, dtype=np.float64).reshape(-1)
    if num.shape != den.shape:
        raise ValueError(f"numerators and denominators differ in length: {num.size} vs {den.size}")
    keep = np.isfinite(num) & np.isfinite(den)
    missing = int((~keep).sum())
    num, den = num[keep], den[keep]
    n = num.size
    total = float(den.sum())
    if n == 0 or total <= 0:
        return Estimate(math.nan, math.nan, math.nan, n, missing, "bootstrap", confidence)
    value = float(num.sum()) / total
    if n < 2:
        return Estimate(value, math.nan, math.nan, n, missing, "bootstrap", confidence)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, n, size=(n_resamples, n))
    d = den[idx].sum(axis=1)
    ratios = num[idx].sum(axis=1)[d > 0] / d[d > 0]
    alpha = (1 - confidence) / 2
    low, high = np.quantile(ratios, [alpha, 1 - alpha])
    return Estimate(value, float(low), float(high), n, missing, "bootstrap", confidence)
