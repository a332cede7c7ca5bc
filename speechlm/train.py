"""``speechlm train STAGE [LightningCLI args]``: fit a stage from stackable YAML configs.

A thin wrapper over LightningCLI: ``-c`` files and ``--trainer.* / --model.* / --data.*`` flags are
LightningCLI's own. Re-running the same command after a crash resumes from
``<trainer.default_root_dir>/checkpoints/last.ckpt`` (step, optimizer, scheduler and loop state);
``--fresh`` ignores it. Every checkpoint of every stage is written atomically (:class:`AtomicCheckpointIO`),
so a kill during a save leaves the previous ``last.ckpt`` in place, never a truncated one.
"""

from __future__ import annotations

import importlib
import os
import sys
from pathlib import Path
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.cli import LightningCLI
from lightning.pytorch.plugins.io import TorchCheckpointIO

from speechlm.errors import SpeechLMError
from speechlm.io import atomic_path

STAGES = {
    "codec": ("speechlm.codec.lightning", "CodecModule", "speechlm.data.audio_dataset", "AudioDataModule"),
    "vocoder": ("speechlm.vocoder.lightning", "VocoderModule", "speechlm.data.audio_dataset", "AudioDataModule"),
    "lm": ("speechlm.lm.lightning", "LMModule", "speechlm.lm.lightning", "LMDataModule"),
}


class AtomicCheckpointIO(TorchCheckpointIO):
    """Writes each checkpoint to a temp file beside it, fsyncs it, then ``os.replace``s it into place.

    Lightning's own save stages the file in the system temp folder and moves it over: across
    filesystems that move is a copy, and a kill during the copy truncates ``last.ckpt``. The temp name
    (``.last.ckpt.XXXX.tmp``) does not end in ``.ckpt``, so it is never taken for a checkpoint.
    Remote paths (``s3://``...) keep Lightning's transactional upload.
    """

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            return super().save_checkpoint(checkpoint, path, storage_options)
        with atomic_path(path, suffix="") as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())


class TrainCLI(LightningCLI):
    """LightningCLI whose trainer saves checkpoints atomically unless the config chose a CheckpointIO."""

    def instantiate_trainer(self, **kwargs: Any):
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer


def build_cli(stage: str, args: list[str], run: bool = False) -> TrainCLI:
    """The LightningCLI for ``stage`` parsed from ``args`` (model, datamodule and trainer instantiated)."""
    if stage not in STAGES:
        raise SpeechLMError(f"unknown training stage '{stage}'; known: {', '.join(STAGES)}")
    mod, model_cls, dmod, data_cls = STAGES[stage]
    model_class = getattr(importlib.import_module(mod), model_cls)
    data_class = getattr(importlib.import_module(dmod), data_cls)
    # LightningCLI warns when sys.argv also holds arguments; ours are `speechlm train STAGE ...`, already
    # split off and passed as ``args``.
    saved, sys.argv = sys.argv, sys.argv[:1]
    try:
        return TrainCLI(model_class, data_class, args=args, run=run, save_config_kwargs={"overwrite": True},
                        parser_kwargs={"description": f"Train the {stage} stage."})
    finally:
        sys.argv = saved


def main(argv: list[str]) -> int:
    if not argv or argv[0] in ("-h", "--help"):
        print(f"usage: speechlm train {{{','.join(STAGES)}}} -c CONFIG.yaml [-c MORE.yaml] [--fresh] "
              "[LightningCLI flags]")
        return 0 if argv else 2
    stage, rest = argv[0], argv[1:]
    fresh = "--fresh" in rest
    rest = [a for a in rest if a != "--fresh"]
    cli = build_cli(stage, rest)
    ckpt_dir = Path(cli.trainer.default_root_dir) / "checkpoints"
    for cb in cli.trainer.checkpoint_callbacks:  # one known place, so a re-run finds last.ckpt
        cb.dirpath = cb.dirpath or str(ckpt_dir)
    last = ckpt_dir / "last.ckpt"
    ckpt = str(last) if last.exists() and not fresh else None
    if ckpt:
        print(f"resuming from {ckpt}", file=sys.stderr)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule, ckpt_path=ckpt)
    return 0
