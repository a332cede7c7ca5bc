"""Crash safety of `speechlm train`: SIGKILLed runs resume to the same weights; checkpoints never truncate.

The crash is real: the training command runs as a subprocess and a callback kills it with SIGKILL (no
cleanup, no flush), twice, once mid-epoch and once right after an epoch ended; re-running the same
command resumes from ``last.ckpt``. The resumed run must end bitwise equal to one that never stopped.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import lightning as L
import pytest
import torch
from safetensors.torch import load_file

from speechlm.errors import SpeechLMError
from speechlm.lm.checkpoint import read_checkpoint
from speechlm.train import AtomicCheckpointIO, build_cli
from tests.test_lm_training import _args, tokenize_tiny_corpus

REPO = Path(__file__).resolve().parents[1]
STEPS = 12  # the tiny corpus makes 10 batches an epoch: steps 1-10 are epoch 0, 11-12 epoch 1


@pytest.fixture(scope="module")
def tokenized(tmp_path_factory):
    return tokenize_tiny_corpus(tmp_path_factory.mktemp("lm"))


class KillAt(L.Callback):
    """SIGKILLs its own process at the end of each listed step, once per step (a marker file remembers)."""

    def __init__(self, steps: list[int], marker_dir: str):
        self.steps, self.marker_dir = steps, Path(marker_dir)

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        marker = self.marker_dir / f"killed-at-{trainer.global_step}"
        if trainer.global_step in self.steps and not marker.exists():
            marker.parent.mkdir(parents=True, exist_ok=True)
            marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)


def _command(tokenized, run: Path, extra: list[str] = ()) -> list[str]:
    out, tokens, vocab = tokenized
    return [sys.executable, "-m", "speechlm.cli", "train", *_args(out, tokens, vocab, run),
            "--trainer.max_steps", str(STEPS), "--model.max_steps", str(STEPS), "--model.dropout", "0.1",
            "--trainer.val_check_interval", "4", "--model.export_dir", str(run / "export"), *extra]


def _start(cmd: list[str]) -> subprocess.Popen:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"}  # same arithmetic in every run
    return subprocess.Popen(cmd, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _run(cmd: list[str]) -> subprocess.CompletedProcess:
    proc = _start(cmd)
    out, err = proc.communicate(timeout=180)
    return subprocess.CompletedProcess(cmd, proc.returncode, out, err)


def _tensors(obj, prefix=""):
    """Every tensor in a nested checkpoint structure, by path."""
    if isinstance(obj, torch.Tensor):
        yield prefix, obj
    elif isinstance(obj, dict):
        for k, v in obj.items():
            yield from _tensors(v, f"{prefix}/{k}")
    elif isinstance(obj, (list, tuple)):
        for i, v in enumerate(obj):
            yield from _tensors(v, f"{prefix}/{i}")


@pytest.mark.slow
def test_sigkilled_run_resumes_to_identical_weights(tokenized, tmp_path):
    clean = _start(_command(tokenized, tmp_path / "clean"))  # the uninterrupted run, alongside the others
    run = tmp_path / "crashy"
    kill = ["--trainer.callbacks+", json.dumps({"class_path": "tests.test_lm_faults.KillAt", "init_args": {
        "steps": [7, 11], "marker_dir": str(tmp_path / "markers")}})]
    cmd = _command(tokenized, run, kill)
    for expected_step in (6, 10):  # the checkpoints before each kill: mid-epoch, then at an epoch's end
        died = _run(cmd)
        assert died.returncode == -signal.SIGKILL, died.stderr[-3000:]
        assert read_checkpoint(run / "checkpoints" / "last.ckpt")["global_step"] == expected_step
    resumed = _run(cmd)  # the same command a third time: no kill left, it finishes
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from" in resumed.stderr
    _, err = clean.communicate(timeout=180)
    assert clean.returncode == 0, err[-3000:]

    a = read_checkpoint(tmp_path / "clean" / "checkpoints" / "last.ckpt")
    b = read_checkpoint(run / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == STEPS
    ta, tb = dict(_tensors(a["state_dict"])), dict(_tensors(b["state_dict"]))
    assert ta.keys() == tb.keys() and [k for k in ta if not torch.equal(ta[k], tb[k])] == []
    oa, ob = dict(_tensors(a["optimizer_states"])), dict(_tensors(b["optimizer_states"]))
    assert oa.keys() == ob.keys() and [k for k in oa if not torch.equal(oa[k], ob[k])] == []
    assert a["LMDataModule"] == b["LMDataModule"] == {"epoch": 1, "consumed": 2}
    assert a["speechlm"]["avg_loss"] == b["speechlm"]["avg_loss"]
    # Training moved the weights: the runs agree on a trained model, not on two copies of the init.
    init = build_cli("lm", _args(*tokenized, tmp_path / "init")[1:]).model.state_dict()
    assert not torch.equal(init["model.blocks.0.attn.q.weight"], tb["/model.blocks.0.attn.q.weight"])
    ea, eb = load_file(tmp_path / "clean" / "export" / "lm.safetensors"), load_file(run / "export" / "lm.safetensors")
    assert ea.keys() == eb.keys() and all(torch.equal(ea[k], eb[k]) for k in ea)


def test_every_stage_writes_checkpoints_atomically(tokenized, tmp_path):
    codec = build_cli("codec", ["-c", str(REPO / "configs/codec/base.yaml"),
                                "--trainer.default_root_dir", str(tmp_path)])
    lm = build_cli("lm", _args(*tokenized, tmp_path)[1:])
    assert type(codec.trainer.strategy.checkpoint_io) is type(lm.trainer.strategy.checkpoint_io) is AtomicCheckpointIO


def test_failed_save_leaves_previous_checkpoint(tmp_path):
    class Bomb:  # pickling fails in the middle of torch.save, as a full disk or a bad object would
        def __reduce__(self):
            raise RuntimeError("disk gone")

    io, last = AtomicCheckpointIO(), tmp_path / "last.ckpt"
    io.save_checkpoint({"state_dict": {"w": torch.arange(1000.0)}, "global_step": 3}, last)
    with pytest.raises(RuntimeError, match="disk gone"):
        io.save_checkpoint({"state_dict": {"w": torch.zeros(1000)}, "global_step": 4, "bomb": Bomb()}, last)
    ckpt = read_checkpoint(last)
    assert ckpt["global_step"] == 3 and torch.equal(ckpt["state_dict"]["w"], torch.arange(1000.0))
    assert os.listdir(tmp_path) == ["last.ckpt"]  # no temp file left behind


SAVER = """
import sys, torch
from speechlm.train import AtomicCheckpointIO
io = AtomicCheckpointIO()
io.save_checkpoint({"state_dict": {"w": torch.arange(1000.0)}, "global_step": 3}, sys.argv[1])
print("saved", flush=True)
io.save_checkpoint({"state_dict": {"w": torch.empty(64, 1024, 1024)}, "global_step": 4}, sys.argv[1])  # 256 MiB
"""


def test_sigkill_during_save_keeps_last_ckpt_whole(tmp_path):
    last = tmp_path / "last.ckpt"
    proc = subprocess.Popen([sys.executable, "-c", SAVER, str(last)], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "saved"
        deadline, partial = time.monotonic() + 60, None
        while partial is None and time.monotonic() < deadline and proc.poll() is None:
            temps = [p for p in tmp_path.iterdir() if p.name.startswith(".last.ckpt.")]
            partial = temps[0] if temps and temps[0].stat().st_size > 0 else None
            time.sleep(0.001)
        assert partial is not None, "the second save finished before it could be interrupted"
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert partial.exists() and partial.stat().st_size < 2**28  # the kill did land mid-write
    ckpt = read_checkpoint(last)
    assert ckpt["global_step"] == 3 and torch.equal(ckpt["state_dict"]["w"], torch.arange(1000.0))


class Corrupt(L.Callback):
    """Fills a norm weight with NaN before step ``at``: every loss after it is NaN until a rollback."""

    def __init__(self, at: int):
        self.at, self.restored = at, None

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step == self.at and pl_module._reloads == 0:
            with torch.no_grad():
                pl_module.model.norm.weight.fill_(float("nan"))

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if pl_module._reloads == 1 and self.restored is None:
            self.restored = {k: v.clone() for k, v in pl_module.state_dict().items()}


def test_bad_steps_in_a_row_roll_back_to_a_checkpoint_from_before(tokenized, tmp_path):
    run = tmp_path / "run"
    keep = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint", "init_args": {
        "dirpath": str(run / "checkpoints"), "every_n_train_steps": 2, "save_last": True, "monitor": "step",
        "mode": "max", "save_top_k": -1}}
    cli = build_cli("lm", _args(*tokenized, run)[1:] + [
        "--trainer.max_steps", "10", "--trainer.callbacks", json.dumps([keep]), "--model.reload_after", "2"])
    corrupt = Corrupt(at=5)
    cli.trainer.callbacks.append(corrupt)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)

    m = cli.model
    assert m._skipped == 2 and m._reloads == 1  # steps 6 and 7 were NaN; then it rolled back
    # Step 6's checkpoint holds the NaN weights (skips do not update); the rollback took step 4's.
    assert read_checkpoint(run / "checkpoints" / "epoch=0-step=6.ckpt")["state_dict"]["model.norm.weight"].isnan().all()
    good = read_checkpoint(run / "checkpoints" / "epoch=0-step=4.ckpt")["state_dict"]
    assert all(torch.equal(corrupt.restored[k], good[k]) for k in good)
    assert cli.trainer.global_step == 10 and all(torch.isfinite(p).all() for p in m.parameters())
    assert not torch.equal(m.state_dict()["model.norm.weight"], good["model.norm.weight"])  # trained on after


def test_bad_steps_with_no_checkpoint_before_stop_the_run(tokenized, tmp_path):
    cli = build_cli("lm", _args(*tokenized, tmp_path / "run")[1:] + ["--model.reload_after", "2"])
    cli.trainer.callbacks.append(Corrupt(at=0))
    with pytest.raises(SpeechLMError, match="no checkpoint from before"):
        cli.trainer.fit(cli.model, datamodule=cli.datamodule)
