"""data_recipes/pitch_subset.py: a manifest's high (or low) voices, by median F0, and its errors."""

from __future__ import annotations

import csv
import importlib.util

import pytest
import soundfile as sf
from lhotse import CutSet

from speechlm.data.prepare import prepare
from tests.conftest import REPO, voiced


@pytest.fixture(scope="module")
def recipe():
    spec = importlib.util.spec_from_file_location("pitch_subset", REPO / "data_recipes" / "pitch_subset.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture
def manifest(layouts, tmp_path):
    root = layouts.base / "generic"
    (root / "wavs").mkdir(parents=True)
    for name, f0 in (("low", 110.0), ("high", 230.0)):
        sf.write(root / "wavs" / f"{name}.wav", voiced(1.0, 16000, f0=f0), 16000)
    layouts.generic_table(lines=["low|a|Low voice.", "high|b|High voice."])
    prepare("generic", root, tmp_path / "all", progress=False)
    return tmp_path / "all" / "cuts.jsonl.gz"


def test_keeps_the_high_voices_and_lists_every_f0(recipe, manifest, tmp_path):
    assert recipe.main([str(manifest), str(tmp_path / "high")]) == 0
    assert [c.id for c in CutSet.from_file(tmp_path / "high" / "cuts.jsonl.gz")] == ["high"]
    with open(tmp_path / "high" / "f0.csv", encoding="utf-8") as f:
        rows = {r["id"]: r for r in csv.DictReader(f)}
    assert float(rows["low"]["median_f0_hz"]) == pytest.approx(110, rel=0.05) and rows["low"]["kept"] == "0"
    assert recipe.main([str(manifest), str(tmp_path / "low"), "--max-hz", "165"]) == 0
    assert [c.id for c in CutSet.from_file(tmp_path / "low" / "cuts.jsonl.gz")] == ["low"]


def test_errors_are_named(recipe, manifest, tmp_path):
    with pytest.raises(SystemExit, match="no cut passes"):
        recipe.main([str(manifest), str(tmp_path / "none"), "--min-hz", "500"])
    with pytest.raises(SystemExit, match="not found"):
        recipe.main([str(tmp_path / "missing.jsonl.gz"), str(tmp_path / "x")])
    with pytest.raises(SystemExit):  # argparse: one bound or the other
        recipe.main([str(manifest), str(tmp_path / "x"), "--min-hz", "100", "--max-hz", "200"])
