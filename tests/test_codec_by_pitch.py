"""eval/codec_by_pitch.py and speechlm.codec.pitch.median_f0: a clip's median F0, and the groups it goes in."""

from __future__ import annotations

import numpy as np
import pytest

from speechlm.codec.pitch import median_f0
from tests.conftest import eval_script, voiced


@pytest.fixture(scope="module")
def mod():
    return eval_script("codec_by_pitch")


def test_median_f0_reads_the_voice_pitch():
    assert median_f0(voiced(1.0, 16000, f0=120.0), 16000) == pytest.approx(120.0, rel=0.03)
    assert median_f0(voiced(1.0, 16000, f0=220.0), 16000) == pytest.approx(220.0, rel=0.03)
    assert median_f0(np.zeros(16000, dtype=np.float32), 16000) == 0.0


def test_group_means_split_at_the_threshold(mod):
    rows = [{"decoder": d, "f0": f, "pesq_wb": p, "stoi": 0.8, "dnsmos_ovrl": 2.5}
            for d, f, p in (("ours", 110.0, 1.0), ("ours", 210.0, 2.0), ("ours", 0.0, 4.0), ("ref", 110.0, 1.5))]
    table = {(t["group"], t["coder"]): t for t in mod.group_means(rows, 165.0)}
    assert table["low", "ours"]["pesq_wb"] == 1.0 and table["high", "ours"]["pesq_wb"] == 2.0
    assert table["all", "ours"]["clips"] == 3 and table["all", "ours"]["pesq_wb"] == pytest.approx(7 / 3)
    assert ("high", "ref") not in table  # no high-pitched clip was coded by ref
