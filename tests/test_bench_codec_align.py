"""The benchmark scores every codec sample-aligned with its input: Codec2's decoder delay is removed."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from tests.conftest import eval_script, voiced


def test_envelope_lag_finds_a_known_delay():
    bench = eval_script("bench_codec")
    x = voiced(2.0, 16000)
    late = np.concatenate([np.zeros(320, np.float32), x])[: len(x)]  # 20 ms late
    assert bench.envelope_lag(x, late, 16000) == 320
    assert bench.envelope_lag(late, x, 16000) == -320
    assert bench.envelope_lag(x, x, 16000) == 0
    with pytest.raises(ValueError, match="cannot be aligned"):
        bench.envelope_lag(x[:1000], x[:1000], 16000)


@pytest.mark.parametrize("mode", ["1200", "700C"])
def test_codec2_round_trip_is_aligned(mode, tmp_path):
    if shutil.which("c2enc") is None:
        pytest.skip("Debian codec2 not installed (make setup installs it)")
    bench = eval_script("bench_codec")
    x = voiced(3.0, 8000, f0=120.0)
    raw, sr, _ = bench.codec2_roundtrip(x, 8000, mode, tmp_path, align=False)
    aligned, _, _ = bench.codec2_roundtrip(x, 8000, mode, tmp_path)
    assert sr == 8000 and len(aligned) == len(raw)
    delay = bench.CODEC2_DELAY[mode]
    assert abs(bench.envelope_lag(x, raw, 8000) - delay) <= 64  # the delay is there unaligned (to 8 ms: 40 ms frames blur a synthetic envelope)
    assert abs(bench.envelope_lag(x, aligned, 8000)) <= 64  # and gone aligned
