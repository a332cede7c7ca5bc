"""Training state the LM stage keeps in Lightning checkpoints beyond what Lightning stores itself.

Lightning saves weights, optimizer, scheduler and loop counters, but not the random number generators,
so a resumed run would draw different dropout masks than the run it continues. The states here are kept
as tensors, ints and lists only, so every checkpoint loads with ``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from speechlm.errors import SpeechLMError


def rng_state() -> dict[str, Any]:
    """The states of torch (CPU and CUDA), Python's ``random`` and NumPy's global generators."""
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    state = {"torch": torch.get_rng_state(), "python": random.getstate(),
             "numpy": [kind, torch.from_numpy(keys.astype(np.int64)), int(pos), int(has_gauss), float(gauss)]}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, pos, has_gauss, gauss = state["numpy"]
    np.random.set_state((kind, keys.numpy().astype(np.uint32), pos, has_gauss, gauss))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def read_checkpoint(path: str | Path) -> dict[str, Any]:
    """A Lightning checkpoint file as a dict; ``weights_only`` so a checkpoint can never run code."""
    path = Path(path)
    if not path.is_file():
        raise SpeechLMError(f"{path}: checkpoint not found")
    return torch.load(path, map_location="cpu", weights_only=True)


def checkpoint_before(trainer, step: int) -> tuple[Path, dict[str, Any]] | None:
    """The newest healthy checkpoint in ``trainer``'s ModelCheckpoint folders from before optimizer ``step``.

    Healthy: not saved in the middle of a run of skipped steps (its weights would be the bad ones). Steps
    come from the ``step=N`` in file names, or from the file itself (``last.ckpt``).
    """
    found: dict[Path, int | None] = {}
    for cb in trainer.checkpoint_callbacks:
        folder = Path(cb.dirpath) if getattr(cb, "dirpath", None) else None
        for path in folder.glob("*.ckpt") if folder is not None and folder.is_dir() else []:
            m = re.search(r"step=(\d+)", path.name)
            found[path] = int(m.group(1)) if m else None
    loaded: dict[Path, dict[str, Any]] = {}
    for path, saved in found.items():
        if saved is None:  # no step in the name: read it
            loaded[path] = read_checkpoint(path)
            found[path] = int(loaded[path]["global_step"])
    for path in sorted((p for p, s in found.items() if s < step), key=lambda p: -found[p]):
        ckpt = loaded.get(path) or read_checkpoint(path)
        if ckpt.get("speechlm", {}).get("bad_run", 0) == 0:
            return path, ckpt
    return None
