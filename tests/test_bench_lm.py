"""eval/bench_lm.py end to end on the tiny LM: both systems generate the same number of steps and the report adds up."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("transformers", reason="the bench extra (pip install -e '.[bench]') is not installed")

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_bench_lm_tiny(tmp_path):
    cmd = [sys.executable, str(REPO / "eval" / "bench_lm.py"), "--sizes", "tiny", "--threads", "1", "--steps", "8",
           "--prompt", "6", "--repeats", "1", "--copy-mb", "8", "--out", str(tmp_path)]
    subprocess.run(cmd, check=True, capture_output=True, text=True, timeout=240)
    report = json.loads((tmp_path / "bench_lm.json").read_text())
    (r,) = report["results"]
    assert r["size"] == "tiny" and r["threads"] == 1 and r["steps"] == 8 and r["prompt_steps"] == 6
    assert r["copy_gbps"] > 0 and len(r["load_before"]) == 3
    for mode in ("greedy", "sample"):
        ours, hf = r["ours"][mode], r["hf"][mode]
        assert ours["ms_per_step"] > 0 and hf["ms_per_step"] > 0
        assert ours["speedup_vs_hf"] == pytest.approx(hf["ms_per_step"] / ours["ms_per_step"])
        assert ours["codec_tokens_per_s"] == pytest.approx(4 * ours["steps_per_s"])
        assert ours["x_floor"] == pytest.approx(ours["ms_per_step"] / r["ours"]["floor_ms"])
    assert r["ours"]["weight_bytes_per_step"] == 4 * r["ours"]["params"]  # fp32, tied heads counted once
    assert r["config"]["hf_vocab"] == sum(r["config"]["stream_vocab"])
    md = (tmp_path / "bench_lm.md").read_text()
    assert "| tiny | 1 | ours |" in md and "## greedy" in md and "## sample" in md
