"""`speechlm train lm` with 2-process DDP on CPU (gloo): disjoint data per rank, one model, no hang on a bad step.

Lightning launches the second rank itself (``strategy: ddp``, ``devices: 2``, ``accelerator: cpu``). A test
callback records, per rank, the utterances each training batch held, the skip count and the final
weights; a forward hook makes rank 1 alone produce a NaN loss at step 3, which both ranks must skip.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file, save_model

from speechlm.data.manifest import iter_manifest
from tests.test_lm_training import _args, tokenize_tiny_corpus

REPO = Path(__file__).resolve().parents[1]
NAN_STEP, NAN_RANK = 3, 1


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    return tokenize_tiny_corpus(tmp_path_factory.mktemp("lm"))


class RecordRank(L.Callback):
    """Writes ``rank{r}.json`` (utterance ids trained on, skipped steps) and ``rank{r}.safetensors``."""

    def __init__(self, out_dir: str):
        self.out = Path(out_dir)
        self.ids: list[str] = []
        self.hook = None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == NAN_STEP and trainer.global_rank == NAN_RANK:
            self.hook = pl_module.model.norm.register_forward_hook(lambda m, i, out: out * float("nan"))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if self.hook is not None:
            self.hook = self.hook.remove()
        dm = trainer.datamodule
        self.ids += [dm.train_set.utts[i].id for i in dm.last_batch.items]

    def on_train_end(self, trainer, pl_module) -> None:
        rank = trainer.global_rank
        self.out.mkdir(parents=True, exist_ok=True)
        (self.out / f"rank{rank}.json").write_text(json.dumps({"ids": self.ids, "skipped": pl_module._skipped}))
        save_model(pl_module.model, str(self.out / f"rank{rank}.safetensors"))


@pytest.mark.slow
def test_ddp_two_cpu_ranks_split_data_and_agree(tokenized, tmp_path):
    out, tokens, vocab = tokenized
    record = tmp_path / "record"
    cmd = [sys.executable, "-m", "speechlm.cli", "train", *_args(out, tokens, vocab, tmp_path / "run"),
           "--trainer.strategy", "ddp", "--trainer.devices", "2", "--trainer.accelerator", "cpu",
           "--trainer.max_epochs", "1", "--trainer.max_steps", "-1", "--trainer.limit_val_batches", "0",
           "--trainer.callbacks+", json.dumps({"class_path": "tests.test_lm_ddp.RecordRank",
                                               "init_args": {"out_dir": str(record)}})]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=150,
                          check=False)  # a hang fails here
    assert done.returncode == 0, done.stderr[-3000:]

    ranks = [json.loads((record / f"rank{r}.json").read_text()) for r in (0, 1)]
    ids0, ids1 = ranks[0]["ids"], ranks[1]["ids"]
    train_ids = [c.id for c in iter_manifest(out / "text" / "cuts_train.jsonl.gz")]
    assert ids0 and ids1 and not set(ids0) & set(ids1)  # different data on each rank ...
    assert sorted(ids0 + ids1) == sorted(train_ids)  # ... together exactly one epoch
    assert ranks[0]["skipped"] == ranks[1]["skipped"] == 1  # rank 1's NaN made both ranks skip that step

    w0, w1 = load_file(record / "rank0.safetensors"), load_file(record / "rank1.safetensors")
    assert w0.keys() == w1.keys() and [k for k in w0 if not torch.equal(w0[k], w1[k])] == []
    assert all(torch.isfinite(v).all() for v in w0.values())
